"""The NAS-Bench-201-style cell space ``cell-v1``: one searched cell stacked in a fixed skeleton.

The cell is a DAG of 4 nodes (0 = the cell input, 3 = the cell output) with an operation on
each of the 6 edges ``j <- i`` (``i < j``); node ``j`` is the sum of its incoming edges.

Genotype layout (spec of a ``cell-v1`` genotype)::

    {
      "edges": {"1<-0": "conv3x3", "2<-0": "none", "2<-1": "skip",
                "3<-0": "avgpool3x3", "3<-1": "conv1x1", "3<-2": "none"},
      "macro": {"stages": 3, "cells_per_stage": 1, "width": 16}   # optional
    }

``edges`` may also be read as a list of the 6 ops in :data:`EDGES` order; the space writes
the mapping. ``macro`` is the skeleton (from the space settings, not searched): a stem
convolution to ``width`` channels, then ``stages`` stages of ``cells_per_stage`` cells each,
with a residual reduction block (stride 2, channels doubled) between stages. It is written
into each genotype so that the network can be rebuilt from the genotype alone, but it is not
part of the key or of the encodings: the key names the cell.

Canonical form (:meth:`CellSpace.canonical`): edges that do not lie on a node-0 -> node-3
path of non-``none`` edges become ``none`` (they cannot change the output), and the two
intermediate nodes are swapped when that is a valid relabelling (edge ``2<-1`` is ``none``)
and gives a smaller op tuple.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from workbench.errors import InvalidGenotype, UserError
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype

#: Edge operations, ``"none"`` (no edge) first.
CELL_OPS: tuple[str, ...] = ("none", "skip", "conv1x1", "conv3x3", "avgpool3x3")
#: The 6 edges ``(i, j)``, ``i < j``, in the order of the list layout.
EDGE_PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
#: Edge names in the mapping layout, same order as :data:`EDGE_PAIRS`.
EDGES: tuple[str, ...] = tuple(f"{j}<-{i}" for i, j in EDGE_PAIRS)
#: Defaults of the macro skeleton.
DEFAULT_MACRO: dict[str, int] = {"stages": 3, "cells_per_stage": 1, "width": 16}
#: Largest macro values a genotype or a space may name (a sanity bound on data read back from a
#: shared store: the network builder loops over stages and cells).
MACRO_LIMITS: dict[str, int] = {"stages": 32, "cells_per_stage": 256, "width": 65536}
# NAS-Bench-201 op names, for its ``|op~i|+|op~i|op~i|+|...|`` architecture strings
_NB201 = {
    "none": "none",
    "skip": "skip_connect",
    "conv1x1": "nor_conv_1x1",
    "conv3x3": "nor_conv_3x3",
    "avgpool3x3": "avg_pool_3x3",
}
# relabelling nodes 1 <-> 2 (valid only while edge 2<-1 is none): position p takes edge _SWAP[p]
_SWAP = (1, 0, 2, 3, 5, 4)


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def read_cell_macro(macro: Any) -> dict[str, int]:
    """Check the optional ``macro`` object of a cell spec; returns it with defaults filled in."""
    if macro is None:
        return dict(DEFAULT_MACRO)
    if not isinstance(macro, dict) or not set(macro) <= set(DEFAULT_MACRO):
        got = sorted(macro) if isinstance(macro, dict) else type(macro).__name__
        raise InvalidGenotype(f"cell 'macro' keys must be among {sorted(DEFAULT_MACRO)}; got {got}")
    out = dict(DEFAULT_MACRO)
    for name, value in macro.items():
        if not _is_int(value) or value < 1:
            raise InvalidGenotype(f"cell macro {name!r} must be a positive integer; got {value!r}")
        if value > MACRO_LIMITS[name]:
            raise InvalidGenotype(f"cell macro {name!r} must be at most {MACRO_LIMITS[name]}; got {value!r}")
        out[name] = int(value)
    return out


def read_cell(g: Genotype) -> tuple[tuple[str, ...], dict[str, int]]:
    """Parse and check a ``cell-v1`` genotype.

    Returns:
        The 6 edge ops in :data:`EDGES` order and the macro (defaults filled in).

    Raises:
        InvalidGenotype: Saying what was expected and what was received.
    """
    if not isinstance(g, Genotype):
        raise InvalidGenotype(f"expected a Genotype, got {type(g).__name__}")
    if g.space != CellSpace.name:
        raise InvalidGenotype(f"genotype belongs to space {g.space!r}, expected {CellSpace.name!r}")
    spec = g.value
    if not isinstance(spec, dict) or "edges" not in spec or not set(spec) <= {"edges", "macro"}:
        got = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
        raise InvalidGenotype(f"cell spec keys must be 'edges' and optionally 'macro'; got {got}")
    return cell_ops(spec["edges"]), read_cell_macro(spec.get("macro"))


def cell_ops(edges: Any) -> tuple[str, ...]:
    """The 6 ops of an ``edges`` value (mapping ``"j<-i" -> op`` or list in :data:`EDGES` order)."""
    if isinstance(edges, Mapping):
        if set(edges) != set(EDGES):
            raise InvalidGenotype(f"cell edges must name exactly {list(EDGES)}; got {sorted(map(str, edges))}")
        ops = tuple(edges[e] for e in EDGES)
    elif isinstance(edges, (list, tuple)):
        if len(edges) != len(EDGES):
            raise InvalidGenotype(
                f"cell edges as a list must hold {len(EDGES)} ops (order {list(EDGES)}); got {len(edges)}"
            )
        ops = tuple(edges)
    else:
        raise InvalidGenotype(
            f"cell edges must be a mapping {{'1<-0': op, ...}} or a list of 6 ops; got {type(edges).__name__}"
        )
    for name, op in zip(EDGES, ops):
        if op not in CELL_OPS:
            raise InvalidGenotype(f"cell edge {name}: op must be one of {list(CELL_OPS)}; got {op!r}")
    return ops


def live_ops(ops: Sequence[str]) -> tuple[str, ...]:
    """``ops`` with every edge off all node-0 -> node-3 paths of non-``none`` edges set to none."""
    on = {pair for pair, op in zip(EDGE_PAIRS, ops) if op != "none"}
    fwd = {0}
    for j in (1, 2, 3):
        if any((i, j) in on and i in fwd for i in range(j)):
            fwd.add(j)
    bwd = {3}
    for i in (2, 1, 0):
        if any((i, j) in on and j in bwd for j in range(i + 1, 4)):
            bwd.add(i)
    return tuple(op if (i, j) in on and i in fwd and j in bwd else "none" for (i, j), op in zip(EDGE_PAIRS, ops))


def canonical_ops(ops: Sequence[str]) -> tuple[str, ...]:
    """The canonical op tuple: dead edges pruned, nodes 1 and 2 ordered (see module docstring)."""
    live = live_ops(ops)
    if live[2] == "none":
        swapped = tuple(live[p] for p in _SWAP)
        rank = {o: t for t, o in enumerate(CELL_OPS)}
        if [rank[o] for o in swapped] < [rank[o] for o in live]:
            return swapped
    return live


class CellSpace(SearchSpace):
    """NAS-Bench-201-style cells (``cell-v1``): 5 ops on 6 edges, 5**6 = 15,625 members.

    Args:
        stages: Number of stages (a reduction block between consecutive stages).
        cells_per_stage: Cells stacked in each stage (NAS-Bench-201 uses 5).
        width: Channels of the first stage (doubled at each reduction).

    The three settings are the macro skeleton, written into each genotype's ``macro``.

    Raises:
        UserError: On a bad setting.
    """

    name: ClassVar[str] = "cell-v1"
    kind: ClassVar[str] = "cell"
    encodings: ClassVar[tuple[str, ...]] = ("onehot", "path")

    def __init__(self, stages: int = 3, cells_per_stage: int = 1, width: int = 16) -> None:
        for label, value in (("stages", stages), ("cells_per_stage", cells_per_stage), ("width", width)):
            if not _is_int(value) or value < 1:
                raise UserError(f"cell {label} must be a positive integer; got {value!r}")
            if value > MACRO_LIMITS[label]:
                raise UserError(f"cell {label} must be at most {MACRO_LIMITS[label]}; got {value!r}")
        self.stages = int(stages)
        self.cells_per_stage = int(cells_per_stage)
        self.width = int(width)
        ops = CELL_OPS[1:]
        self._path_index = {
            seq: t for t, seq in enumerate(s for length in (1, 2, 3) for s in itertools.product(ops, repeat=length))
        }

    def settings(self) -> dict[str, Any]:
        return {"stages": self.stages, "cells_per_stage": self.cells_per_stage, "width": self.width}

    @property
    def macro(self) -> dict[str, int]:
        """The skeleton written into each genotype of this space."""
        return self.settings()

    def make(self, edges: Mapping[str, str] | Sequence[str]) -> Genotype:
        """A validated genotype of this space from edges (mapping or list), macro filled in."""
        ops = cell_ops(edges)
        return self._genotype(ops)

    def _genotype(self, ops: Sequence[str], macro: Mapping[str, int] | None = None) -> Genotype:
        return Genotype.of(self.name, {"edges": dict(zip(EDGES, ops)), "macro": dict(macro or self.macro)})

    def from_nb201(self, arch: str) -> Genotype:
        """A genotype from a NAS-Bench-201 string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
        inverse = {v: k for k, v in _NB201.items()}
        try:
            groups = [part.strip("|").split("|") for part in arch.split("+")]
            found = {}
            for j, group in enumerate(groups, start=1):
                for item in group:
                    op, i = item.split("~")
                    found[f"{j}<-{int(i)}"] = inverse[op]
        except (ValueError, KeyError, AttributeError):
            raise InvalidGenotype(
                f"expected a NAS-Bench-201 string like '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|'; got {arch!r}"
            ) from None
        return self.make(found)

    @staticmethod
    def to_nb201(g: Genotype) -> str:
        """The NAS-Bench-201 architecture string of ``g`` (the inverse of :meth:`from_nb201`)."""
        ops = dict(zip(EDGES, read_cell(g)[0]))
        return "+".join("|" + "|".join(f"{_NB201[ops[f'{j}<-{i}']]}~{i}" for i in range(j)) + "|" for j in (1, 2, 3))

    @staticmethod
    def ops_of(g: Genotype) -> tuple[str, ...]:
        """The 6 edge ops of ``g`` in :data:`EDGES` order."""
        return read_cell(g)[0]

    def validate(self, g: Genotype) -> None:
        self.check_space(g)
        read_cell(g)

    @classmethod
    def canonical(cls, g: Genotype) -> str:
        return json.dumps(list(canonical_ops(read_cell(g)[0])), separators=(",", ":"))

    @classmethod
    def describe(cls, g: Genotype) -> str:
        """Each node's incoming edges as ``op(from)`` (``none`` edges left out), then the width:
        ``1:conv3x3(0) 2:skip(1) 3:avgpool3x3(0)+conv1x1(1) w16``."""
        spec = g.value
        ops = cell_ops(spec["edges"])
        parts = []
        for j in (1, 2, 3):
            edges = [f"{op}({i})" for (i, to), op in zip(EDGE_PAIRS, ops) if to == j and op != "none"]
            parts.append(f"{j}:{'+'.join(edges) or 'none'}")
        width = (spec.get("macro") or {}).get("width")
        return " ".join(parts) + (f" w{width}" if width else "")

    def sample(self, rng: np.random.Generator) -> Genotype:
        return self._genotype([CELL_OPS[int(rng.integers(len(CELL_OPS)))] for _ in EDGES])

    def mutate(self, g: Genotype, rng: np.random.Generator) -> Genotype:
        """Change the op of one edge; edits that change the key are preferred (one always exists:
        edge ``3<-0`` is never pruned)."""
        self.validate(g)
        ops, macro = read_cell(g)
        key = g.key
        edits = [(e, o) for e in range(len(EDGES)) for o in CELL_OPS if o != ops[e]]
        for t in rng.permutation(len(edits)):
            e, o = edits[int(t)]
            child = self._genotype([o if p == e else x for p, x in enumerate(ops)], macro)
            if child.key != key:
                return child
        raise AssertionError("unreachable: changing edge 3<-0 always changes the key")

    def enumerate(self) -> Iterator[Genotype]:
        """All 15,625 cells (with this space's macro), in :data:`EDGES`-major product order."""
        for ops in itertools.product(CELL_OPS, repeat=len(EDGES)):
            yield self._genotype(ops)

    @property
    def onehot_width(self) -> int:
        """Width of the ``"onehot"`` encoding (36)."""
        return len(EDGES) * (1 + len(CELL_OPS))

    @property
    def path_width(self) -> int:
        """Width of the ``"path"`` encoding (4 + 16 + 64 = 84)."""
        return len(self._path_index)

    def encode(self, gs: Sequence[Genotype], encoding: str = "onehot") -> np.ndarray:
        """Encode the canonical cells of ``gs``; isomorphic cells give equal rows.

        ``"onehot"``: the 6 adjacency bits (edge is not ``none``, :data:`EDGES` order), then a
        one-hot op over :data:`CELL_OPS` per edge; width 36.

        ``"path"``: counts of each op sequence along node-0 -> node-3 paths (lengths 1..3 over
        the 4 non-``none`` ops); width 84.
        """
        if encoding not in self.encodings:
            raise UserError(f"encoding must be one of {list(self.encodings)}; got {encoding!r}")
        width = self.onehot_width if encoding == "onehot" else self.path_width
        out = np.zeros((len(gs), width), dtype=np.float64)
        rank = {o: t for t, o in enumerate(CELL_OPS)}
        n_e = len(EDGES)
        for row, g in enumerate(gs):
            self.validate(g)
            ops = canonical_ops(read_cell(g)[0])
            if encoding == "onehot":
                for e, op in enumerate(ops):
                    out[row, e] = 0.0 if op == "none" else 1.0
                    out[row, n_e + e * len(CELL_OPS) + rank[op]] = 1.0
                continue
            edge = dict(zip(EDGE_PAIRS, ops))
            for route in ((0, 3), (0, 1, 3), (0, 2, 3), (0, 1, 2, 3)):
                seq = tuple(edge[(a, b)] for a, b in zip(route, route[1:]))
                if "none" not in seq:
                    out[row, self._path_index[seq]] += 1.0
        return out
