"""Continuous relaxations of a space's choices, torch-free: what a gradient-based strategy asks
the search to learn (:class:`Relaxation`) and what it gets back (:class:`OpWeights`).

Both live here because the strategy (which never builds networks) and the one-shot layer
(which trains them) must share them and may not import each other; the search carries them
between the two (``docs/architecture.md``, "One-shot and gradient-based search").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.errors import UserError

#: Relaxation methods the one-shot layer implements.
METHODS: tuple[str, ...] = ("darts", "gdas")


@dataclass(frozen=True)
class Relaxation:
    """A pre-search phase a strategy asks for: learn op weights on the space's supernet.

    Attributes:
        method: ``"darts"`` (softmax mixture of every op, bilevel) or ``"gdas"`` (one op per edge
            sampled by hard Gumbel-softmax, straight-through gradients).
        settings: The method's settings (``epochs``, ``w_lr``, ``alpha_lr``, ``order``, ...;
            :class:`workbench.oneshot.settings.SupernetSettings` reads and checks them).
    """

    method: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"relaxation method must be one of {list(METHODS)}; got {self.method!r}")


@dataclass(frozen=True)
class OpWeights:
    """A probability per op on every edge of a cell (rows: ``edges``; columns: ``ops``).

    Attributes:
        edges: Edge names, e.g. ``("1<-0", ...)``.
        ops: Op names, ``"none"`` included when the space has it.
        probs: ``len(edges)`` rows of ``len(ops)`` probabilities, each row summing to 1.
    """

    edges: tuple[str, ...]
    ops: tuple[str, ...]
    probs: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if len(self.probs) != len(self.edges) or any(len(row) != len(self.ops) for row in self.probs):
            raise UserError(f"op weights must be {len(self.edges)} rows of {len(self.ops)} probabilities")
        for edge, row in zip(self.edges, self.probs):
            if not all(math.isfinite(p) and p >= 0 for p in row) or abs(sum(row) - 1.0) > 1e-4:
                raise UserError(f"op weights of edge {edge} are not a probability distribution: {list(row)}")

    @classmethod
    def from_array(cls, edges: Sequence[str], ops: Sequence[str], probs: Any) -> OpWeights:
        """From an array of probabilities (rows renormalised against rounding)."""
        arr = np.asarray(probs, dtype=np.float64)
        arr = arr / arr.sum(axis=1, keepdims=True)
        return cls(tuple(edges), tuple(ops), tuple(tuple(float(p) for p in row) for row in arr))

    @classmethod
    def uniform(cls, edges: Sequence[str], ops: Sequence[str]) -> OpWeights:
        return cls.from_array(edges, ops, np.full((len(edges), len(ops)), 1.0 / len(ops)))

    def array(self) -> np.ndarray:
        """The probabilities as a `len(edges) x len(ops)` array."""
        return np.asarray(self.probs, dtype=np.float64)

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{edge: {op: probability}}``."""
        return {e: dict(zip(self.ops, row)) for e, row in zip(self.edges, self.probs)}

    def choices(self, exclude: Sequence[str] = ("none",)) -> list[int]:
        """Op columns a derived cell may use (DARTS leaves ``none`` out)."""
        keep = [k for k, op in enumerate(self.ops) if op not in exclude]
        if not keep:
            raise UserError(f"no op left to derive a cell from after excluding {list(exclude)}")
        return keep

    def derive(self, exclude: Sequence[str] = ("none",)) -> tuple[str, ...]:
        """The discrete cell: the most probable op per edge, ``exclude`` left out (as DARTS
        derives its cell); ties go to the earlier op."""
        keep = self.choices(exclude)
        arr = self.array()[:, keep]
        return tuple(self.ops[keep[int(np.argmax(row))]] for row in arr)

    def ranked(self, exclude: Sequence[str] = ("none",)) -> Iterator[tuple[str, ...]]:
        """Every cell over the kept ops, most probable first (product of the per-edge
        probabilities; ties in product order): :meth:`derive` first, then the runners-up."""
        keep = self.choices(exclude)
        logp = np.log(np.clip(self.array()[:, keep], 1e-300, None))
        combos = np.array(list(itertools.product(range(len(keep)), repeat=len(self.edges))), dtype=np.int64)
        score = logp[np.arange(len(self.edges))[None, :], combos].sum(axis=1)
        for row in np.argsort(-score, kind="stable"):
            yield tuple(self.ops[keep[int(k)]] for k in combos[row])

    def entropy(self) -> float:
        """Mean entropy per edge (nats): how undecided the weights are."""
        arr = np.clip(self.array(), 1e-300, None)
        return float(-(arr * np.log(arr)).sum(axis=1).mean())
