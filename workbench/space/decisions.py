"""Genotypes as a fixed list of decisions: what models of a space's choices (EDA, TPE) and
crossover work on.

A :class:`DecisionView` lists a space's decisions once (:attr:`DecisionView.decisions`, the same
for every genotype of the space instance) and converts both ways:

* :meth:`DecisionView.values` reads a genotype as one value per decision: the index of the
  choice for a categorical decision, the number itself for a continuous one (log scale, between
  ``low`` and ``high``), and ``None`` where the decision is *inactive* in that genotype (the
  kernel of a pooling layer, the inputs of a DAG node after the last one, the merge of a node with
  one input).
* :meth:`DecisionView.build` turns any list of values into a genotype, *repaired*: whatever the
  values, the result is a valid member of the space in the space's own spelling (what ``sample``
  and ``mutate`` write), and ``build(values(g), template=g) == g`` for such genotypes. A ``None``
  where a decision turns out to be active takes the first choice (the geometric middle of a
  continuous range).

Views per space (chosen by the versioned space name, :func:`view_for`):

* ``chain-v1``: ``max_layers`` slots, each ``op`` (the ops or ``none``), ``kernel``, ``width``,
  ``dense_width``, ``act``. Repair: the slots' layers in order, feature layers first, at most
  ``max_dense`` dense layers (the first ones); no layer at all becomes a convolution with the first
  slot's kernel, width and activation.
* ``cell-v1``: the op of each of the 6 edges (no repair needed).
* ``nbgraph-v1``: the link pattern, then the op of each of the 4 nodes. Repair: four skips make the
  last node the dataset's first other op; the result is the table's canonical member.
* ``dag-v1``: per node slot ``k``: ``present`` (for ``k > min_nodes``; the nodes are the slots
  before the first absent one), ``in<i>`` for every earlier node ``i`` (read it or not), ``merge``
  and ``op``. Repair: a node that reads nothing reads its predecessor; ``merge`` is ``add`` for
  one input.
* ``joint-v1``: the inner space's decisions (``arch.`` prefixed), then ``lr`` and
  ``weight_decay`` (continuous), ``batch_size`` and ``epochs``.

:meth:`DecisionView.crossover` is uniform or one-point crossover on these lists (a decision
inactive in one parent comes from the other), repaired by :meth:`~DecisionView.build`, so every
child is a valid genotype in the space's spelling; :meth:`SearchSpace.crossover
<workbench.space.base.SearchSpace.crossover>` calls it.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.errors import InvalidGenotype
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype

Value = int | float | None
CROSSOVERS = ("uniform", "one-point")


@dataclass(frozen=True)
class Decision:
    """One decision of a space: categorical (``choices``: labels, values are indices) or
    continuous on a log scale (no choices; values are numbers in ``[low, high]``)."""

    name: str
    choices: tuple[str, ...] = ()
    low: float = 1.0
    high: float = 1.0

    @property
    def categorical(self) -> bool:
        """True for a choice among labels."""
        return bool(self.choices)

    @property
    def size(self) -> int:
        """Number of choices (0 for a continuous decision)."""
        return len(self.choices)

    def bin_of(self, value: float, bins: int) -> int:
        """The bin (of ``bins`` equal bins in log space) holding a continuous ``value``."""
        if self.high <= self.low:
            return 0
        pos = (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return int(min(max(math.floor(pos * bins), 0), bins - 1))

    def from_bin(self, b: int, bins: int, rng: np.random.Generator) -> float:
        """A log-uniform value inside bin ``b`` of ``bins``."""
        lo, hi = math.log(self.low), math.log(self.high)
        width = (hi - lo) / bins
        return float(math.exp(lo + width * (b + rng.random())))

    def middle(self) -> float:
        """The geometric middle of a continuous range."""
        return math.sqrt(self.low * self.high)


class DecisionView(ABC):
    """Genotypes of one space as a fixed list of decision values (see the module docstring)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.decisions: tuple[Decision, ...] = ()

    @abstractmethod
    def values(self, g: Genotype) -> list[Value]:
        """One value per decision (``None``: inactive in ``g``); raises :class:`InvalidGenotype`
        for a genotype that is not a member."""

    @abstractmethod
    def build(self, values: Sequence[Value], template: Genotype | None = None) -> Genotype:
        """A valid genotype in the space's spelling from ``values``, repaired where needed.

        ``template``: a genotype whose settings outside the decisions (a cell's or DAG's
        ``macro``) the result keeps; the space's own by default.
        """

    def random_values(self, rng: np.random.Generator) -> list[Value]:
        """A uniformly random value for every decision."""
        out: list[Value] = []
        for d in self.decisions:
            out.append(int(rng.integers(d.size)) if d.categorical else d.from_bin(0, 1, rng))
        return out

    def crossover(self, a: Genotype, b: Genotype, rng: np.random.Generator, kind: str = "uniform") -> Genotype:
        """A child of ``a`` and ``b``: each decision from one parent (uniform: a fair coin each;
        one-point: ``a``'s before a random cut, ``b``'s after), a decision inactive in that parent
        from the other; repaired by :meth:`build` with ``a``'s settings."""
        if kind not in CROSSOVERS:
            raise ValueError(f"crossover kind must be one of {list(CROSSOVERS)}; got {kind!r}")
        va, vb = self.values(a), self.values(b)
        n = len(va)
        if kind == "uniform":
            take_b = rng.random(n) < 0.5
        else:
            cut = int(rng.integers(1, n)) if n > 1 else 1
            take_b = np.arange(n) >= cut
        child = [
            (vb[i] if take_b[i] else va[i])
            if va[i] is not None and vb[i] is not None
            else (va[i] if va[i] is not None else vb[i])
            for i in range(n)
        ]
        return self.build(child, template=a)

    def _check(self, values: Sequence[Value]) -> list[Value]:
        if len(values) != len(self.decisions):
            raise ValueError(f"expected {len(self.decisions)} decision values, got {len(values)}")
        out: list[Value] = []
        for d, v in zip(self.decisions, values):
            if v is None:
                out.append(None)
            elif d.categorical:
                i = int(v)
                if not 0 <= i < d.size:
                    raise ValueError(f"decision {d.name}: choice {i} outside 0..{d.size - 1}")
                out.append(i)
            else:
                out.append(float(v))
        return out


