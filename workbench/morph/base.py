"""The Morphism contract and the tensor surgery its weight transfers share."""

from __future__ import annotations

import zlib
from abc import abstractmethod

import torch
from torch import nn
from torch.nn import functional as F

from workbench.errors import NaswError
from workbench.space.edits import MorphismStep
from workbench.space.morphs import GenotypeMorphism


class MorphismError(NaswError):
    """Weights cannot follow a morphism step (wrong modules, a layout the step cannot keep)."""


class Morphism(GenotypeMorphism):
    """A function-preserving network edit: genotype side (``sites``, ``apply``) plus ``transfer``.

    Contract:
        * ``sites(g)`` and ``apply(g, step)`` as :class:`~workbench.space.morphs.GenotypeMorphism`.
        * ``transfer(parent, child, step)``: ``parent`` is the network of a genotype ``g`` and
          ``child`` a freshly built network of ``apply(g, step)`` for the same input shape and
          classes; afterwards ``child(x) == parent(x)`` in eval mode within 1e-5 (float32)
          for every input ``x``. ``parent`` is not modified. Layers that the edit makes
          reachable for the first time keep the child's own initialisation.
        * Raises :class:`MorphismError` when the modules do not fit the step.
    """

    @abstractmethod
    def transfer(self, parent: nn.Module, child: nn.Module, step: MorphismStep) -> None:
        """Write weights into ``child`` so it computes ``parent``'s function."""


# -- tensor surgery ---------------------------------------------------------------------------


def copy_module(src: nn.Module, dst: nn.Module) -> None:
    """Copy every parameter and buffer of ``src`` into ``dst`` (same shapes)."""
    try:
        dst.load_state_dict(src.state_dict())
    except RuntimeError as exc:
        raise MorphismError(f"modules do not match: {str(exc).splitlines()[0]}") from None


@torch.no_grad()
def identity_bn(bn: nn.Module) -> None:
    """Make a BatchNorm the identity in eval mode: mean 0, variance ``1 - eps``, scale 1, shift 0."""
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        raise MorphismError(f"expected a BatchNorm, got {type(bn).__name__}")
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)
    bn.weight.fill_(1.0)
    bn.bias.zero_()
    bn.num_batches_tracked.zero_()


@torch.no_grad()
def identity_conv(conv: nn.Module) -> None:
    """Make a 'same'-padded convolution (full or depthwise) the identity: a centred Dirac kernel."""
    w = conv.weight
    if conv.in_channels // conv.groups != 1 and conv.in_channels != conv.out_channels:
        raise MorphismError(f"an identity convolution needs in == out channels, got {tuple(w.shape)}")
    w.zero_()
    centre = tuple(k // 2 for k in w.shape[2:])
    idx = torch.arange(w.shape[0])
    in_idx = torch.zeros_like(idx) if conv.groups == conv.out_channels and conv.groups > 1 else idx
    w[(idx, in_idx, *[torch.full_like(idx, c) for c in centre])] = 1.0
    if conv.bias is not None:
        conv.bias.zero_()


@torch.no_grad()
def identity_linear(lin: nn.Linear) -> None:
    """Make a square ``nn.Linear`` the identity (or ``[I; 0]`` when it has more outputs)."""
    if lin.out_features < lin.in_features:
        raise MorphismError(f"an identity dense layer needs out >= in, got {lin.in_features} -> {lin.out_features}")
    lin.weight.zero_()
    n = lin.in_features
    lin.weight[torch.arange(n), torch.arange(n)] = 1.0
    lin.bias.zero_()


def pad_kernel(w: torch.Tensor, kernel: int) -> torch.Tensor:
    """Zero-pad the spatial dims of a conv weight `out x in x k (x k)` to ``kernel`` (centred)."""
    old = w.shape[2]
    if kernel < old or (kernel - old) % 2:
        raise MorphismError(f"cannot pad a {old}-wide kernel to {kernel}")
    p = (kernel - old) // 2
    return F.pad(w, [p, p] * (w.dim() - 2))


def replication(old: int, new: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Net2WiderNet unit map: new unit ``j`` copies old unit ``j mod old``; and the copy counts.

    Returns:
        ``(g, counts)``: `new` indices into the old units and `old` replication counts.
    """
    if new < old:
        raise MorphismError(f"cannot widen {old} units to {new}")
    g = torch.arange(new) % old
    return g, torch.bincount(g, minlength=old)


def split_inputs(w: torch.Tensor, cols: torch.Tensor, divisor: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Outgoing weights of replicated units: pick input ``cols`` along ``dim``, divide by copies."""
    out = w.index_select(dim, cols)
    shape = [1] * w.dim()
    shape[dim] = len(cols)
    return out / divisor.to(w.dtype).reshape(shape)


def zero_sum_noise(
    w: torch.Tensor, groups: torch.Tensor, scale: float, step: MorphismStep, dim: int = 1
) -> torch.Tensor:
    """Noise along ``dim`` that sums to zero within each group of replicas (function-preserving).

    ``groups[j]`` names the original input that new input ``j`` replicates; noise is drawn from
    a generator seeded by the step, centred per group, and scaled by ``scale * w.std()``.
    """
    gen = torch.Generator().manual_seed(zlib.crc32(str(step).encode()))
    z = torch.randn(w.shape, generator=gen, dtype=torch.float64)
    moved = z.movedim(dim, 0)
    n_groups = int(groups.max()) + 1
    sums = torch.zeros((n_groups, *moved.shape[1:]), dtype=torch.float64).index_add_(0, groups, moved)
    counts = torch.bincount(groups, minlength=n_groups).to(torch.float64).reshape(-1, *[1] * (moved.dim() - 1))
    moved = moved - (sums / counts).index_select(0, groups)
    std = float(w.detach().double().std()) if w.numel() > 1 else 1.0
    return (moved.movedim(0, dim) * scale * std).to(w.dtype)


def set_tensor(param: torch.Tensor, value: torch.Tensor) -> None:
    """Copy ``value`` into a parameter or buffer of the same shape."""
    if param.shape != value.shape:
        raise MorphismError(f"shape mismatch: module has {tuple(param.shape)}, transfer made {tuple(value.shape)}")
    with torch.no_grad():
        param.copy_(value)


def bn_replicated(src: nn.Module, dst: nn.Module, g: torch.Tensor) -> None:
    """``dst`` BatchNorm = ``src`` BatchNorm with channels ``g`` (replicated)."""
    for name in ("weight", "bias", "running_mean", "running_var"):
        set_tensor(getattr(dst, name), getattr(src, name).index_select(0, g))
    set_tensor(dst.num_batches_tracked, src.num_batches_tracked)
