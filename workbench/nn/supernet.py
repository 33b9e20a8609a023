"""The weight-sharing supernet of the cell space ``cell-v1``: every op on every edge.

The skeleton is the one :mod:`workbench.nn.cell` builds for a genotype (stem, stages of cells
with a residual reduction block between stages, BN-ReLU, global pooling, a linear head), with
the same module names; only the cells differ: each edge holds one module per op
(:class:`MixedEdge`), shared by every cell the supernet can stand for.

Three ways to run it (the ``arch`` argument of :meth:`CellSupernet.forward`):

* a **path** (a tuple of the 6 edge ops, :data:`workbench.space.cell.EDGES` order): the discrete
  cell, computed exactly as :class:`workbench.nn.cell.Cell` computes it (only live edges, node
  sums in the same order), so a sub-network's output equals the stand-alone network's given
  the same weights (:func:`subnet_state` copies them). SPOS trains on random paths; the
  one-shot estimator scores a genotype on its path.
* a **mixture** (:class:`Mixture` with a `6 x 5` weight tensor over :data:`CELL_OPS`): every edge
  outputs the weighted sum of its ops (DARTS' continuous relaxation, weights = softmax of the
  op logits); ``none`` contributes zero.
* a **hard mixture** (:class:`Mixture` with ``index``, one op per edge): only the chosen op is
  computed and multiplied by its (straight-through one-hot) weight, so gradients reach every op
  logit (GDAS).

Weight names: a stand-alone cell network names an edge op's tensors
``body.<k>.edges.<j<-i>.<rest>``; the supernet names them
``body.<k>.edges.<j<-i>.ops.<op>.<rest>``; every other tensor has the same name in both
(:func:`subnet_state`, :func:`supernet_name`).
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from workbench.errors import UserError
from workbench.nn.cell import ReductionBlock, cell_op
from workbench.nn.dag import conv, global_pool, norm, spatial_dims
from workbench.space.cell import CELL_OPS, EDGE_PAIRS, EDGES, cell_ops, live_ops, read_cell_macro

#: Spaces with a supernet (versioned space names).
SUPERNET_SPACES: tuple[str, ...] = ("cell-v1",)
#: The ops that own modules (every op but ``none``).
MODULE_OPS: tuple[str, ...] = tuple(op for op in CELL_OPS if op != "none")
_EDGE_KEY = re.compile(r"^(body\.\d+\.edges\.)([^.]+)\.ops\.([^.]+)\.(.+)$")


@dataclass(frozen=True)
class Mixture:
    """Op weights of every edge: ``weights`` is `6 x len(CELL_OPS)` (rows in :data:`EDGES`
    order, columns in :data:`CELL_OPS` order). With ``index`` (one op per edge) only those ops
    are computed (hard sampling); else every op (the weighted sum)."""

    weights: torch.Tensor
    index: tuple[int, ...] | None = None


class MixedEdge(nn.Module):
    """One edge of the supernet: a module per op (``none`` has none)."""

    def __init__(self, dims: int, channels: int) -> None:
        super().__init__()
        self.ops = nn.ModuleDict({op: cell_op(op, dims, channels) for op in MODULE_OPS})

    def forward_op(self, x: torch.Tensor, op: str) -> torch.Tensor:
        """The output of one op (never ``none``)."""
        return self.ops[op](x)

    def forward_mixed(self, x: torch.Tensor, weights: torch.Tensor, index: int | None = None) -> torch.Tensor:
        """The weighted sum of the ops (``weights`` over :data:`CELL_OPS`), or with ``index`` only
        that op times its weight (zero for ``none``, which still passes the weight's gradient)."""
        if index is not None:
            op = CELL_OPS[index]
            if op == "none":
                return weights[index] * torch.zeros_like(x)
            return weights[index] * self.ops[op](x)
        total: torch.Tensor | None = None
        for k, op in enumerate(CELL_OPS):
            if op == "none":
                continue
            y = weights[k] * self.ops[op](x)
            total = y if total is None else total + y
        assert total is not None
        return total


class SuperCell(nn.Module):
    """Nodes 0..3 of a cell with every op on every edge."""

    def __init__(self, dims: int, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleDict({name: MixedEdge(dims, channels) for name in EDGES})

    def forward_path(self, x: torch.Tensor, ops: Sequence[str]) -> torch.Tensor:
        """The discrete cell ``ops``, exactly as :class:`workbench.nn.cell.Cell` computes it."""
        live = live_ops(ops)
        nodes: list[torch.Tensor | None] = [x, None, None, None]
        for j in (1, 2, 3):
            total = None
            for (i, jj), name, op in zip(EDGE_PAIRS, EDGES, live):
                if jj != j or op == "none":
                    continue
                y = self.edges[name].forward_op(nodes[i], op)
                total = y if total is None else total + y
            nodes[j] = total
        out = nodes[3]
        return torch.zeros_like(x) if out is None else out

    def forward_mixed(self, x: torch.Tensor, mix: Mixture) -> torch.Tensor:
        """Every edge as a weighted sum of its ops (or its sampled op); nodes sum their edges."""
        nodes = [x]
        for j in (1, 2, 3):
            total = None
            for e, ((i, jj), name) in enumerate(zip(EDGE_PAIRS, EDGES)):
                if jj != j:
                    continue
                idx = None if mix.index is None else mix.index[e]
                y = self.edges[name].forward_mixed(nodes[i], mix.weights[e], idx)
                total = y if total is None else total + y
            nodes.append(total)
        return nodes[3]


class CellSupernet(nn.Module):
    """Stem, stages of supercells with reductions between them, BN-ReLU, global pool, linear
    head: the module names of :class:`workbench.nn.cell.CellNet`, cells replaced.

    Args:
        macro: The skeleton (``stages``, ``cells_per_stage``, ``width``).
        in_channels: Input channels.
        dims: 1 (signals) or 2 (images).
        n_classes: Output logits.
    """

    def __init__(self, macro: Mapping[str, int], in_channels: int, dims: int, n_classes: int) -> None:
        super().__init__()
        c = macro["width"]
        self.macro = dict(macro)
        self.stem = nn.Sequential(conv(dims, in_channels, c, 3), norm(dims, c))
        layers: list[nn.Module] = []
        for stage in range(macro["stages"]):
            if stage > 0:
                layers.append(ReductionBlock(dims, c, 2 * c))
                c *= 2
            layers.extend(SuperCell(dims, c) for _ in range(macro["cells_per_stage"]))
        self.body = nn.ModuleList(layers)
        self.last = nn.Sequential(norm(dims, c), nn.ReLU())
        self.pool = global_pool(dims)
        self.head = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor, arch: Sequence[str] | Mixture) -> torch.Tensor:
        """Logits of the path ``arch`` (6 ops) or of the op mixture ``arch``."""
        x = self.stem(x)
        for layer in self.body:
            if isinstance(layer, SuperCell):
                x = layer.forward_mixed(x, arch) if isinstance(arch, Mixture) else layer.forward_path(x, arch)
            else:
                x = layer(x)
        return self.head(self.pool(self.last(x)))


class PathNet(nn.Module):
    """A supernet bound to one architecture (``model(x)`` runs ``supernet(x, arch)``), for code
    that calls a plain module (accuracy, latency)."""

    def __init__(self, supernet: CellSupernet, arch: Sequence[str] | Mixture) -> None:
        super().__init__()
        self.supernet = supernet
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet(x, self.arch)


def has_supernet(space_name: str) -> bool:
    """True when the space (versioned name) has a supernet."""
    return space_name in SUPERNET_SPACES


def build_supernet(macro: Mapping[str, Any] | None, input_shape: Sequence[int], n_classes: int) -> CellSupernet:
    """The supernet of ``cell-v1`` networks with skeleton ``macro`` for inputs ``input_shape``.

    Raises:
        UserError: A bad input shape, class count or macro.
    """
    dims = spatial_dims(input_shape)
    if not isinstance(n_classes, numbers.Integral) or isinstance(n_classes, bool) or n_classes < 1:
        raise UserError(f"n_classes must be a positive integer; got {n_classes!r}")
    try:
        checked = read_cell_macro(None if macro is None else dict(macro))
    except UserError as exc:
        raise UserError(f"supernet skeleton: {exc}") from None
    return CellSupernet(checked, int(input_shape[0]), dims, int(n_classes))


def supernet_name(name: str, edge: str, op: str) -> str:
    """The supernet's name of a stand-alone cell network tensor ``name`` on ``edge`` with ``op``
    (``body.1.edges.1<-0.1.weight`` -> ``body.1.edges.1<-0.ops.conv3x3.1.weight``)."""
    m = re.match(r"^(body\.\d+\.edges\.)([^.]+)\.(.+)$", name)
    if m is None or m.group(2) != edge:
        return name
    return f"{m.group(1)}{edge}.ops.{op}.{m.group(3)}"


def subnet_state(state: Mapping[str, Any], ops: Sequence[str]) -> dict[str, Any]:
    """The state dict of the stand-alone network of cell ``ops`` (any macro) taken from a
    supernet state dict: every shared tensor as it is, each live edge's tensors of its op
    renamed (``...edges.<edge>.ops.<op>.<rest>`` -> ``...edges.<edge>.<rest>``), the other ops
    left out. Loads with ``strict=True`` into :func:`workbench.nn.cell.build_cell`'s network."""
    live = dict(zip(EDGES, live_ops(cell_ops(list(ops)))))
    out: dict[str, Any] = {}
    for key, value in state.items():
        m = _EDGE_KEY.match(key)
        if m is None:
            out[key] = value
            continue
        prefix, edge, op, rest = m.groups()
        if live.get(edge) == op:
            out[f"{prefix}{edge}.{rest}"] = value
    return out


def subnet_names(supernet: nn.Module, ops: Sequence[str]) -> list[str]:
    """The supernet parameter names a path ``ops`` uses."""
    live = dict(zip(EDGES, live_ops(cell_ops(list(ops)))))
    out = []
    for key, _ in supernet.named_parameters():
        m = _EDGE_KEY.match(key)
        if m is None or live.get(m.group(2)) == m.group(3):
            out.append(key)
    return out


def path_param_count(supernet: nn.Module, ops: Sequence[str]) -> int:
    """Trainable parameters of the stand-alone network of cell ``ops`` (counted in the supernet)."""
    keep = set(subnet_names(supernet, ops))
    return sum(p.numel() for k, p in supernet.named_parameters() if k in keep)
