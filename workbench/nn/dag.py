"""Networks of the multi-branch DAG space ``dag-v1`` (and the 1-D / 2-D layer helpers it shares).

The network is: stem (3-wide convolution to ``width`` channels + BatchNorm + ReLU), the DAG
nodes (only those that feed the output are built), global average pooling, a linear head.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

from workbench.errors import UserError
from workbench.space.dag import DagNode, live_nodes, read_dag
from workbench.space.genotype import Genotype


def spatial_dims(input_shape: Sequence[int]) -> int:
    """1 for `C x L` inputs, 2 for `C x H x W` inputs; anything else raises :class:`UserError`."""
    shape = tuple(input_shape)
    if len(shape) not in (2, 3) or not all(isinstance(s, numbers.Integral) and s >= 1 for s in shape):
        raise UserError(f"input shape must be C x L (1-D) or C x H x W (2-D) positive ints; got {shape}")
    return len(shape) - 1


def conv(dims: int, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Module:
    """A bias-free 'same'-padded convolution (`Conv1d` or `Conv2d`)."""
    cls = nn.Conv1d if dims == 1 else nn.Conv2d
    return cls(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)


def norm(dims: int, channels: int) -> nn.Module:
    """`BatchNorm1d` or `BatchNorm2d`."""
    return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(channels)


def pool(dims: int, kind: str, kernel: int = 3, stride: int = 1) -> nn.Module:
    """A 'same'-padded max or average pooling (padding is not counted in averages)."""
    if kind == "max":
        return (nn.MaxPool1d if dims == 1 else nn.MaxPool2d)(kernel, stride=stride, padding=kernel // 2)
    cls = nn.AvgPool1d if dims == 1 else nn.AvgPool2d
    return cls(kernel, stride=stride, padding=kernel // 2, count_include_pad=False)


def global_pool(dims: int) -> nn.Module:
    """Global average pooling to `batch x C`."""
    pooled = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
    return nn.Sequential(pooled, nn.Flatten())


def dag_op(op: str, dims: int, width: int) -> nn.Module:
    """The module of a ``dag-v1`` op; every op maps `width` channels to `width`, same size."""
    if op in ("conv3", "conv5"):
        k = int(op[-1])
        return nn.Sequential(conv(dims, width, width, k), norm(dims, width), nn.ReLU())
    if op in ("sepconv3", "sepconv5"):
        k = int(op[-1])
        return nn.Sequential(
            conv(dims, width, width, k, groups=width),
            conv(dims, width, width, 1),
            norm(dims, width),
            nn.ReLU(),
        )
    if op == "maxpool3":
        return pool(dims, "max")
    if op == "avgpool3":
        return pool(dims, "avg")
    if op == "identity":
        return nn.Identity()
    raise UserError(f"unknown dag op {op!r}")  # pragma: no cover - read_dag checked it


class DagBlock(nn.Module):
    """One node: merge its inputs (sum, or concat + 1x1 conv + BatchNorm), then its op."""

    def __init__(self, node: DagNode, dims: int, width: int) -> None:
        super().__init__()
        self.inputs = node.inputs
        self.concat = node.merge == "concat" and len(node.inputs) > 1
        self.project = (
            nn.Sequential(conv(dims, width * len(node.inputs), width, 1), norm(dims, width))
            if self.concat
            else nn.Identity()
        )
        self.op = dag_op(node.op, dims, width)

    def forward(self, values: list[torch.Tensor | None]) -> torch.Tensor:
        xs = [values[i] for i in self.inputs]
        if self.concat:
            x = self.project(torch.cat(xs, dim=1))
        else:
            x = xs[0]
            for y in xs[1:]:
                x = x + y
        return self.op(x)


class DagNet(nn.Module):
    """Stem, the live DAG nodes in index order, global average pooling, linear head."""

    def __init__(self, nodes: Sequence[DagNode], in_channels: int, dims: int, width: int, n_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv(dims, in_channels, width, 3), norm(dims, width), nn.ReLU())
        live = live_nodes(nodes)
        self.order = tuple(sorted(live))
        self.n_nodes = len(nodes)
        self.blocks = nn.ModuleDict({str(k): DagBlock(nodes[k - 1], dims, width) for k in self.order})
        self.pool = global_pool(dims)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: list[torch.Tensor | None] = [self.stem(x)] + [None] * self.n_nodes
        for k in self.order:
            values[k] = self.blocks[str(k)](values)
        return self.head(self.pool(values[self.n_nodes]))


def build_dag(genotype: Genotype, input_shape: tuple[int, ...], n_classes: int, width_mult: float = 1.0) -> DagNet:
    """Build the network of a ``dag-v1`` genotype.

    Args:
        genotype: A ``dag-v1`` genotype; its ``macro`` gives the width (default 16).
        input_shape: One example's shape, `C x L` or `C x H x W`.
        n_classes: Number of output logits.
        width_mult: Multiplier of the width (rounded, at least 1; low fidelities).

    Returns:
        A module mapping `batch x *input_shape` to `batch x n_classes`.
    """
    from workbench.nn.build import scaled_width

    dims = spatial_dims(input_shape)
    if not isinstance(n_classes, numbers.Integral) or n_classes < 1:
        raise UserError(f"n_classes must be a positive integer; got {n_classes!r}")
    nodes, macro = read_dag(genotype)
    return DagNet(nodes, int(input_shape[0]), dims, scaled_width(macro["width"], width_mult), int(n_classes))
