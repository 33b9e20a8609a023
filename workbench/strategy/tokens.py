"""A token view of genotypes: every space as a sequence of categorical decisions.

An autoregressive controller (``workbench.strategy.rl``) builds an architecture one decision at a
time. A :class:`TokenCodec` defines those decisions for one space:

* :attr:`TokenCodec.heads`: the decision *types* (e.g. a chain's ``layer`` op, ``kernel``,
  ``width``, ``act``), each a small categorical vocabulary; the controller has one softmax head
  per type.
* :meth:`TokenCodec.program`: a generator that yields one :class:`Step` (head + mask of the
  choices allowed after the decisions so far) per decision, receives the choice, and finally
  returns the genotype. :meth:`TokenCodec.start` wraps it in a :class:`Cursor`.
* :meth:`TokenCodec.encode` / :meth:`TokenCodec.decode`: genotype <-> list of choice indices.

Masks keep every sequence structurally valid (a chain's dense layers come last, a DAG node reads
at least one earlier node, NAS-Bench-Graph never gets four skips); :meth:`TokenCodec.decode`
also runs ``space.validate`` and raises :class:`InvalidGenotype` when a sequence does not name a
member, so the controller resamples.

Round trips: ``decode(encode(g)).key == g.key`` for every valid genotype of the space, and
``decode(encode(g)) == g`` for the genotypes the space itself samples. Two codecs are lossy on
purpose: the joint codec puts continuous hyperparameters on a log grid (``encode`` takes the
nearest grid point; :attr:`TokenCodec.lossless` is False), and specs that differ only in parts
outside the key (a cell's or DAG's ``macro``, the ``merge`` of a single-input DAG node) come back
in the space's own spelling.

Codecs are chosen by the versioned space name (:func:`make_codec`, from the ``_CODECS`` table).
A space without a codec gets ``None``, and the controller falls back to picking among
sampled candidates by a learned preference.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.errors import InvalidGenotype
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype

Program = Generator["Step", int, Genotype]


@dataclass(frozen=True)
class Head:
    """One decision type: a name and the labels of its choices."""

    name: str
    labels: tuple[str, ...]

    @property
    def size(self) -> int:
        """Number of choices."""
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class Step:
    """The next decision: which head decides, and which of its choices are allowed.

    Attributes:
        head: Index into :attr:`TokenCodec.heads`.
        mask: Bool array `heads[head].size`, True where a choice is allowed (at least one is).
    """

    head: int
    mask: np.ndarray

    def allowed(self, choice: int) -> bool:
        """True when ``choice`` is a valid answer to this step."""
        return 0 <= choice < len(self.mask) and bool(self.mask[choice])


def _all(n: int) -> np.ndarray:
    return np.ones(n, dtype=bool)


class Cursor:
    """A decision sequence in progress: the current :attr:`step`, or the finished :attr:`result`."""

    def __init__(self, program: Program) -> None:
        self._program = program
        self.tokens: list[int] = []
        self.steps: list[Step] = []
        self.result: Genotype | None = None
        self.step: Step | None = None
        try:
            self.step = next(program)
        except StopIteration as stop:
            self.result = stop.value

    @property
    def done(self) -> bool:
        """True once the last decision was taken."""
        return self.step is None

    def advance(self, choice: int) -> None:
        """Take ``choice`` for the current step.

        Raises:
            InvalidGenotype: When the sequence is already complete or the choice is masked.
        """
        step = self.step
        if step is None:
            raise InvalidGenotype(f"token sequence is too long: complete after {len(self.tokens)} tokens")
        choice = int(choice)
        if not step.allowed(choice):
            raise InvalidGenotype(
                f"token {len(self.tokens)} = {choice} is not allowed here "
                f"(allowed: {np.flatnonzero(step.mask).tolist()})"
            )
        self.tokens.append(choice)
        self.steps.append(step)
        try:
            self.step = self._program.send(choice)
        except StopIteration as stop:
            self.step = None
            self.result = stop.value


class TokenCodec(ABC):
    """A reversible view of a space's genotypes as a sequence of categorical decisions.

    Contract:
        * Every step of :meth:`program` allows at least one choice.
        * ``encode(g)`` is a sequence :meth:`program` accepts, for every valid ``g``, and
          ``decode(encode(g)).key == g.key`` (spec-equal for the space's own samples when
          :attr:`lossless`).
        * ``decode`` returns a genotype ``space.validate`` accepts, or raises
          :class:`InvalidGenotype`.

    Args:
        space: The space whose genotypes are coded.
    """

    #: False when ``encode`` rounds (continuous values on a grid).
    lossless: bool = True

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    @property
    @abstractmethod
    def heads(self) -> tuple[Head, ...]:
        """The decision types, in a fixed order."""

    @abstractmethod
    def program(self) -> Program:
        """A generator: yields a :class:`Step` per decision, is sent the choice, returns the genotype."""

    @abstractmethod
    def encode(self, g: Genotype) -> list[int]:
        """The choices that build ``g`` (raises :class:`InvalidGenotype` for a non-member)."""

    def start(self) -> Cursor:
        """A fresh :class:`Cursor` at the first decision."""
        return Cursor(self.program())

    def trace(self, tokens: Sequence[int]) -> Cursor:
        """Replay ``tokens`` into a cursor (raises :class:`InvalidGenotype` on a masked token)."""
        cursor = self.start()
        for t in tokens:
            cursor.advance(int(t))
        return cursor

    def steps(self, tokens: Sequence[int]) -> list[Step]:
        """The step each token answered (raises :class:`InvalidGenotype` unless complete)."""
        cursor = self.trace(tokens)
        if not cursor.done:
            raise InvalidGenotype(f"token sequence is incomplete after {len(cursor.tokens)} tokens")
        return cursor.steps

    def decode(self, tokens: Sequence[int]) -> Genotype:
        """The genotype of a complete token sequence, validated by the space.

        Raises:
            InvalidGenotype: When a token is masked, the sequence is incomplete or too long, or
                the result is not a member of the space.
        """
        cursor = self.trace(tokens)
        if not cursor.done or cursor.result is None:
            raise InvalidGenotype(f"token sequence is incomplete after {len(cursor.tokens)} tokens")
        g = cursor.result
        self.space.validate(g)
        return g

    def random_tokens(self, rng: np.random.Generator) -> list[int]:
        """A sequence of uniformly random allowed choices (not uniform over genotypes)."""
        cursor = self.start()
        while not cursor.done:
            assert cursor.step is not None
            allowed = np.flatnonzero(cursor.step.mask)
            cursor.advance(int(allowed[rng.integers(len(allowed))]))
        return cursor.tokens


# -- chain ---------------------------------------------------------------------------------------


class ChainCodec(TokenCodec):
    """``chain-v1``: per layer slot an op or ``stop``, then the op's kernel / width / activation.

    Heads: ``layer`` (the ops, then ``stop``), ``kernel``, ``width`` (convolution channels),
    ``dense_width``, ``act``. Masks keep dense layers last, at most ``max_dense`` of them, and
    at least one layer; ``stop`` is implied after ``max_layers`` layers.
    """

    LAYER, KERNEL, WIDTH, DENSE_WIDTH, ACT = range(5)

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        from workbench.space import chain

        self._chain = chain
        self._ops: tuple[str, ...] = chain.OPS
        self._stop = len(self._ops)
        self._heads = (
            Head("layer", (*self._ops, "stop")),
            Head("kernel", tuple(str(k) for k in space.kernels)),
            Head("width", tuple(str(w) for w in space.widths)),
            Head("dense_width", tuple(str(w) for w in space.dense_widths)),
            Head("act", tuple(space.activations)),
        )

    @property
    def heads(self) -> tuple[Head, ...]:
        return self._heads

    def program(self) -> Program:
        sp, chain = self.space, self._chain
        layers: list[dict[str, Any]] = []
        n_dense = 0
        for slot in range(sp.max_layers):
            mask = np.zeros(len(self._ops) + 1, dtype=bool)
            for t, op in enumerate(self._ops):
                if op in chain.DENSE_OPS:
                    mask[t] = n_dense < sp.max_dense
                else:
                    mask[t] = n_dense == 0
            mask[self._stop] = slot >= 1
            c = yield Step(self.LAYER, mask)
            if c == self._stop:
                break
            op = self._ops[c]
            if op in chain.CONV_OPS:
                k = yield Step(self.KERNEL, _all(len(sp.kernels)))
                w = yield Step(self.WIDTH, _all(len(sp.widths)))
                a = yield Step(self.ACT, _all(len(sp.activations)))
                layers.append({"op": op, "kernel": sp.kernels[k], "width": sp.widths[w], "act": sp.activations[a]})
            elif op in chain.DENSE_OPS:
                n_dense += 1
                w = yield Step(self.DENSE_WIDTH, _all(len(sp.dense_widths)))
                a = yield Step(self.ACT, _all(len(sp.activations)))
                layers.append({"op": op, "width": sp.dense_widths[w], "act": sp.activations[a]})
            else:
                layers.append({"op": op})
        return Genotype.of(sp.name, {"layers": layers})

    def encode(self, g: Genotype) -> list[int]:
        sp, chain = self.space, self._chain
        sp.validate(g)
        layers = g.value["layers"]
        out: list[int] = []
        for layer in layers:
            op = layer["op"]
            out.append(self._ops.index(op))
            if op in chain.CONV_OPS:
                out += [sp.kernels.index(layer["kernel"]), sp.widths.index(layer["width"])]
                out.append(sp.activations.index(layer["act"]))
            elif op in chain.DENSE_OPS:
                out += [sp.dense_widths.index(layer["width"]), sp.activations.index(layer["act"])]
        if len(layers) < sp.max_layers:
            out.append(self._stop)
        return out


# -- cell ----------------------------------------------------------------------------------------


class CellCodec(TokenCodec):
    """``cell-v1``: the op of each of the 6 edges, in ``EDGES`` order (one head, ``edge_op``)."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        from workbench.space import cell

        self._cell = cell
        self._heads = (Head("edge_op", tuple(cell.CELL_OPS)),)

    @property
    def heads(self) -> tuple[Head, ...]:
        return self._heads

    def program(self) -> Program:
        ops = []
        for _ in self._cell.EDGES:
            c = yield Step(0, _all(len(self._cell.CELL_OPS)))
            ops.append(self._cell.CELL_OPS[c])
        return Genotype.of(
            self.space.name, {"edges": dict(zip(self._cell.EDGES, ops)), "macro": dict(self.space.macro)}
        )

    def encode(self, g: Genotype) -> list[int]:
        self.space.validate(g)
        ops, _ = self._cell.read_cell(g)
        return [self._cell.CELL_OPS.index(op) for op in ops]


