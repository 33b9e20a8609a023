"""A supernet started from another task's supernet: every tensor whose name and shape fit is
copied, the stem (input channels and dimensionality are the task's) and the head (its classes)
stay as initialised. Used by :class:`~workbench.oneshot.train.SupernetTrainer` (``init``) and
by ``benchmarks/oneshot.py warm``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

#: Module prefixes never copied from a source supernet: they belong to the task.
FRESH_PREFIXES: tuple[str, ...] = ("stem.", "head.")


@dataclass(frozen=True)
class WarmReport:
    """What a warm start copied.

    Attributes:
        copied: Names of the tensors taken from the source.
        fresh: Names left as initialised (stem, head, or no tensor of that name and shape).
    """

    copied: tuple[str, ...]
    fresh: tuple[str, ...]

    @property
    def fraction(self) -> float:
        """Share of the tensors copied (by count)."""
        total = len(self.copied) + len(self.fresh)
        return len(self.copied) / total if total else 0.0


def fitting(shapes: Mapping[str, tuple[int, ...]], source: Mapping[str, object]) -> int:
    """How many tensors :func:`warm_load` would copy from ``source`` into a supernet whose state
    dict has ``shapes`` (name -> shape), without building or changing anything."""
    tensors = {k: v for k, v in source.items() if isinstance(v, torch.Tensor)}
    if any(k in tensors and tensors[k].dim() != len(shape) for k, shape in shapes.items() if len(shape) >= 3):
        return 0
    return sum(
        1
        for name, shape in shapes.items()
        if not name.startswith(FRESH_PREFIXES) and name in tensors and tuple(tensors[name].shape) == tuple(shape)
    )


def warm_load(net: nn.Module, source: Mapping[str, torch.Tensor]) -> WarmReport:
    """Copy into ``net`` every tensor of ``source`` (a supernet state dict) whose name and shape
    match, except the stem and head (:data:`FRESH_PREFIXES`). A source of the other
    dimensionality (signals vs images) gives nothing.

    Args:
        net: The supernet to start (modified in place).
        source: Another supernet's ``state_dict()`` (e.g. its checkpoint's ``supernet``).
    """
    copied: list[str] = []
    fresh: list[str] = []
    state = net.state_dict()
    if any(
        isinstance(source.get(name), torch.Tensor) and source[name].dim() != tensor.dim()
        for name, tensor in state.items()
        if tensor.dim() >= 3
    ):  # 1-D vs 2-D convolutions: only normalisation vectors would fit by shape; copy nothing
        return WarmReport((), tuple(state))
    with torch.no_grad():
        for name, tensor in state.items():
            value = source.get(name)
            fits = isinstance(value, torch.Tensor) and tuple(value.shape) == tuple(tensor.shape)
            if fits and not name.startswith(FRESH_PREFIXES):
                tensor.copy_(value.to(device=tensor.device, dtype=tensor.dtype))
                copied.append(name)
            else:
                fresh.append(name)
    return WarmReport(tuple(copied), tuple(fresh))
