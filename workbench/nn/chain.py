"""Networks of the chain-structured space."""

from __future__ import annotations

import math

import torch
from torch import nn

from workbench.space.genotype import Genotype

MAX_FLAT_FEATURES = 4096


def activation(name: str) -> nn.Module:
    """The activation module for a genotype's ``act`` name."""
    return {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[name]()


def conv_block(op: str, dims: int, c_in: int, c_out: int, kernel: int, act: str) -> nn.Sequential:
    """Convolution (plain or depthwise-separable) + batch norm + activation, 'same' padding."""
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    norm = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    pad = kernel // 2
    if op == "conv":
        layers: list[nn.Module] = [conv(c_in, c_out, kernel, padding=pad, bias=False)]
    else:
        layers = [
            conv(c_in, c_in, kernel, padding=pad, groups=c_in, bias=False),
            conv(c_in, c_out, 1, bias=False),
        ]
    return nn.Sequential(*layers, norm(c_out), activation(act))


class ChainNet(nn.Module):
    """Feature layers, flatten (pooled down to at most ``MAX_FLAT_FEATURES``), dense layers, head.

    Attributes:
        slots: Per genotype layer, where its module is: ``("features", i)``, ``("classifier", i)``
            (the ``nn.Linear`` of a dense layer) or None (a pooling layer skipped at size 1).
            Network morphisms use it to find a layer's weights.
    """

    def __init__(
        self,
        features: nn.Sequential,
        flat: nn.Module,
        classifier: nn.Sequential,
        slots: tuple[tuple[str, int] | None, ...] = (),
    ) -> None:
        super().__init__()
        self.features = features
        self.flat = flat
        self.classifier = classifier
        self.slots = tuple(slots)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flat(self.features(x)))


def build_chain(genotype: Genotype, input_shape: tuple[int, ...], n_classes: int, width_mult: float = 1.0) -> ChainNet:
    """Build the network of a ``chain-v1`` genotype for `C x L` or `C x H x W` inputs.

    ``width_mult`` scales every conv and dense width (rounded, at least 1; low fidelities).
    """
    from workbench.nn.build import scaled_width

    dims = len(input_shape) - 1
    if dims not in (1, 2):
        raise ValueError(f"input shape must be C x L or C x H x W, got {input_shape}")
    channels, size = input_shape[0], list(input_shape[1:])
    features: list[nn.Module] = []
    dense_specs = []
    slots: list[tuple[str, int] | None] = []
    for layer in genotype.value["layers"]:
        op = layer["op"]
        slots.append(("features", len(features)) if op != "dense" else None)
        if op in ("conv", "sepconv"):
            width = scaled_width(layer["width"], width_mult)
            features.append(conv_block(op, dims, channels, width, layer["kernel"], layer["act"]))
            channels = width
        elif op in ("maxpool", "avgpool"):
            if min(size) >= 2:
                pool = {
                    (1, "maxpool"): nn.MaxPool1d,
                    (1, "avgpool"): nn.AvgPool1d,
                    (2, "maxpool"): nn.MaxPool2d,
                    (2, "avgpool"): nn.AvgPool2d,
                }[(dims, op)]
                features.append(pool(2))
                size = [s // 2 for s in size]
            else:
                slots[-1] = None
        else:
            dense_specs.append(layer)
    flat_size = channels * math.prod(size)
    flat: list[nn.Module] = []
    if flat_size > MAX_FLAT_FEATURES:
        # Too large to flatten: average-pool to a small grid first.
        per_axis = max(1, int((MAX_FLAT_FEATURES / channels) ** (1 / dims)))
        target = [min(s, per_axis) for s in size]
        flat.append((nn.AdaptiveAvgPool1d if dims == 1 else nn.AdaptiveAvgPool2d)(tuple(target)))
        flat_size = channels * math.prod(target)
    flat.append(nn.Flatten())
    head: list[nn.Module] = []
    width = flat_size
    dense_at = [i for i, layer in enumerate(genotype.value["layers"]) if layer["op"] == "dense"]
    for i, layer in zip(dense_at, dense_specs):
        slots[i] = ("classifier", len(head))
        out = scaled_width(layer["width"], width_mult)
        head += [nn.Linear(width, out), activation(layer["act"])]
        width = out
    head.append(nn.Linear(width, n_classes))
    return ChainNet(nn.Sequential(*features), nn.Sequential(*flat), nn.Sequential(*head), tuple(slots))
