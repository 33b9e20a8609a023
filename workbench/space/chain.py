"""Chain-structured space: a sequence of layers, feature layers first, dense layers last."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from workbench.errors import InvalidGenotype
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype

FEATURE_OPS = ("conv", "sepconv", "maxpool", "avgpool")
DENSE_OPS = ("dense",)
OPS = FEATURE_OPS + DENSE_OPS
CONV_OPS = ("conv", "sepconv")
POOL_OPS = ("maxpool", "avgpool")
ACTIVATIONS = ("relu", "gelu", "tanh")
#: Sanity bounds on a space's settings (they may be read back from a shared store).
MAX_LAYERS_LIMIT = 256
MAX_WIDTH = 65536


def _layer_text(layer: Any) -> str:
    """``conv3x16``, ``dense64``, ``maxpool``; an activation other than ReLU follows its layer
    (``conv3x16:gelu``), so two different chains never read the same (a layer that is not an
    object: its text, cut)."""
    if not isinstance(layer, dict):
        return str(layer)[:20]
    op = str(layer.get("op", "?"))
    act = layer.get("act")
    suffix = f":{act}" if act is not None and act != "relu" else ""
    if "kernel" in layer:
        return f"{op}{layer['kernel']}x{layer.get('width')}{suffix}"
    if "width" in layer:
        return f"{op}{layer['width']}{suffix}"
    return op + suffix


class ChainSpace(SearchSpace):
    """A chain of layers (Elsken et al.'s chain-structured space).

    Layers (spec ``{"layers": [...]}``), in order, each one of:

    * ``{"op": "conv", "kernel": k, "width": w, "act": a}``: convolution + batch norm + activation;
    * ``{"op": "sepconv", "kernel": k, "width": w, "act": a}``: depthwise-separable convolution;
    * ``{"op": "maxpool"}`` / ``{"op": "avgpool"}``: halve the resolution (skipped at size 1);
    * ``{"op": "dense", "width": w, "act": a}``: fully connected layer.

    Feature layers (convolutions, pooling) come before dense layers; the network flattens between
    them and ends in a linear classifier. Convolutions are 1-D or 2-D by the task's input.

    Args:
        max_layers: Most layers in a genotype (at least 1).
        kernels: Allowed odd kernel sizes.
        widths: Allowed channel counts of convolutions.
        dense_widths: Allowed unit counts of dense layers.
        activations: Allowed activation names.
        max_dense: Most dense layers.
    """

    name = "chain-v1"

    def __init__(
        self,
        max_layers: int = 6,
        kernels: Sequence[int] = (3, 5, 7),
        widths: Sequence[int] = (16, 32, 64, 128),
        dense_widths: Sequence[int] = (64, 128, 256),
        activations: Sequence[str] = ACTIVATIONS,
        max_dense: int = 2,
    ) -> None:
        if max_layers < 1:
            raise InvalidGenotype(f"max_layers must be >= 1, got {max_layers}")
        if max_layers > MAX_LAYERS_LIMIT:
            raise InvalidGenotype(f"max_layers must be at most {MAX_LAYERS_LIMIT}, got {max_layers}")
        huge = [w for w in [*widths, *dense_widths] if not 1 <= int(w) <= MAX_WIDTH]
        if huge:
            raise InvalidGenotype(f"widths must be in 1..{MAX_WIDTH}, got {huge}")
        bad = [k for k in kernels if int(k) % 2 == 0 or int(k) < 1]
        if bad or not kernels:
            raise InvalidGenotype(f"kernels must be positive odd integers, got {list(kernels)}")
        unknown = [a for a in activations if a not in ACTIVATIONS]
        if unknown or not activations:
            raise InvalidGenotype(f"activations must be among {ACTIVATIONS}, got {list(activations)}")
        self.max_layers = int(max_layers)
        self.kernels = tuple(int(k) for k in kernels)
        self.widths = tuple(int(w) for w in widths)
        self.dense_widths = tuple(int(w) for w in dense_widths)
        self.activations = tuple(activations)
        self.max_dense = int(max_dense)

    def settings(self) -> dict[str, Any]:
        return {
            "max_layers": self.max_layers,
            "kernels": list(self.kernels),
            "widths": list(self.widths),
            "dense_widths": list(self.dense_widths),
            "activations": list(self.activations),
            "max_dense": self.max_dense,
        }

    # -- construction -------------------------------------------------------------------
    def make(self, layers: Sequence[dict[str, Any]]) -> Genotype:
        """A validated genotype from a list of layer dicts."""
        g = Genotype.of(self.name, {"layers": [dict(layer) for layer in layers]})
        self.validate(g)
        return g

    def _layer(self, op: str, rng: np.random.Generator) -> dict[str, Any]:
        if op in CONV_OPS:
            return {
                "op": op,
                "kernel": int(rng.choice(self.kernels)),
                "width": int(rng.choice(self.widths)),
                "act": str(rng.choice(self.activations)),
            }
        if op == "dense":
            return {"op": op, "width": int(rng.choice(self.dense_widths)), "act": str(rng.choice(self.activations))}
        return {"op": op}

    def sample(self, rng: np.random.Generator) -> Genotype:
        n = int(rng.integers(1, self.max_layers + 1))
        n_dense = int(rng.integers(0, min(self.max_dense, n - 1) + 1)) if n > 1 else 0
        layers = []
        for _ in range(n - n_dense):
            op = str(rng.choice(CONV_OPS)) if rng.random() < 0.7 else str(rng.choice(POOL_OPS))
            layers.append(self._layer(op, rng))
        layers += [self._layer("dense", rng) for _ in range(n_dense)]
        return Genotype.of(self.name, {"layers": layers})

    def mutate(self, g: Genotype, rng: np.random.Generator) -> Genotype:
        self.validate(g)
        layers = g.value["layers"]
        for _ in range(100):
            child = self._edit([dict(x) for x in layers], rng)
            if child is not None and child != layers:
                out = Genotype.of(self.name, {"layers": child})
                if self.contains(out):
                    return out
        raise InvalidGenotype("could not mutate genotype")  # pragma: no cover - tiny spaces only

    def _edit(self, layers: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]] | None:
        kind = str(rng.choice(["param", "op", "insert", "remove"]))
        i = int(rng.integers(len(layers)))
        layer = layers[i]
        n_feat = sum(1 for x in layers if x["op"] in FEATURE_OPS)
        if kind == "param":
            keys = [k for k in ("kernel", "width", "act") if k in layer]
            if not keys:
                return None
            key = str(rng.choice(keys))
            choices = {
                "kernel": self.kernels,
                "width": self.dense_widths if layer["op"] == "dense" else self.widths,
                "act": self.activations,
            }[key]
            options = [c for c in choices if c != layer[key]]
            if not options:
                return None
            value = options[int(rng.integers(len(options)))]
            layer[key] = value.item() if hasattr(value, "item") else value
            return layers
        if kind == "op":
            group = DENSE_OPS if layer["op"] in DENSE_OPS else FEATURE_OPS
            options = [o for o in group if o != layer["op"]]
            if not options:
                return None
            new = self._layer(str(rng.choice(options)), rng)
            for key in ("kernel", "width", "act"):
                if key in new and key in layer and layer["op"] != "dense":
                    new[key] = layer[key]
            layers[i] = new
            return layers
        if kind == "insert":
            if len(layers) >= self.max_layers:
                return None
            n_dense = len(layers) - n_feat
            if n_dense < self.max_dense and rng.random() < 0.3:
                pos = int(rng.integers(n_feat, len(layers) + 1))
                layers.insert(pos, self._layer("dense", rng))
            else:
                pos = int(rng.integers(0, n_feat + 1))
                op = str(rng.choice(CONV_OPS)) if rng.random() < 0.7 else str(rng.choice(POOL_OPS))
                layers.insert(pos, self._layer(op, rng))
            return layers
        if len(layers) <= 1:
            return None
        del layers[i]
        return layers

    # -- checks and identity ------------------------------------------------------------
    def validate(self, g: Genotype) -> None:
        self.check_space(g)
        spec = g.value
        if not isinstance(spec, dict) or set(spec) != {"layers"} or not isinstance(spec["layers"], list):
            raise InvalidGenotype('chain genotype spec must be {"layers": [...]}')
        layers = spec["layers"]
        if not 1 <= len(layers) <= self.max_layers:
            raise InvalidGenotype(f"chain genotype needs 1..{self.max_layers} layers, got {len(layers)}")
        seen_dense = False
        n_dense = 0
        for i, layer in enumerate(layers):
            if not isinstance(layer, dict) or layer.get("op") not in OPS:
                op = layer.get("op") if isinstance(layer, dict) else layer
                raise InvalidGenotype(f"layer {i}: op must be one of {OPS}, got {op!r}")
            op = layer["op"]
            expected = (
                {"op", "kernel", "width", "act"}
                if op in CONV_OPS
                else ({"op", "width", "act"} if op == "dense" else {"op"})
            )
            if set(layer) != expected:
                raise InvalidGenotype(f"layer {i} ({op}): expected keys {sorted(expected)}, got {sorted(layer)}")
            if op in CONV_OPS and layer["kernel"] not in self.kernels:
                raise InvalidGenotype(f"layer {i}: kernel must be one of {self.kernels}, got {layer['kernel']!r}")
            if op in CONV_OPS and layer["width"] not in self.widths:
                raise InvalidGenotype(f"layer {i}: width must be one of {self.widths}, got {layer['width']!r}")
            if op == "dense" and layer["width"] not in self.dense_widths:
                raise InvalidGenotype(
                    f"layer {i}: dense width must be one of {self.dense_widths}, got {layer['width']!r}"
                )
            if "act" in layer and layer["act"] not in self.activations:
                raise InvalidGenotype(f"layer {i}: act must be one of {self.activations}, got {layer['act']!r}")
            if op == "dense":
                seen_dense = True
                n_dense += 1
            elif seen_dense:
                raise InvalidGenotype(f"layer {i}: feature layer {op!r} after a dense layer")
        if n_dense > self.max_dense:
            raise InvalidGenotype(f"at most {self.max_dense} dense layers, got {n_dense}")

    @classmethod
    def canonical(cls, g: Genotype) -> str:
        # A chain has no isomorphic relabelling; the canonical JSON is its identity.
        return g.spec

    @classmethod
    def describe(cls, g: Genotype) -> str:
        """The layers in order, each op with its kernel, width and (other than ReLU) activation:
        ``conv3x16 > maxpool > dense64:gelu``."""
        return " > ".join(_layer_text(layer) for layer in g.value["layers"])

    # -- encodings ----------------------------------------------------------------------
    def encode(self, gs: Sequence[Genotype], encoding: str = "onehot") -> np.ndarray:
        if encoding not in self.encodings:
            raise InvalidGenotype(f"unknown encoding {encoding!r}; expected one of {self.encodings}")
        slot = len(OPS) + 1 + len(self.kernels) + 1 + len(self.activations)
        out = np.zeros((len(gs), self.max_layers * slot), dtype=np.float64)
        wmax = np.log2(max(self.widths + self.dense_widths))
        for r, g in enumerate(gs):
            for i, layer in enumerate(g.value["layers"][: self.max_layers]):
                base = i * slot
                out[r, base + OPS.index(layer["op"])] = 1.0
                out[r, base + len(OPS)] = 1.0  # layer present
                if "kernel" in layer:
                    out[r, base + len(OPS) + 1 + self.kernels.index(layer["kernel"])] = 1.0
                if "width" in layer:
                    out[r, base + len(OPS) + 1 + len(self.kernels)] = np.log2(layer["width"]) / wmax
                if "act" in layer:
                    out[r, base + len(OPS) + 2 + len(self.kernels) + self.activations.index(layer["act"])] = 1.0
        return out