def _first(v: Value) -> int:
    return 0 if v is None else int(v)


class ChainView(DecisionView):
    """``chain-v1``: per layer slot ``op`` (or ``none``), ``kernel``, ``width``, ``dense_width``, ``act``."""

    FIELDS = ("op", "kernel", "width", "dense_width", "act")

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        from workbench.space import chain

        self._chain = chain
        self._ops: tuple[str, ...] = (*chain.OPS, "none")
        labels = {
            "op": self._ops,
            "kernel": tuple(str(k) for k in space.kernels),
            "width": tuple(str(w) for w in space.widths),
            "dense_width": tuple(str(w) for w in space.dense_widths),
            "act": tuple(space.activations),
        }
        self.decisions = tuple(
            Decision(f"layer{i}.{f}", labels[f]) for i in range(space.max_layers) for f in self.FIELDS
        )

    def values(self, g: Genotype) -> list[Value]:
        sp, chain = self.space, self._chain
        sp.validate(g)
        layers = g.value["layers"]
        out: list[Value] = []
        for i in range(sp.max_layers):
            if i >= len(layers):
                out += [self._ops.index("none"), None, None, None, None]
                continue
            layer = layers[i]
            op = layer["op"]
            out.append(self._ops.index(op))
            out.append(sp.kernels.index(layer["kernel"]) if op in chain.CONV_OPS else None)
            out.append(sp.widths.index(layer["width"]) if op in chain.CONV_OPS else None)
            out.append(sp.dense_widths.index(layer["width"]) if op in chain.DENSE_OPS else None)
            out.append(sp.activations.index(layer["act"]) if "act" in layer else None)
        return out

    def build(self, values: Sequence[Value], template: Genotype | None = None) -> Genotype:
        sp, chain = self.space, self._chain
        values = self._check(values)
        feature: list[dict[str, Any]] = []
        dense: list[dict[str, Any]] = []
        n = len(self.FIELDS)
        for i in range(sp.max_layers):
            op_v, k, w, dw, a = values[i * n : (i + 1) * n]
            op = self._ops[self._ops.index("none") if op_v is None else int(op_v)]
            if op in chain.CONV_OPS:
                feature.append(self._conv(op, k, w, a))
            elif op in chain.DENSE_OPS:
                dense.append({"op": op, "width": sp.dense_widths[_first(dw)], "act": sp.activations[_first(a)]})
            elif op != "none":
                feature.append({"op": op})
        layers = feature + dense[: sp.max_dense]
        if not layers:
            layers = [self._conv(chain.CONV_OPS[0], *(values[i] for i in (1, 2, 4)))]
        return Genotype.of(sp.name, {"layers": layers})

    def _conv(self, op: str, k: Value, w: Value, a: Value) -> dict[str, Any]:
        sp = self.space
        return {
            "op": op,
            "kernel": sp.kernels[_first(k)],
            "width": sp.widths[_first(w)],
            "act": sp.activations[_first(a)],
        }


