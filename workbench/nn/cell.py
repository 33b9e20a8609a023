"""Networks of the cell space ``cell-v1`` (NAS-Bench-201 macro skeleton).

stem (3-wide convolution to ``width`` + BatchNorm); ``stages`` stages of ``cells_per_stage``
cells, with a residual reduction block (stride 2, channels doubled) between stages;
BatchNorm + ReLU, global average pooling, a linear head. The skeleton comes from the
genotype's ``macro`` (defaults ``stages=3, cells_per_stage=1, width=16``), which
:class:`workbench.space.cell.CellSpace` fills in from its settings.

Inside a cell only live edges are built (:func:`workbench.space.cell.live_ops`): ``none``
edges and edges off every input -> output path compute nothing the output sees.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

from workbench.errors import UserError
from workbench.nn.dag import conv, global_pool, norm, pool, spatial_dims
from workbench.space.cell import EDGE_PAIRS, EDGES, live_ops, read_cell
from workbench.space.genotype import Genotype


def cell_op(op: str, dims: int, channels: int) -> nn.Module:
    """The module of a ``cell-v1`` edge op (never ``none``): ReLU-Conv-BN, pooling or identity."""
    if op in ("conv1x1", "conv3x3"):
        k = 1 if op == "conv1x1" else 3
        return nn.Sequential(nn.ReLU(), conv(dims, channels, channels, k), norm(dims, channels))
    if op == "avgpool3x3":
        return pool(dims, "avg")
    if op == "skip":
        return nn.Identity()
    raise UserError(f"cell op {op!r} has no module")  # pragma: no cover - read_cell checked it


class Cell(nn.Module):
    """Nodes 0..3; node ``j`` sums its live incoming edges; the output is node 3."""

    def __init__(self, ops: Sequence[str], dims: int, channels: int) -> None:
        super().__init__()
        live = live_ops(ops)
        self.edges = nn.ModuleDict({name: cell_op(op, dims, channels) for name, op in zip(EDGES, live) if op != "none"})
        self.inputs = {
            j: tuple((i, f"{j}<-{i}") for i, jj in EDGE_PAIRS if jj == j and f"{j}<-{i}" in self.edges)
            for j in (1, 2, 3)
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x, None, None, None]
        for j in (1, 2, 3):
            total = None
            for i, name in self.inputs[j]:
                y = self.edges[name](nodes[i])
                total = y if total is None else total + y
            nodes[j] = total
        out = nodes[3]
        return torch.zeros_like(x) if out is None else out


class ReductionBlock(nn.Module):
    """NAS-Bench-201 residual block: halves the resolution and changes the channels."""

    def __init__(self, dims: int, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            conv(dims, c_in, c_out, 3, stride=2),
            norm(dims, c_out),
            nn.ReLU(),
            conv(dims, c_out, c_out, 3),
            norm(dims, c_out),
        )
        avg = nn.AvgPool1d if dims == 1 else nn.AvgPool2d
        # ceil_mode so odd sizes match the strided conv's output size
        self.shortcut = nn.Sequential(avg(2, stride=2, ceil_mode=True), conv(dims, c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class CellNet(nn.Module):
    """Stem, stages of cells with reductions between them, BN-ReLU, global pool, linear head."""

    def __init__(self, ops: Sequence[str], macro: dict[str, int], in_channels: int, dims: int, n_classes: int) -> None:
        super().__init__()
        c = macro["width"]
        self.stem = nn.Sequential(conv(dims, in_channels, c, 3), norm(dims, c))
        layers: list[nn.Module] = []
        for stage in range(macro["stages"]):
            if stage > 0:
                layers.append(ReductionBlock(dims, c, 2 * c))
                c *= 2
            layers.extend(Cell(ops, dims, c) for _ in range(macro["cells_per_stage"]))
        self.body = nn.Sequential(*layers)
        self.last = nn.Sequential(norm(dims, c), nn.ReLU())
        self.pool = global_pool(dims)
        self.head = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.last(self.body(self.stem(x)))))


def build_cell(genotype: Genotype, input_shape: tuple[int, ...], n_classes: int, width_mult: float = 1.0) -> CellNet:
    """Build the network of a ``cell-v1`` genotype.

    Args:
        genotype: A ``cell-v1`` genotype; its ``macro`` gives the skeleton.
        input_shape: One example's shape, `C x L` or `C x H x W`.
        n_classes: Number of output logits.
        width_mult: Multiplier of the stem width (rounded, at least 1; low fidelities).

    Returns:
        A module mapping `batch x *input_shape` to `batch x n_classes`.
    """
    from workbench.nn.build import scaled_width

    dims = spatial_dims(input_shape)
    if not isinstance(n_classes, numbers.Integral) or n_classes < 1:
        raise UserError(f"n_classes must be a positive integer; got {n_classes!r}")
    ops, macro = read_cell(genotype)
    if width_mult != 1.0:
        macro = {**macro, "width": scaled_width(macro["width"], width_mult)}
    return CellNet(ops, macro, int(input_shape[0]), dims, int(n_classes))
