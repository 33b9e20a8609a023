"""Weight transfers of the ``chain-v1`` morphisms (networks from :func:`workbench.nn.chain.build_chain`).

A chain network keeps, per genotype layer, where its module is (``ChainNet.slots``): a conv
block ``Sequential(conv, BatchNorm, act)``, a separable block ``Sequential(depthwise,
pointwise, BatchNorm, act)``, a pooling module, or the ``nn.Linear`` of a dense layer in
``classifier`` (followed by its activation); ``classifier[-1]`` is the head.
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
    identity_linear,
    pad_kernel,
    replication,
    set_tensor,
    split_inputs,
    zero_sum_noise,
)
from workbench.space.edits import MorphismStep
from workbench.space.morphs import ChainDeepenEdit, ChainEnlargeKernelEdit, ChainWidenEdit

Slot = tuple[str, int]


def _slots(net: nn.Module) -> tuple[Slot | None, ...]:
    slots = getattr(net, "slots", None)
    if not slots or not hasattr(net, "features") or not hasattr(net, "classifier"):
        raise MorphismError(f"expected a chain network (ChainNet with slots), got {type(net).__name__}")
    return slots


def _module(net: nn.Module, slot: Slot) -> nn.Module:
    kind, j = slot
    return getattr(net, kind)[j]


def _kind(net: nn.Module, i: int) -> str:
    """``conv``, ``sepconv``, ``pool``, ``dense`` or ``none`` (a skipped pooling layer)."""
    slot = _slots(net)[i]
    if slot is None:
        return "none"
    if slot[0] == "classifier":
        return "dense"
    m = _module(net, slot)
    if isinstance(m, nn.Sequential):
        return "sepconv" if len(m) == 4 else "conv"
    return "pool"


def _copy_layers(parent: nn.Module, child: nn.Module, mapping: dict[int, int], skip: set[int], head: bool) -> None:
    """Copy the modules of parent layers ``mapping`` (parent index -> child index), minus ``skip``."""
    ps, cs = _slots(parent), _slots(child)
    for pi, ci in mapping.items():
        if pi in skip:
            continue
        if (ps[pi] is None) != (cs[ci] is None):
            raise MorphismError(f"layer {pi}: pooling present in one network only")
        if ps[pi] is not None:
            copy_module(_module(parent, ps[pi]), _module(child, cs[ci]))
    if head:
        copy_module(parent.classifier[-1], child.classifier[-1])


def _same_layers(parent: nn.Module, child: nn.Module) -> dict[int, int]:
    n = len(_slots(parent))
    if len(_slots(child)) != n:
        raise MorphismError(f"child has {len(_slots(child))} layers, expected {n}")
    return {i: i for i in range(n)}


class ChainDeepen(ChainDeepenEdit, Morphism):
    """Insert an identity layer (Dirac kernel, identity BatchNorm; identity ``nn.Linear``) + ReLU.

    Preserves the function because the inserted layer's input is non-negative (the sites
    guarantee it), so ReLU is the identity there. BatchNorm is the identity in eval mode only:
    in training mode it normalises by batch statistics from the first step of fine-tuning.
    """

    def transfer(self, parent: nn.Module, child: nn.Module, step: MorphismStep) -> None:
        (p,) = step.site
        n = len(_slots(parent))
        if len(_slots(child)) != n + 1:
            raise MorphismError(f"deepen: child has {len(_slots(child))} layers, expected {n + 1}")
        _copy_layers(parent, child, {i: i if i < p else i + 1 for i in range(n)}, set(), head=True)
        new = _module(child, _slots(child)[p])
        kind = step.param("layer")
        if kind == "dense":
            identity_linear(new)
        elif kind == "conv":
            identity_conv(new[0])
            identity_bn(new[1])
        elif kind == "sepconv":
            identity_conv(new[0])
            identity_conv(new[1])
            identity_bn(new[2])
        else:
            raise MorphismError(f"deepen: unknown layer kind {kind!r}")


class ChainWiden(ChainWidenEdit, Morphism):
    """Net2WiderNet: new unit ``j`` copies unit ``j mod w`` (weights and BatchNorm), and the next
    weighted layer (convolution, separable convolution, dense or head, through the flatten)
    divides each copy's outgoing weights by its number of copies. With ``noise`` the copies'
    outgoing weights get zero-sum noise (per original unit), which keeps the function.
    """

    def transfer(self, parent: nn.Module, child: nn.Module, step: MorphismStep) -> None:
        (i,) = step.site
        new_w, noise = int(step.param("width")), float(step.param("noise", 0.0))
        mapping = _same_layers(parent, child)
        kind = _kind(parent, i)
        pm, cm = _module(parent, _slots(parent)[i]), _module(child, _slots(child)[i])
        if kind == "conv":
            old_w = pm[0].out_channels
            g, counts = replication(old_w, new_w)
            set_tensor(cm[0].weight, pm[0].weight.index_select(0, g))
            bn_replicated(pm[1], cm[1], g)
        elif kind == "sepconv":
            old_w = pm[1].out_channels
            g, counts = replication(old_w, new_w)
            copy_module(pm[0], cm[0])
            set_tensor(cm[1].weight, pm[1].weight.index_select(0, g))
            bn_replicated(pm[2], cm[2], g)
        elif kind == "dense":
            old_w = pm.out_features
            g, counts = replication(old_w, new_w)
            set_tensor(cm.weight, pm.weight.index_select(0, g))
            set_tensor(cm.bias, pm.bias.index_select(0, g))
        else:
            raise MorphismError(f"widen: layer {i} is a {kind} layer, not conv / sepconv / dense")

        j = next((k for k in range(i + 1, len(mapping)) if _kind(parent, k) in ("conv", "sepconv", "dense")), None)
        nxt = "head" if j is None else _kind(parent, j)
        skip = {i} if j is None else {i, j}

        def noisy(w: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
            return w + zero_sum_noise(w, groups, noise, step) if noise > 0 else w

        if kind != "dense" and nxt in ("dense", "head"):
            # through the flatten: input column c * S + s of the first dense layer / head
            p_lin = parent.classifier[-1] if j is None else _module(parent, _slots(parent)[j])
            c_lin = child.classifier[-1] if j is None else _module(child, _slots(child)[j])
            grid = p_lin.in_features // old_w
            if p_lin.in_features != old_w * grid or c_lin.in_features != new_w * grid:
                raise MorphismError(
                    f"widen: layer {i} changes the flattened layout ({p_lin.in_features} -> {c_lin.in_features} "
                    "features): the network pools to a smaller grid when wider"
                )
            cols = (g[:, None] * grid + torch.arange(grid)[None, :]).reshape(-1)
            set_tensor(c_lin.weight, noisy(split_inputs(p_lin.weight, cols, counts[g].repeat_interleave(grid)), cols))
            set_tensor(c_lin.bias, p_lin.bias)
        elif nxt in ("dense", "head"):
            p_lin = parent.classifier[-1] if j is None else _module(parent, _slots(parent)[j])
            c_lin = child.classifier[-1] if j is None else _module(child, _slots(child)[j])
            set_tensor(c_lin.weight, noisy(split_inputs(p_lin.weight, g, counts[g]), g))
            set_tensor(c_lin.bias, p_lin.bias)
        elif nxt == "conv":
            pc, cc = _module(parent, _slots(parent)[j]), _module(child, _slots(child)[j])
            set_tensor(cc[0].weight, noisy(split_inputs(pc[0].weight, g, counts[g]), g))
            copy_module(pc[1], cc[1])
        else:  # sepconv: the depthwise part copies channels, the pointwise part splits them
            pc, cc = _module(parent, _slots(parent)[j]), _module(child, _slots(child)[j])
            set_tensor(cc[0].weight, pc[0].weight.index_select(0, g))
            set_tensor(cc[1].weight, noisy(split_inputs(pc[1].weight, g, counts[g]), g))
            copy_module(pc[2], cc[2])
        _copy_layers(parent, child, mapping, skip, head=j is not None)


class ChainEnlargeKernel(ChainEnlargeKernelEdit, Morphism):
    """Zero-pad the (depthwise) kernel of a convolution; the padding grows with it ('same')."""

    def transfer(self, parent: nn.Module, child: nn.Module, step: MorphismStep) -> None:
        (i,) = step.site
        kernel = int(step.param("kernel"))
        mapping = _same_layers(parent, child)
        kind = _kind(parent, i)
        if kind not in ("conv", "sepconv"):
            raise MorphismError(f"enlarge_kernel: layer {i} is a {kind} layer, not a convolution")
        pm, cm = _module(parent, _slots(parent)[i]), _module(child, _slots(child)[i])
        set_tensor(cm[0].weight, pad_kernel(pm[0].weight, kernel))
        for a, b in zip(list(pm)[1:], list(cm)[1:]):
            copy_module(a, b)
        _copy_layers(parent, child, mapping, {i}, head=True)
