"""The genotype side of network morphisms: where each edit applies, and the edited genotype.

This module is torch-free, so strategies can propose morphism steps; the weight side
(:meth:`workbench.morph.base.Morphism.transfer`) lives in :mod:`workbench.morph`, which
subclasses the classes here.

Operators (``op`` of a :class:`~workbench.space.edits.MorphismStep`) and their sites:

=================  ===============================  ======================================
op                 ``chain-v1`` site                ``dag-v1`` site
=================  ===============================  ======================================
``deepen``         ``(p,)``: insert layer ``p``     ``(k,)``: insert a conv node after
                   (after layer ``p-1``)            node ``k``; ``k``'s consumers read it
``widen``          ``(i,)``: layer ``i`` wider      ``()``: the macro width (every node)
``skip``           -                                ``(i, k)``: node ``k`` also reads ``i``
``enlarge_kernel`` ``(i,)``: layer ``i``'s kernel   ``(k,)``: node ``k``'s kernel
=================  ===============================  ======================================

Function preservation (the contract of :class:`workbench.morph.base.Morphism`) restricts sites:

* ``deepen`` inserts an *identity* layer followed by its activation. Only ReLU is the identity
  on its own input range, and only when that input is non-negative, so a layer is inserted only
  where the preceding output is non-negative (after a ReLU layer, possibly followed by pooling),
  always with ``act = "relu"`` (chain) or a conv op (which ends in ReLU, DAG). GELU / tanh
  layers are never followed by an inserted layer; the chain space has no linear activation.
* ``widen`` of the last chain convolution changes the flattened layout when the network has to
  pool its features down to ``MAX_FLAT_FEATURES`` (a wider layer pools to a smaller grid):
  pass ``input_shape`` to :meth:`GenotypeMorphism.sites` to leave such sites out.
* ``widen`` of a DAG changes its macro width, which is *not* part of the genotype key.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from workbench.errors import InvalidGenotype
from workbench.space.base import SearchSpace
from workbench.space.dag import DagNode, live_nodes, read_dag
from workbench.space.edits import MorphismStep
from workbench.space.genotype import Genotype

#: Must equal :data:`workbench.nn.chain.MAX_FLAT_FEATURES` (a test checks it).
CHAIN_MAX_FLAT_FEATURES = 4096
CHAIN_CONVS = ("conv", "sepconv")
CHAIN_POOLS = ("maxpool", "avgpool")
DAG_CONVS = ("conv3", "conv5", "sepconv3", "sepconv5")
DAG_ENLARGE = {"conv3": "conv5", "sepconv3": "sepconv5"}


class GenotypeMorphism(ABC):
    """A function-preserving edit of genotypes of one space (the torch-free half of a morphism).

    Contract:
        * Every step of ``sites(g)`` is accepted by ``apply(g, step)``, which returns a new
          genotype of the same space (never ``g`` itself) and does not mutate ``g``.
        * With ``space`` given, sites whose result ``space`` rejects are left out.
        * ``apply`` of a step not in ``sites(g)`` raises :class:`InvalidGenotype`.

    Attributes:
        op: Operator name written into steps.
        space_name: The versioned space whose genotypes it edits.
    """

    op: ClassVar[str]
    space_name: ClassVar[str]

    @abstractmethod
    def candidates(
        self, g: Genotype, space: SearchSpace | None, input_shape: Sequence[int] | None
    ) -> list[MorphismStep]:
        """Every function-preserving step on ``g`` (before the space filter)."""

    @abstractmethod
    def edit(self, g: Genotype, step: MorphismStep) -> Genotype:
        """The edited genotype (``step`` already checked to be one of ``candidates``)."""

    def sites(
        self, g: Genotype, *, space: SearchSpace | None = None, input_shape: Sequence[int] | None = None
    ) -> list[MorphismStep]:
        """Steps of this operator that apply to ``g``.

        Args:
            g: The parent genotype.
            space: When given, target values come from its settings (widths, kernels, ops)
                and only steps whose result it accepts are returned.
            input_shape: When given (`C x L` or `C x H x W`), sites that cannot preserve the
                function for that input (see the module docstring) are left out.
        """
        if g.space != self.space_name:
            return []
        out = self.candidates(g, space, input_shape)
        if space is not None:
            out = [s for s in out if space.contains(self.edit(g, s))]
        return out

    def apply(self, g: Genotype, step: MorphismStep) -> Genotype:
        """The child genotype of ``step``; raises :class:`InvalidGenotype` if it does not apply."""
        if g.space != self.space_name:
            raise InvalidGenotype(f"morphism {self.op!r} edits {self.space_name!r} genotypes, got {g.space!r}")
        if step.op != self.op:
            raise InvalidGenotype(f"step {step} is not a {self.op!r} step")
        if step not in self.candidates(g, None, None) and not self._admits(g, step):
            raise InvalidGenotype(f"step {step} does not apply to {g}")
        return self.edit(g, step)

    def _admits(self, g: Genotype, step: MorphismStep) -> bool:
        """Steps outside the default candidates that are still valid (e.g. other target widths)."""
        return False


# -- chain-v1 ------------------------------------------------------------------------------


def chain_layers(g: Genotype) -> list[dict[str, Any]]:
    """The layer dicts of a ``chain-v1`` genotype."""
    spec = g.value
    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list):
        raise InvalidGenotype('chain genotype spec must be {"layers": [...]}')
    return spec["layers"]


def chain_nonneg(layers: Sequence[dict[str, Any]]) -> list[bool]:
    """Per layer: True when its output is non-negative for every input (a ReLU, then pooling)."""
    out, cur = [], False  # the raw input may be negative
    for layer in layers:
        if "act" in layer:
            cur = layer["act"] == "relu"
        out.append(cur)
    return out


def chain_channels(layers: Sequence[dict[str, Any]]) -> list[int | None]:
    """Per layer: the feature channels after it (None before the first convolution / for dense)."""
    out, cur = [], None
    for layer in layers:
        if layer["op"] in CHAIN_CONVS:
            cur = int(layer["width"])
        out.append(cur if layer["op"] != "dense" else None)
    return out


def chain_flat_grid(layers: Sequence[dict[str, Any]], input_shape: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    """Channels and spatial grid that the chain network flattens (mirrors ``build_chain``)."""
    channels, size = int(input_shape[0]), [int(s) for s in input_shape[1:]]
    dims = len(size)
    for layer in layers:
        if layer["op"] in CHAIN_CONVS:
            channels = int(layer["width"])
        elif layer["op"] in CHAIN_POOLS and min(size) >= 2:
            size = [s // 2 for s in size]
    if channels * math.prod(size) > CHAIN_MAX_FLAT_FEATURES:
        per_axis = max(1, int((CHAIN_MAX_FLAT_FEATURES / channels) ** (1 / dims)))
        size = [min(s, per_axis) for s in size]
    return channels, tuple(size)


def _chain(g: Genotype, layers: list[dict[str, Any]]) -> Genotype:
    return Genotype.of(g.space, {"layers": layers})


class ChainDeepenEdit(GenotypeMorphism):
    """Insert an identity-initialised ``conv`` / ``sepconv`` or ``dense`` layer with ReLU.

    Site ``(p,)``: the new layer becomes layer ``p`` (after layer ``p - 1``, whose output must
    be non-negative). Params: ``layer`` (``conv``, ``sepconv`` or ``dense``), ``width`` (the
    incoming width) and ``kernel`` (convolutions; the space's smallest, else 3).
    """

    op = "deepen"
    space_name = "chain-v1"

    def candidates(self, g, space, input_shape):
        layers = chain_layers(g)
        nonneg, chans = chain_nonneg(layers), chain_channels(layers)
        kernel = min(getattr(space, "kernels", (3,))) if space is not None else 3
        if space is not None and "relu" not in getattr(space, "activations", ("relu",)):
            return []
        out = []
        for p in range(1, len(layers) + 1):
            prev = layers[p - 1]
            if not nonneg[p - 1]:
                continue
            if prev["op"] != "dense" and chans[p - 1] is not None:
                for kind in CHAIN_CONVS:
                    out.append(MorphismStep.make(self.op, (p,), layer=kind, width=chans[p - 1], kernel=kernel))
            elif prev["op"] == "dense":
                out.append(MorphismStep.make(self.op, (p,), layer="dense", width=int(prev["width"])))
        return out

    def _admits(self, g, step):
        # any odd kernel is fine for an identity convolution
        k = step.param("kernel")
        if step.param("layer") not in CHAIN_CONVS or not isinstance(k, int) or k < 1 or k % 2 == 0:
            return False
        base = MorphismStep.make(self.op, step.site, layer=step.param("layer"), width=step.param("width"), kernel=3)
        return base in self.candidates(g, None, None)

    def edit(self, g, step):
        layers = [dict(x) for x in chain_layers(g)]
        (p,) = step.site
        kind = step.param("layer")
        if kind == "dense":
            new = {"op": "dense", "width": step.param("width"), "act": "relu"}
        else:
            new = {"op": kind, "kernel": step.param("kernel"), "width": step.param("width"), "act": "relu"}
        layers.insert(p, new)
        return _chain(g, layers)


class ChainWidenEdit(GenotypeMorphism):
    """Net2WiderNet on a ``conv`` / ``sepconv`` / ``dense`` layer.

    Site ``(i,)``; params ``width`` (the new, larger width) and optionally ``noise`` (relative
    scale of zero-sum noise on the replicas' outgoing weights, which breaks their symmetry and
    still preserves the function).

    Args:
        noise: Written into every site's params when positive.
    """

    op = "widen"
    space_name = "chain-v1"

    def __init__(self, noise: float = 0.0) -> None:
        self.noise = float(noise)

    def _targets(self, layer: dict[str, Any], space: SearchSpace | None) -> list[int]:
        w = int(layer["width"])
        if space is None:
            return [2 * w]
        allowed = getattr(space, "dense_widths" if layer["op"] == "dense" else "widths", ())
        return sorted(int(x) for x in allowed if int(x) > w)

    def candidates(self, g, space, input_shape):
        layers = chain_layers(g)
        out = []
        for i, layer in enumerate(layers):
            if "width" not in layer:
                continue
            for w in self._targets(layer, space):
                step = self._step(i, w)
                if (
                    input_shape is not None
                    and layer["op"] != "dense"
                    and not self._keeps_grid(layers, i, w, input_shape)
                ):
                    continue
                out.append(step)
        return out

    def _step(self, i: int, w: int) -> MorphismStep:
        if self.noise > 0:
            return MorphismStep.make(self.op, (i,), width=w, noise=self.noise)
        return MorphismStep.make(self.op, (i,), width=w)

    @staticmethod
    def _keeps_grid(layers, i, w, input_shape) -> bool:
        wider = [dict(x) for x in layers]
        wider[i]["width"] = w
        return chain_flat_grid(layers, input_shape)[1] == chain_flat_grid(wider, input_shape)[1]

    def _admits(self, g, step):
        layers = chain_layers(g)
        if len(step.site) != 1 or not isinstance(step.site[0], int) or not 0 <= step.site[0] < len(layers):
            return False
        layer = layers[step.site[0]]
        w, noise = step.param("width"), step.param("noise", 0.0)
        return (
            "width" in layer
            and isinstance(w, int)
            and w > int(layer["width"])
            and isinstance(noise, (int, float))
            and noise >= 0
            and {k for k, _ in step.params} <= {"width", "noise"}
        )

    def edit(self, g, step):
        layers = [dict(x) for x in chain_layers(g)]
        layers[step.site[0]]["width"] = step.param("width")
        return _chain(g, layers)


class ChainEnlargeKernelEdit(GenotypeMorphism):
    """Zero-pad a ``conv`` / ``sepconv`` kernel to a larger odd size ('same' padding kept).

    Site ``(i,)``; param ``kernel`` (the new size).
    """

    op = "enlarge_kernel"
    space_name = "chain-v1"

    def candidates(self, g, space, input_shape):
        out = []
        for i, layer in enumerate(chain_layers(g)):
            if layer["op"] not in CHAIN_CONVS:
                continue
            k = int(layer["kernel"])
            targets = [k + 2] if space is None else sorted(int(x) for x in getattr(space, "kernels", ()) if int(x) > k)
            out += [MorphismStep.make(self.op, (i,), kernel=t) for t in targets]
        return out

    def _admits(self, g, step):
        layers = chain_layers(g)
        if len(step.site) != 1 or not isinstance(step.site[0], int) or not 0 <= step.site[0] < len(layers):
            return False
        layer, k = layers[step.site[0]], step.param("kernel")
        return layer["op"] in CHAIN_CONVS and isinstance(k, int) and k > layer["kernel"] and k % 2 == 1

    def edit(self, g, step):
        layers = [dict(x) for x in chain_layers(g)]
        layers[step.site[0]]["kernel"] = step.param("kernel")
        return _chain(g, layers)


# -- dag-v1 --------------------------------------------------------------------------------


def dag_nonneg(nodes: Sequence[DagNode]) -> list[bool]:
    """Per node 0 (stem) .. n: True when its output is non-negative for every input.

    Convolution ops and the stem end in ReLU; pooling and identity keep the sign of their
    merged input; a ``concat`` merge projects through a 1x1 convolution + BatchNorm (any sign).
    """
    out = [True]
    for node in nodes:
        if node.op in DAG_CONVS:
            out.append(True)
        elif node.merge == "concat" and len(node.inputs) > 1:
            out.append(False)
        else:
            out.append(all(out[i] for i in node.inputs))
    return out


def _dag(g: Genotype, nodes: Sequence[DagNode], macro: dict[str, int]) -> Genotype:
    return Genotype.of(g.space, {"nodes": [n.as_dict() for n in nodes], "macro": dict(macro)})


class DagDeepenEdit(GenotypeMorphism):
    """Insert an identity-initialised convolution node after node ``k`` (site ``(k,)``).

    The new node (index ``k + 1``; later nodes shift up by one) reads ``k``; every node that
    read ``k`` reads the new node instead (after the output, the new node is the output). Node
    ``k`` must be live with a non-negative output. Param ``node_op``: the convolution op.
    """

    op = "deepen"
    space_name = "dag-v1"

    def candidates(self, g, space, input_shape):
        nodes, _ = read_dag(g)
        if space is None:
            ops = ["conv3", "sepconv3"]
        else:
            ops = [o for o in DAG_CONVS if o in getattr(space, "ops", DAG_CONVS)]
        nonneg = dag_nonneg(nodes)
        live = live_nodes(nodes) | {0}
        return [
            MorphismStep.make(self.op, (k,), node_op=op)
            for k in range(len(nodes) + 1)
            if k in live and nonneg[k]
            for op in ops
        ]

    def _admits(self, g, step):
        base = MorphismStep.make(self.op, step.site, node_op="conv3")
        return step.param("node_op") in DAG_CONVS and len(step.params) == 1 and base in self.candidates(g, None, None)

    def edit(self, g, step):
        nodes, macro = read_dag(g)
        (k,) = step.site

        def shift(i: int) -> int:
            return i + 1 if i > k else i

        out = []
        for node in nodes:
            ins = tuple(sorted(k + 1 if i == k else shift(i) for i in node.inputs))
            out.append(DagNode(node.op, node.merge, ins))
        out.insert(k, DagNode(step.param("node_op"), "add", (k,)))
        return _dag(g, out, macro)


class DagSkipEdit(GenotypeMorphism):
    """Add the input ``i`` to node ``k`` (site ``(i, k)``) through a zero-weight concat merge.

    Node ``k`` becomes a ``concat`` node: its 1x1 projection gets zero weights on the new
    input and, when ``k`` summed its inputs before, identity blocks on the old ones.
    """

    op = "skip"
    space_name = "dag-v1"

    def candidates(self, g, space, input_shape):
        nodes, _ = read_dag(g)
        live = live_nodes(nodes)
        return [
            MorphismStep.make(self.op, (i, k)) for k in sorted(live) for i in range(k) if i not in nodes[k - 1].inputs
        ]

    def edit(self, g, step):
        nodes, macro = read_dag(g)
        i, k = step.site
        old = nodes[k - 1]
        out = list(nodes)
        out[k - 1] = DagNode(old.op, "concat", tuple(sorted((*old.inputs, i))))
        return _dag(g, out, macro)


class DagEnlargeKernelEdit(GenotypeMorphism):
    """``conv3 -> conv5`` or ``sepconv3 -> sepconv5`` on live node ``k`` (site ``(k,)``)."""

    op = "enlarge_kernel"
    space_name = "dag-v1"

    def candidates(self, g, space, input_shape):
        nodes, _ = read_dag(g)
        ops = getattr(space, "ops", None) if space is not None else None
        return [
            MorphismStep.make(self.op, (k,), node_op=DAG_ENLARGE[nodes[k - 1].op])
            for k in sorted(live_nodes(nodes))
            if nodes[k - 1].op in DAG_ENLARGE and (ops is None or DAG_ENLARGE[nodes[k - 1].op] in ops)
        ]

    def edit(self, g, step):
        nodes, macro = read_dag(g)
        (k,) = step.site
        out = list(nodes)
        out[k - 1] = DagNode(step.param("node_op"), out[k - 1].merge, out[k - 1].inputs)
        return _dag(g, out, macro)


class DagWidenEdit(GenotypeMorphism):
    """Net2WiderNet on the whole DAG: macro width ``w -> width`` (site ``()``, param ``width``).

    Every node has the macro width (sums need equal widths), so all widen together. The
    macro width is not part of the genotype key: a widened DAG has its parent's key.
    """

    op = "widen"
    space_name = "dag-v1"

    def candidates(self, g, space, input_shape):
        _, macro = read_dag(g)
        return [MorphismStep.make(self.op, (), width=2 * macro["width"])]

    def _admits(self, g, step):
        _, macro = read_dag(g)
        w = step.param("width")
        return step.site == () and isinstance(w, int) and w > macro["width"] and len(step.params) == 1

    def edit(self, g, step):
        nodes, macro = read_dag(g)
        return _dag(g, nodes, {**macro, "width": step.param("width")})


# -- registry and helpers --------------------------------------------------------------------

# (operator, space) -> the genotype side of the operator
_EDITS: dict[tuple[str, str], GenotypeMorphism] = {
    (e.op, e.space_name): e
    for e in (
        ChainDeepenEdit(),
        ChainWidenEdit(),
        ChainEnlargeKernelEdit(),
        DagDeepenEdit(),
        DagSkipEdit(),
        DagEnlargeKernelEdit(),
        DagWidenEdit(),
    )
}


def edit_ops(space_name: str) -> list[str]:
    """Operator names that have genotype edits for ``space_name`` (empty: no morphisms)."""
    return sorted(op for op, s in _EDITS if s == space_name)


def genotype_edit(op: str, space_name: str) -> GenotypeMorphism:
    """The genotype side of operator ``op`` for ``space_name``."""
    try:
        return _EDITS[(op, space_name)]
    except KeyError:
        raise InvalidGenotype(
            f"no morphism {op!r} for space {space_name!r}; expected one of {edit_ops(space_name)}"
        ) from None


def morph_sites(
    g: Genotype,
    *,
    space: SearchSpace | None = None,
    input_shape: Sequence[int] | None = None,
    ops: Sequence[str] | None = None,
) -> list[MorphismStep]:
    """Every morphism step that applies to ``g`` (see :meth:`GenotypeMorphism.sites`)."""
    out: list[MorphismStep] = []
    for op in edit_ops(g.space):
        if ops is None or op in ops:
            out += genotype_edit(op, g.space).sites(g, space=space, input_shape=input_shape)
    return out


def apply_steps(g: Genotype, steps: Sequence[MorphismStep]) -> Genotype:
    """Apply ``steps`` in order (each in the indexing of the genotype it edits)."""
    for step in steps:
        g = genotype_edit(step.op, g.space).apply(g, step)
    return g


def random_morphisms(
    g: Genotype,
    rng: np.random.Generator,
    n_steps: int,
    *,
    space: SearchSpace | None = None,
    input_shape: Sequence[int] | None = None,
    ops: Sequence[str] | None = None,
) -> tuple[Genotype, tuple[MorphismStep, ...]] | None:
    """Up to ``n_steps`` random steps, each changing the genotype's key; None when none applies.

    Each step is drawn uniformly from the operators that have a key-changing site, then
    uniformly among that operator's sites (so operators with many sites do not dominate).
    """
    steps: list[MorphismStep] = []
    for _ in range(max(1, int(n_steps))):
        by_op: dict[str, list[MorphismStep]] = {}
        for s in morph_sites(g, space=space, input_shape=input_shape, ops=ops):
            by_op.setdefault(s.op, []).append(s)
        choices: list[tuple[MorphismStep, Genotype]] = []
        names = sorted(by_op)
        order = [names[int(j)] for j in rng.permutation(len(names))]
        for op in order:
            cands = by_op[op]
            for j in rng.permutation(len(cands)):
                child = apply_steps(g, [cands[int(j)]])
                if child.key != g.key:
                    choices.append((cands[int(j)], child))
                    break
            if choices:
                break
        if not choices:
            break
        step, g = choices[0]
        steps.append(step)
    if not steps:
        return None
    return g, tuple(steps)