class CellView(DecisionView):
    """``cell-v1``: the op of each of the 6 edges."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        from workbench.space import cell

        self._cell = cell
        self.decisions = tuple(Decision(f"edge {e}", tuple(cell.CELL_OPS)) for e in cell.EDGES)

    def values(self, g: Genotype) -> list[Value]:
        self.space.validate(g)
        ops, _ = self._cell.read_cell(g)
        return [self._cell.CELL_OPS.index(op) for op in ops]

    def build(self, values: Sequence[Value], template: Genotype | None = None) -> Genotype:
        cell = self._cell
        ops = [cell.CELL_OPS[_first(v)] for v in self._check(values)]
        macro = cell.read_cell(template)[1] if template is not None else self.space.macro
        return Genotype.of(self.space.name, {"edges": dict(zip(cell.EDGES, ops)), "macro": dict(macro)})


class NBGraphView(DecisionView):
    """``nbgraph-v1``: the canonical link pattern, then the op of each of the 4 nodes."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        from workbench.data import nbgraph_tables as tables

        self._tables = tables
        patterns = tuple("".join(map(str, p)) for p in tables.LINK_PATTERNS)
        ops = tuple(space.ops)
        self.decisions = (Decision("links", patterns), *(Decision(f"op{i}", ops) for i in range(1, 5)))

    def values(self, g: Genotype) -> list[Value]:
        key = self.space.key_of(g)
        ops = [self._tables.OPS[(key // 10 ** (3 - i)) % 10] for i in range(4)]
        return [key // 10**4] + [self.space.ops.index(op) for op in ops]

    def build(self, values: Sequence[Value], template: Genotype | None = None) -> Genotype:
        tables, sp = self._tables, self.space
        values = self._check(values)
        ops = [sp.ops[_first(v)] for v in values[1:]]
        if all(op == "skip" for op in ops):
            ops[3] = next(op for op in sp.ops if op != "skip")
        key = tables.arch_key(list(tables.LINK_PATTERNS[_first(values[0])]), ops)
        if key not in tables.key_index(sp.dataset):  # pragma: no cover - every pattern x ops is tabulated
            raise InvalidGenotype(f"benchmark key {key:05d} is not in the {sp.dataset} table")
        return sp.genotype_of_key(key)


class DagView(DecisionView):
    """``dag-v1``: per node slot ``present`` (beyond ``min_nodes``), ``in<i>`` per earlier node, ``merge``, ``op``."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        from workbench.space import dag

        self._dag = dag
        decs: list[Decision] = []
        self._slots: list[tuple[int | None, list[int], int, int]] = []  # present, inputs, merge, op
        for k in range(1, space.max_nodes + 1):
            present = None
            if k > space.min_nodes:
                present = len(decs)
                decs.append(Decision(f"node{k}.present", ("no", "yes")))
            ins = list(range(len(decs), len(decs) + k))
            decs += [Decision(f"node{k}.in{i}", ("no", "yes")) for i in range(k)]
            decs.append(Decision(f"node{k}.merge", tuple(dag.MERGES)))
            decs.append(Decision(f"node{k}.op", tuple(space.ops)))
            self._slots.append((present, ins, len(decs) - 2, len(decs) - 1))
        self.decisions = tuple(decs)

    def values(self, g: Genotype) -> list[Value]:
        sp, dag = self.space, self._dag
        sp.validate(g)
        nodes, _ = dag.read_dag(g, ops=sp.ops, max_nodes=sp.max_nodes)
        n = len(nodes)
        out: list[Value] = [None] * len(self.decisions)
        for k, (present, ins, merge, op) in enumerate(self._slots, start=1):
            if present is not None and k <= n + 1:
                out[present] = 1 if k <= n else 0
            if k > n:
                continue
            node = nodes[k - 1]
            for i, col in enumerate(ins):
                out[col] = 1 if i in node.inputs else 0
            if len(node.inputs) > 1:
                out[merge] = dag.MERGES.index(node.merge)
            out[op] = sp.ops.index(node.op)
        return out

    def build(self, values: Sequence[Value], template: Genotype | None = None) -> Genotype:
        sp, dag = self.space, self._dag
        values = self._check(values)
        nodes: list[dict[str, Any]] = []
        for k, (present, ins, merge, op) in enumerate(self._slots, start=1):
            if present is not None and values[present] != 1:
                break
            inputs = [i for i, col in enumerate(ins) if values[col] == 1] or [k - 1]
            how = dag.MERGES[_first(values[merge])] if len(inputs) > 1 else "add"
            nodes.append({"op": sp.ops[_first(values[op])], "merge": how, "inputs": inputs})
        macro = dag.read_dag(template)[1] if template is not None else {"width": sp.width}
        return Genotype.of(sp.name, {"nodes": nodes, "macro": dict(macro)})


class JointView(DecisionView):
    """``joint-v1``: the inner space's decisions, then ``lr``, ``weight_decay``, ``batch_size``, ``epochs``."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        from workbench.space import joint

        self._joint = joint
        inner = view_for(space.inner)
        if inner is None:
            raise InvalidGenotype(f"joint decisions need decisions of the inner space {space.inner.name!r}")
        self.inner = inner
        self._m = len(inner.decisions)
        hp = [Decision(n, low=space.ranges[n][0], high=space.ranges[n][1]) for n in joint.CONTINUOUS]
        hp += [Decision(n, tuple(str(v) for v in space.choices[n])) for n in joint.DISCRETE]
        self.decisions = (*(Decision(f"arch.{d.name}", d.choices, d.low, d.high) for d in inner.decisions), *hp)

    def values(self, g: Genotype) -> list[Value]:
        joint, sp = self._joint, self.space
        sp.validate(g)
        hp = joint.JointSpace.hyperparameters(g)
        out = self.inner.values(joint.JointSpace.architecture(g))
        out += [float(hp[n]) for n in joint.CONTINUOUS]
        out += [sp.choices[n].index(hp[n]) for n in joint.DISCRETE]
        return out

    def build(self, values: Sequence[Value], template: Genotype | None = None) -> Genotype:
        joint, sp = self._joint, self.space
        values = self._check(values)
        inner_template = joint.JointSpace.architecture(template) if template is not None else None
        arch = self.inner.build(values[: self._m], template=inner_template)
        hp: dict[str, Any] = {}
        rest = values[self._m :]
        for t, name in enumerate(joint.CONTINUOUS):
            d = self.decisions[self._m + t]
            hp[name] = d.middle() if rest[t] is None else float(rest[t])
        for t, name in enumerate(joint.DISCRETE, start=len(joint.CONTINUOUS)):
            hp[name] = sp.choices[name][_first(rest[t])]
        return sp.make(arch, hp)


# versioned space name -> "module:Class" of its view
_VIEWS: dict[str, str] = {
    "chain-v1": "workbench.space.decisions:ChainView",
    "cell-v1": "workbench.space.decisions:CellView",
    "nbgraph-v1": "workbench.space.decisions:NBGraphView",
    "dag-v1": "workbench.space.decisions:DagView",
    "joint-v1": "workbench.space.decisions:JointView",
}


def view_for(space: SearchSpace) -> DecisionView | None:
    """The decision view of ``space`` (by its versioned name), None for a space without one."""
    target = _VIEWS.get(space.name)
    if target is None:
        return None
    module, cls = target.split(":")
    try:
        return getattr(importlib.import_module(module), cls)(space)
    except InvalidGenotype:
        return None
