"""What a genotype's network costs to run: multiply-adds of one forward pass."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from workbench.nn.build import build_model
from workbench.space.genotype import Genotype


def multiply_adds(genotype: Genotype, input_shape: Sequence[int], n_classes: int = 10) -> int:
    """Multiply-adds of the convolutions and dense layers for one example of ``input_shape``.

    The training cost of an epoch is close to proportional to it on a CPU. The network is built
    (global random state untouched) and run once on zeros with hooks counting each layer.
    """
    with torch.random.fork_rng(devices=[]):
        model = build_model(genotype, tuple(int(s) for s in input_shape), int(n_classes))
    total = 0

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.modules.conv._ConvNd):
            total += output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [
        m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *[int(s) for s in input_shape]))
    finally:
        for h in handles:
            h.remove()
    return int(total)