# -- NAS-Bench-Graph -----------------------------------------------------------------------------


class NBGraphCodec(TokenCodec):
    """``nbgraph-v1``: the canonical link pattern (9), then the op of each of the 4 nodes.

    Ops outside the dataset's table are masked, and so is a fourth ``skip`` after three. Decoding
    returns the canonical member (:meth:`NBGraphSpace.genotype_of_key`); encoding reads any
    equivalent spelling through the benchmark key.
    """

    LINKS, OP = 0, 1

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        from workbench.data import nbgraph_tables as tables

        self._tables = tables
        self._op_mask = np.array([op in space.ops for op in tables.OPS], dtype=bool)
        self._skip = tables.OPS.index("skip")
        self._heads = (
            Head("links", tuple("".join(map(str, p)) for p in tables.LINK_PATTERNS)),
            Head("op", tuple(tables.OPS)),
        )

    @property
    def heads(self) -> tuple[Head, ...]:
        return self._heads

    def program(self) -> Program:
        tables = self._tables
        p = yield Step(self.LINKS, _all(len(tables.LINK_PATTERNS)))
        ops: list[str] = []
        for i in range(4):
            mask = self._op_mask.copy()
            if i == 3 and all(o == "skip" for o in ops):
                mask[self._skip] = False
            c = yield Step(self.OP, mask)
            ops.append(tables.OPS[c])
        links = list(tables.LINK_PATTERNS[p])
        try:
            key = tables.arch_key(links, ops)
        except ValueError as exc:
            raise InvalidGenotype(str(exc)) from None
        return self.space.genotype_of_key(key)

    def encode(self, g: Genotype) -> list[int]:
        key = self.space.key_of(g)
        return [key // 10**4] + [(key // 10 ** (3 - i)) % 10 for i in range(4)]


# -- DAG -----------------------------------------------------------------------------------------


class DagCodec(TokenCodec):
    """``dag-v1``: per node, whether to add it, then its inputs, its merge and its op.

    Heads: ``more`` (``stop`` / ``node``; asked only between ``min_nodes`` and ``max_nodes``),
    ``edge`` (``no`` / ``yes``: does node ``k`` read node ``i``, for ``i = 0 .. k-1``; the last is
    forced to ``yes`` when nothing was chosen), ``merge`` (asked only for two or more inputs),
    ``op``.
    """

    MORE, EDGE, MERGE, OP = range(4)

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        from workbench.space import dag

        self._dag = dag
        self._heads = (
            Head("more", ("stop", "node")),
            Head("edge", ("no", "yes")),
            Head("merge", tuple(dag.MERGES)),
            Head("op", tuple(space.ops)),
        )

    @property
    def heads(self) -> tuple[Head, ...]:
        return self._heads

    def program(self) -> Program:
        sp, dag = self.space, self._dag
        nodes: list[dict[str, Any]] = []
        for k in range(1, sp.max_nodes + 1):
            if k > sp.min_nodes:
                more = yield Step(self.MORE, _all(2))
                if more == 0:
                    break
            inputs: list[int] = []
            for i in range(k):
                mask = _all(2)
                if i == k - 1 and not inputs:
                    mask[0] = False
                if (yield Step(self.EDGE, mask)) == 1:
                    inputs.append(i)
            merge = "add"
            if len(inputs) > 1:
                merge = dag.MERGES[(yield Step(self.MERGE, _all(len(dag.MERGES))))]
            op = sp.ops[(yield Step(self.OP, _all(len(sp.ops))))]
            nodes.append({"op": op, "merge": merge, "inputs": inputs})
        return Genotype.of(sp.name, {"nodes": nodes, "macro": {"width": sp.width}})

    def encode(self, g: Genotype) -> list[int]:
        sp, dag = self.space, self._dag
        sp.validate(g)
        nodes, _ = dag.read_dag(g, ops=sp.ops, max_nodes=sp.max_nodes)
        if len(nodes) < sp.min_nodes:
            raise InvalidGenotype(f"dag has {len(nodes)} nodes; this space codes {sp.min_nodes}..{sp.max_nodes}")
        out: list[int] = []
        for k, node in enumerate(nodes, start=1):
            if k > sp.min_nodes:
                out.append(1)
            out += [1 if i in node.inputs else 0 for i in range(k)]
            if len(node.inputs) > 1:
                out.append(dag.MERGES.index(node.merge))
            out.append(sp.ops.index(node.op))
        if sp.min_nodes <= len(nodes) < sp.max_nodes:
            out.append(0)
        return out


# -- joint ---------------------------------------------------------------------------------------


class JointCodec(TokenCodec):
    """``joint-v1``: the inner space's tokens, then the hyperparameters on a grid.

    ``lr`` and ``weight_decay`` take ``grid`` log-spaced values across their ranges (rounded as
    the space rounds; a fixed range is one value); ``batch_size`` and ``epochs`` their choices.
    Lossy: :meth:`encode` takes the grid point nearest in log space.

    Args:
        space: A :class:`~workbench.space.joint.JointSpace`.
        grid: Points per continuous hyperparameter.

    Raises:
        InvalidGenotype: When the inner space has no codec.
    """

    lossless = False

    def __init__(self, space: SearchSpace, grid: int = 8) -> None:
        super().__init__(space)
        from workbench.space import joint

        self._joint = joint
        inner = make_codec(space.inner)
        if inner is None:
            raise InvalidGenotype(f"joint codec needs a codec for its inner space {space.inner.name!r}")
        self.inner = inner
        self.values: dict[str, tuple[Any, ...]] = {}
        for name in joint.CONTINUOUS:
            lo, hi = space.ranges[name]
            pts = np.exp(np.linspace(math.log(lo), math.log(hi), max(1, int(grid)) if hi > lo else 1))
            vals = sorted({min(max(joint.round_sig(p), lo), hi) for p in pts})
            self.values[name] = tuple(vals)
        for name in joint.DISCRETE:
            self.values[name] = tuple(space.choices[name])
        self._offset = len(inner.heads)
        hp_heads = (Head(n, tuple(str(v) for v in self.values[n])) for n in joint.HYPERPARAMETERS)
        self._heads = (*inner.heads, *hp_heads)

    @property
    def heads(self) -> tuple[Head, ...]:
        return self._heads

    def program(self) -> Program:
        arch = yield from self.inner.program()
        hp: dict[str, Any] = {}
        for t, name in enumerate(self._joint.HYPERPARAMETERS):
            c = yield Step(self._offset + t, _all(len(self.values[name])))
            hp[name] = self.values[name][c]
        return Genotype.of(self.space.name, {"arch": {"space": arch.space, "spec": arch.value}, "hp": hp})

    def encode(self, g: Genotype) -> list[int]:
        self.space.validate(g)
        arch = self._joint.JointSpace.architecture(g)
        hp = self._joint.JointSpace.hyperparameters(g)
        out = self.inner.encode(arch)
        for name in self._joint.CONTINUOUS:
            logs = np.log(np.asarray(self.values[name], dtype=np.float64))
            out.append(int(np.argmin(np.abs(logs - math.log(hp[name])))))
        for name in self._joint.DISCRETE:
            out.append(self.values[name].index(hp[name]))
        return out


# -- registry ------------------------------------------------------------------------------------

# versioned space name -> "module:Class" of its codec
_CODECS: dict[str, str] = {
    "chain-v1": "workbench.strategy.tokens:ChainCodec",
    "cell-v1": "workbench.strategy.tokens:CellCodec",
    "nbgraph-v1": "workbench.strategy.tokens:NBGraphCodec",
    "dag-v1": "workbench.strategy.tokens:DagCodec",
    "joint-v1": "workbench.strategy.tokens:JointCodec",
}


def codec_names() -> list[str]:
    """Versioned space names that have a codec."""
    return sorted(_CODECS)


def make_codec(space: SearchSpace) -> TokenCodec | None:
    """The codec of ``space`` (chosen by ``space.name``), or None when it has none."""
    target = _CODECS.get(space.name)
    if target is None:
        return None
    module, cls = target.split(":")
    try:
        return getattr(importlib.import_module(module), cls)(space)
    except InvalidGenotype:
        return None
