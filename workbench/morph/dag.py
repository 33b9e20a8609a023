"""Weight transfers of the ``dag-v1`` morphisms (networks from :func:`workbench.nn.dag.build_dag`).

A DAG network has ``stem`` = ``Sequential(conv, BatchNorm, ReLU)``, ``blocks[str(k)]`` for the
live nodes (``project`` = ``Sequential(1x1 conv, BatchNorm)`` for concat merges, ``op`` =
``Sequential(conv, BatchNorm, ReLU)``, ``Sequential(depthwise, pointwise, BatchNorm, ReLU)``,
or a parameter-free pooling / identity) and a linear ``head`` after global average pooling.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.morph.base import (
    Morphism,
    MorphismError,
    bn_replicated,
    copy_module,
    identity_bn,
    identity_conv,
    pad_kernel,
    replication,
    set_tensor,
    split_inputs,
)
from workbench.space.edits import MorphismStep
from workbench.space.morphs import DagDeepenEdit, DagEnlargeKernelEdit, DagSkipEdit, DagWidenEdit


def _check(net: nn.Module) -> None:
    if not all(hasattr(net, a) for a in ("stem", "blocks", "head", "order", "n_nodes")):
        raise MorphismError(f"expected a DAG network (DagNet), got {type(net).__name__}")


def _copy_common(parent: nn.Module, child: nn.Module, mapping: dict[int, int], skip: set[int]) -> None:
    """Copy stem, head and the blocks of parent nodes ``mapping`` (parent -> child index)."""
    _check(parent)
    _check(child)
    copy_module(parent.stem, child.stem)
    copy_module(parent.head, child.head)
    for pk in parent.order:
        if pk in skip:
            continue
        ck = mapping[pk]
        if str(ck) not in child.blocks:
            raise MorphismError(f"node {pk} (child node {ck}) is live in the parent only")
        copy_module(parent.blocks[str(pk)], child.blocks[str(ck)])


def _identity_op(op: nn.Module) -> None:
    """Make a conv op (``conv, BN, ReLU`` or ``depthwise, pointwise, BN, ReLU``) the identity."""
    if not isinstance(op, nn.Sequential) or len(op) not in (3, 4):
        raise MorphismError(f"expected a convolution op, got {type(op).__name__}")
    for m in op:
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            identity_conv(m)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            identity_bn(m)


class DagDeepen(DagDeepenEdit, Morphism):
    """The inserted node is an identity convolution (Dirac kernel, identity BatchNorm) + ReLU on a
    non-negative input; BatchNorm is the identity in eval mode."""

    def transfer(self, parent: nn.Module, child: nn.Module, step: MorphismStep) -> None:
        (k,) = step.site
        _check(parent)
        if child.n_nodes != parent.n_nodes + 1:
            raise MorphismError(f"deepen: child has {child.n_nodes} nodes, expected {parent.n_nodes + 1}")
        _copy_common(parent, child, {m: m if m <= k else m + 1 for m in parent.order}, set())
        _identity_op(child.blocks[str(k + 1)].op)


class DagSkip(DagSkipEdit, Morphism):
    """Node ``k`` concatenates the new input ``i`` with zero projection weights; a node that summed
    its inputs gets identity blocks (a sum) and an identity BatchNorm (eval mode)."""

    def transfer(self, parent: nn.Module, child: nn.Module, step: MorphismStep) -> None:
        i, k = step.site
        _check(parent)
        if child.n_nodes != parent.n_nodes:
            raise MorphismError(f"skip: child has {child.n_nodes} nodes, expected {parent.n_nodes}")
        _copy_common(parent, child, {m: m for m in parent.order}, {k})
        pb, cb = parent.blocks[str(k)], child.blocks[str(k)]
        copy_module(pb.op, cb.op)
        old, new = list(pb.inputs), list(cb.inputs)
        if sorted((*old, i)) != new or not cb.concat:
            raise MorphismError(f"skip: child node {k} reads {new}, expected {sorted((*old, i))} concatenated")
        conv = cb.project[0]
        width = conv.out_channels
        with torch.no_grad():
            w = torch.zeros_like(conv.weight)
            if pb.concat:
                pw = pb.project[0].weight
                for s, src in enumerate(old):
                    t = new.index(src)
                    w[:, t * width : (t + 1) * width] = pw[:, s * width : (s + 1) * width]
                copy_module(pb.project[1], cb.project[1])
            else:  # a sum: identity blocks for the old inputs
                eye = torch.eye(width, dtype=w.dtype).reshape(width, width, *[1] * (w.dim() - 2))
                for src in old:
                    t = new.index(src)
                    w[:, t * width : (t + 1) * width] = eye
                identity_bn(cb.project[1])
            set_tensor(conv.weight, w)


class DagEnlargeKernel(DagEnlargeKernelEdit, Morphism):
    """Zero-pad node ``k``'s (depthwise) kernel from 3 to 5."""

    def transfer(self, parent: nn.Module, child: nn.Module, step: MorphismStep) -> None:
        (k,) = step.site
        _check(parent)
        _copy_common(parent, child, {m: m for m in parent.order}, {k})
        pb, cb = parent.blocks[str(k)], child.blocks[str(k)]
        copy_module(pb.project, cb.project)
        kernel = cb.op[0].kernel_size[0]
        set_tensor(cb.op[0].weight, pad_kernel(pb.op[0].weight, kernel))
        for a, b in zip(list(pb.op)[1:], list(cb.op)[1:]):
            copy_module(a, b)


class DagWiden(DagWidenEdit, Morphism):
    """Net2WiderNet on every channel of the network: channel ``j`` copies channel ``j mod w``;
    every convolution reading channels divides each copy's weights by its number of copies
    (per concatenated input for projections), depthwise kernels are copied, the head splits."""

    def transfer(self, parent: nn.Module, child: nn.Module, step: MorphismStep) -> None:
        _check(parent)
        _check(child)
        old_w, new_w = parent.head.in_features, child.head.in_features
        if new_w != int(step.param("width")):
            raise MorphismError(f"widen: child width {new_w}, step says {step.param('width')}")
        g, counts = replication(old_w, new_w)
        div = counts[g]

        def conv_rows(src: nn.Module, dst: nn.Module, split: bool) -> None:
            w = src.weight.index_select(0, g)
            if split:
                w = split_inputs(w, g, div)
            set_tensor(dst.weight, w)

        def op(src: nn.Module, dst: nn.Module) -> None:
            if not isinstance(src, nn.Sequential):
                return  # pooling / identity: channel-wise, nothing to copy
            convs = [(a, b) for a, b in zip(src, dst) if isinstance(a, (nn.Conv1d, nn.Conv2d))]
            for a, b in convs:
                conv_rows(a, b, split=a.groups == 1)
            for a, b in zip(src, dst):
                if isinstance(a, nn.modules.batchnorm._BatchNorm):
                    bn_replicated(a, b, g)

        set_tensor(child.stem[0].weight, parent.stem[0].weight.index_select(0, g))
        bn_replicated(parent.stem[1], child.stem[1], g)
        for k in parent.order:
            pb, cb = parent.blocks[str(k)], child.blocks[str(k)]
            if pb.concat:
                m = len(pb.inputs)
                cols = torch.cat([s * old_w + g for s in range(m)])
                w = split_inputs(pb.project[0].weight.index_select(0, g), cols, div.repeat(m))
                set_tensor(cb.project[0].weight, w)
                bn_replicated(pb.project[1], cb.project[1], g)
            op(pb.op, cb.op)
        set_tensor(child.head.weight, split_inputs(parent.head.weight, g, div))
        set_tensor(child.head.bias, parent.head.bias)
