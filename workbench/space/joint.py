"""The joint space ``joint-v1``: an architecture of any trainable space plus training hyperparameters.

Genotype layout (spec of a ``joint-v1`` genotype)::

    {
      "arch": {"space": "dag-v1", "spec": {...}},          # the inner genotype, whole
      "hp": {"lr": 0.00312, "weight_decay": 1.5e-05, "batch_size": 64, "epochs": 10}
    }

The inner genotype carries its own space name, so :meth:`JointSpace.canonical` (a classmethod)
and :meth:`JointSpace.architecture` need no settings. ``lr`` and ``weight_decay`` are continuous
on a log scale and stored rounded to 3 significant digits; ``batch_size`` and ``epochs`` are
discrete choices. The trainer reads them with :meth:`JointSpace.hyperparameters`; the network
builder (``workbench.nn.build``) builds :meth:`JointSpace.architecture`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from workbench.errors import InvalidGenotype, UserError
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype

#: Continuous hyperparameters (log scale) and discrete ones, in encoding order.
CONTINUOUS: tuple[str, ...] = ("lr", "weight_decay")
DISCRETE: tuple[str, ...] = ("batch_size", "epochs")
HYPERPARAMETERS: tuple[str, ...] = CONTINUOUS + DISCRETE
#: Significant digits kept for continuous hyperparameters (in specs and keys).
SIGNIFICANT = 3
#: Mutation step: standard deviation in log space as a fraction of the log range.
STEP = 0.1


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def round_sig(x: float, digits: int = SIGNIFICANT) -> float:
    """``x`` rounded to ``digits`` significant digits."""
    return float(f"{float(x):.{digits}g}")


def _read(g: Genotype) -> tuple[Genotype, dict[str, Any]]:
    if not isinstance(g, Genotype):
        raise InvalidGenotype(f"expected a Genotype, got {type(g).__name__}")
    if g.space != JointSpace.name:
        raise InvalidGenotype(f"genotype belongs to space {g.space!r}, expected {JointSpace.name!r}")
    spec = g.value
    if not isinstance(spec, dict) or set(spec) != {"arch", "hp"}:
        got = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
        raise InvalidGenotype(f"joint spec must have keys ['arch', 'hp']; got {got}")
    arch = spec["arch"]
    if not isinstance(arch, dict) or set(arch) != {"space", "spec"} or not isinstance(arch["space"], str):
        got = sorted(arch) if isinstance(arch, dict) else type(arch).__name__
        raise InvalidGenotype(f"joint 'arch' must be {{'space': name, 'spec': ...}}; got {got}")
    if arch["space"].startswith("joint-"):
        raise InvalidGenotype("joint 'arch' must not itself be a joint genotype")
    hp = spec["hp"]
    if not isinstance(hp, dict) or set(hp) != set(HYPERPARAMETERS):
        got = sorted(hp) if isinstance(hp, dict) else type(hp).__name__
        raise InvalidGenotype(f"joint 'hp' must have keys {sorted(HYPERPARAMETERS)}; got {got}")
    for name in CONTINUOUS:
        v = hp[name]
        if not _is_number(v) or not math.isfinite(v) or v <= 0:
            raise InvalidGenotype(f"joint hp {name!r} must be a positive finite number; got {v!r}")
    for name in DISCRETE:
        v = hp[name]
        if not _is_int(v) or v < 1:
            raise InvalidGenotype(f"joint hp {name!r} must be a positive integer; got {v!r}")
    return Genotype.of(arch["space"], arch["spec"]), hp


class JointSpace(SearchSpace):
    """Architectures of a trainable space together with training hyperparameters (``joint-v1``).

    Args:
        base: The inner space, as ``make_space`` arguments: ``{"kind": "chain", **settings}``.
        lr: ``(low, high)`` of the learning rate, sampled log-uniformly.
        weight_decay: ``(low, high)`` of the weight decay, sampled log-uniformly.
        batch_size: The batch sizes to choose from.
        epochs: The training epochs to choose from.

    A range with ``low == high`` or a single choice fixes that hyperparameter.

    Raises:
        UserError: On bad settings, an unknown inner kind, or a non-trainable inner space.
    """

    name: ClassVar[str] = "joint-v1"
    kind: ClassVar[str] = "joint"
    encodings: ClassVar[tuple[str, ...]] = ("onehot", "path")

    def __init__(
        self,
        base: Mapping[str, Any],
        lr: Sequence[float] = (1e-4, 1e-1),
        weight_decay: Sequence[float] = (1e-6, 1e-2),
        batch_size: Sequence[int] = (32, 64, 128, 256),
        epochs: Sequence[int] = (5, 10, 20),
    ) -> None:
        from workbench.space.registry import make_space

        if not isinstance(base, Mapping) or not isinstance(base.get("kind"), str):
            raise UserError(f"joint base must be a table with a 'kind' (e.g. {{kind = 'chain'}}); got {base!r}")
        if base["kind"] == self.kind or str(base["kind"]).startswith("joint-"):
            raise UserError("joint base must be an architecture space, not another joint space")
        self.base = dict(base)
        self.inner = make_space(**self.base)
        if not self.inner.trainable:
            raise UserError(f"joint base must be a trainable space; {self.inner.name!r} is a tabular benchmark")
        self.encodings = tuple(self.inner.encodings)  # type: ignore[misc]
        self.ranges: dict[str, tuple[float, float]] = {}
        for label, value in (("lr", lr), ("weight_decay", weight_decay)):
            ok = isinstance(value, Sequence) and len(value) == 2 and all(_is_number(v) for v in value)
            if not ok or not 0 < value[0] <= value[1] or not math.isfinite(value[1]):
                raise UserError(f"joint {label} must be [low, high] with 0 < low <= high; got {value!r}")
            self.ranges[label] = (float(value[0]), float(value[1]))
        self.choices: dict[str, tuple[int, ...]] = {}
        for label, value in (("batch_size", batch_size), ("epochs", epochs)):
            ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0
            if not ok or not all(_is_int(v) and v >= 1 for v in value) or len(set(value)) != len(value):
                raise UserError(f"joint {label} must be a list of distinct positive integers; got {value!r}")
            self.choices[label] = tuple(sorted(int(v) for v in value))

    def settings(self) -> dict[str, Any]:
        return {
            "base": dict(self.base),
            "lr": list(self.ranges["lr"]),
            "weight_decay": list(self.ranges["weight_decay"]),
            "batch_size": list(self.choices["batch_size"]),
            "epochs": list(self.choices["epochs"]),
        }

    # -- reading genotypes -------------------------------------------------------------------

    @classmethod
    def architecture(cls, genotype: Genotype) -> Genotype:
        """The inner (architecture) genotype of a joint genotype."""
        return _read(genotype)[0]

    @classmethod
    def hyperparameters(cls, genotype: Genotype) -> dict[str, Any]:
        """``{"lr": float, "weight_decay": float, "batch_size": int, "epochs": int}``."""
        hp = _read(genotype)[1]
        return {
            "lr": float(hp["lr"]),
            "weight_decay": float(hp["weight_decay"]),
            "batch_size": int(hp["batch_size"]),
            "epochs": int(hp["epochs"]),
        }

    def make(self, arch: Genotype, hp: Mapping[str, Any]) -> Genotype:
        """A validated joint genotype from an inner genotype and hyperparameters (rounded)."""
        if not isinstance(arch, Genotype):
            raise InvalidGenotype(f"joint arch must be a Genotype; got {type(arch).__name__}")
        hp = dict(hp)
        for name in CONTINUOUS:
            if _is_number(hp.get(name)) and hp[name] > 0:
                hp[name] = self._clip(name, round_sig(hp[name]))
        g = self._genotype(arch, hp)
        self.validate(g)
        return g

    def _genotype(self, arch: Genotype, hp: Mapping[str, Any]) -> Genotype:
        return Genotype.of(self.name, {"arch": {"space": arch.space, "spec": arch.value}, "hp": dict(hp)})

    def validate(self, g: Genotype) -> None:
        self.check_space(g)
        arch, hp = _read(g)
        if arch.space != self.inner.name:
            raise InvalidGenotype(f"joint architecture belongs to space {arch.space!r}, expected {self.inner.name!r}")
        self.inner.validate(arch)
        for name, (lo, hi) in self.ranges.items():
            if not lo <= hp[name] <= hi:
                raise InvalidGenotype(f"joint hp {name!r} must be in [{lo:g}, {hi:g}]; got {hp[name]!r}")
        for name, values in self.choices.items():
            if hp[name] not in values:
                raise InvalidGenotype(f"joint hp {name!r} must be one of {list(values)}; got {hp[name]!r}")

    @classmethod
    def canonical(cls, g: Genotype) -> str:
        """Inner space name and canonical form, plus the hyperparameters (continuous ones rounded)."""
        from workbench.space.registry import canonical_form

        arch, hp = _read(g)
        rounded = {n: round_sig(hp[n]) for n in CONTINUOUS} | {n: int(hp[n]) for n in DISCRETE}
        return f"{arch.space}|{canonical_form(arch)}|{json.dumps(rounded, sort_keys=True)}"

    @classmethod
    def describe(cls, g: Genotype) -> str:
        """The architecture as its own space describes it, then the hyperparameters:
        ``conv3x16 > dense64 | lr 0.00312 wd 1.5e-05 bs 64 ep 10``."""
        from workbench.space.registry import space_class

        arch, hp = _read(g)
        return (
            f"{space_class(arch.space).describe(arch)} | lr {hp['lr']:g} wd {hp['weight_decay']:g} "
            f"bs {hp['batch_size']} ep {hp['epochs']}"
        )

    # -- sampling and mutation ---------------------------------------------------------------

    def _clip(self, name: str, value: float) -> float:
        lo, hi = self.ranges[name]
        return min(max(value, lo), hi)

    def _log_sample(self, name: str, rng: np.random.Generator) -> float:
        lo, hi = self.ranges[name]
        return self._clip(name, round_sig(math.exp(rng.uniform(math.log(lo), math.log(hi)))))

    def sample(self, rng: np.random.Generator) -> Genotype:
        arch = self.inner.sample(rng)
        hp: dict[str, Any] = {name: self._log_sample(name, rng) for name in CONTINUOUS}
        for name in DISCRETE:
            values = self.choices[name]
            hp[name] = values[int(rng.integers(len(values)))]
        return self._genotype(arch, hp)

    def _mutable(self) -> list[str]:
        parts = ["arch"]
        parts += [n for n in CONTINUOUS if self.ranges[n][0] < self.ranges[n][1]]
        parts += [n for n in DISCRETE if len(self.choices[n]) > 1]
        return parts

    def mutate(self, g: Genotype, rng: np.random.Generator) -> Genotype:
        """One edit: the architecture (the inner space's mutation) or one hyperparameter.

        A continuous hyperparameter takes a Gaussian step in log space (standard deviation a
        tenth of its log range), clipped to its range and rounded; a discrete one moves to a
        neighbouring choice.
        """
        self.validate(g)
        arch, hp = _read(g)
        parts = self._mutable()
        while True:
            part = parts[int(rng.integers(len(parts)))]
            if part == "arch":
                return self._genotype(self.inner.mutate(arch, rng), hp)
            new = dict(hp)
            if part in DISCRETE:
                values = self.choices[part]
                t = values.index(hp[part])
                step = int(rng.choice([-1, 1])) if 0 < t < len(values) - 1 else (1 if t == 0 else -1)
                new[part] = values[t + step]
                return self._genotype(arch, new)
            lo, hi = self.ranges[part]
            sigma = STEP * (math.log(hi) - math.log(lo))
            for _ in range(16):
                value = self._clip(part, round_sig(math.exp(math.log(hp[part]) + sigma * rng.normal())))
                if round_sig(value) != round_sig(hp[part]):
                    new[part] = value
                    return self._genotype(arch, new)
            # stuck at a bound (or a range narrower than the rounding): try another part

    # -- encodings ---------------------------------------------------------------------------

    def encode(self, gs: Sequence[Genotype], encoding: str = "onehot") -> np.ndarray:
        """The inner encoding of the architectures, then 4 columns in [0, 1]: ``lr`` and
        ``weight_decay`` as positions in their log range, ``batch_size`` and ``epochs`` as the
        index of the choice over (number of choices - 1). A fixed hyperparameter encodes as 0.
        """
        if encoding not in self.encodings:
            raise UserError(f"encoding must be one of {list(self.encodings)}; got {encoding!r}")
        for g in gs:
            self.validate(g)
        read = [_read(g) for g in gs]
        inner = self.inner.encode([a for a, _ in read], encoding)
        extra = np.zeros((len(gs), len(HYPERPARAMETERS)), dtype=np.float64)
        for row, (_, hp) in enumerate(read):
            for col, name in enumerate(CONTINUOUS):
                lo, hi = self.ranges[name]
                if hi > lo:
                    extra[row, col] = (math.log(hp[name]) - math.log(lo)) / (math.log(hi) - math.log(lo))
            for col, name in enumerate(DISCRETE, start=len(CONTINUOUS)):
                values = self.choices[name]
                if len(values) > 1:
                    extra[row, col] = values.index(hp[name]) / (len(values) - 1)
        return np.concatenate([np.asarray(inner, dtype=np.float64), np.clip(extra, 0.0, 1.0)], axis=1)
