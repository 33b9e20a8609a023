"""Shrink and perturb inherited weights before fine-tuning (Ash & Adams, NeurIPS 2020).

A network that starts from converged weights (its parent's, through a network morphism, or the
same layers trained on another task) fine-tunes quickly but tends to stay in its parent's basin:
it ends near the parent's accuracy, below what the child architecture reaches from scratch (the
"warm-start gap"). Shrinking the inherited weights towards zero and adding a little of a fresh
initialisation closes most of that gap while keeping the head start::

    w  <-  shrink * w_inherited  +  perturb * w_fresh

for the weights and biases of convolutions and dense layers. Normalisation layers (their scales,
shifts and running statistics) are kept: after a BatchNorm the shrunk convolution computes almost
the same function, with a larger effective learning rate. ``shrink = 1, perturb = 0`` leaves the
inherited (function-preserving) weights untouched.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

MIXED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@torch.no_grad()
def shrink_perturb(model: nn.Module, fresh: Mapping[str, torch.Tensor], shrink: float, perturb: float) -> int:
    """Mix ``model``'s (inherited) conv and dense weights with the fresh initialisation ``fresh``.

    Args:
        model: The network holding the inherited weights; changed in place.
        fresh: The state dict of the same architecture, freshly initialised (same keys).
        shrink: Factor on the inherited weights.
        perturb: Factor on the fresh weights.

    Returns:
        The number of tensors changed (0 when ``shrink == 1`` and ``perturb == 0``). The task file
        checks the settings (``[training] finetune_shrink`` in (0, 1], ``finetune_perturb >= 0``).
    """
    if is_identity(shrink, perturb):
        return 0
    changed = 0
    for prefix, module in model.named_modules():
        if not isinstance(module, MIXED):
            continue
        for name, param in module.named_parameters(recurse=False):
            key = f"{prefix}.{name}" if prefix else name
            new = fresh[key].to(param.device, param.dtype)
            param.mul_(shrink).add_(new, alpha=perturb)
            changed += 1
    return changed


def is_identity(shrink: float, perturb: float) -> bool:
    """True when the settings leave the inherited weights as they are."""
    return shrink == 1.0 and perturb == 0.0
