"""A synthetic, fidelity-aware evaluator: learning curves without training (tests, benchmarks).

Every genotype gets a hidden final accuracy ``q`` and a learning speed ``alpha`` from its key;
its validation curve after ``t`` epochs is the power law ``q - (q - 0.1) * t**-alpha`` plus a
little deterministic noise. Lower fidelities lower the curve (less data, lower resolution,
thinner networks learn less) and cost proportionally less simulated time, and curves of
different speeds cross, so a cheap rung ranks architectures imperfectly, as real training does.
A run that continues from ``start_epoch`` reports only the epochs after it. Instant and
deterministic, so schedulers and stop rules can be tested and benchmarked on many trials.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np

from workbench.evaluate.base import EpochCallback, EvalResult, StopTraining
from workbench.evaluate.fidelity import Fidelity
from workbench.space.genotype import Genotype


def _unit(key: str, salt: str) -> float:
    """A number in ``[0, 1)`` from a key (stable across processes and platforms)."""
    digest = hashlib.sha256(f"{salt}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class SyntheticEvaluator:
    """Evaluator protocol with fidelities and early stopping, over simulated learning curves.

    Args:
        full_epochs: Epochs of a full training (``Fidelity.epochs`` None means these).
        objective: Name of the objective metric.
        noise: Standard deviation of the per-epoch noise.
        seconds_per_epoch: Simulated seconds of one full-fidelity epoch.
        salt: Changes every genotype's hidden quality (another "task").
    """

    trainable = True

    def __init__(
        self,
        full_epochs: int = 27,
        objective: str = "val_accuracy",
        noise: float = 0.004,
        seconds_per_epoch: float = 1.0,
        salt: str = "synthetic",
    ) -> None:
        self.full_epochs = int(full_epochs)
        self.objective = objective
        self.noise = float(noise)
        self.seconds_per_epoch = float(seconds_per_epoch)
        self.salt = salt
        #: Trainer-like settings the search loop reads (the epochs of a full training).
        self.config = SimpleNamespace(epochs=self.full_epochs, max_seconds=None)

    def quality(self, genotype: Genotype) -> float:
        """The hidden final accuracy of ``genotype`` at full fidelity (without noise)."""
        return 0.55 + 0.4 * _unit(genotype.key, self.salt + "q")

    def speed(self, genotype: Genotype) -> float:
        """The power-law exponent of its curve (larger learns faster)."""
        return 0.4 + 1.2 * _unit(genotype.key, self.salt + "a")

    def value(self, genotype: Genotype, epoch: int, fidelity: Fidelity | None = None, seed: int = 0) -> float:
        """Validation accuracy after ``epoch`` (1-based) epochs at ``fidelity``."""
        f = fidelity or Fidelity()
        q = (
            self.quality(genotype)
            - 0.08 * (1 - f.data_fraction)
            - 0.06 * (1 - f.resolution)
            - 0.05 * max(0.0, 1 - f.width_mult)
        )
        a = self.speed(genotype)
        clean = q - (q - 0.1) * float(epoch) ** (-a)
        rng = np.random.default_rng([int(_unit(genotype.key, "n") * 2**31), int(epoch), int(seed) % 2**31])
        return float(min(1.0, max(0.0, clean + self.noise * rng.standard_normal())))

    def curve(
        self, genotype: Genotype, epochs: int | None = None, fidelity: Fidelity | None = None, seed: int = 0
    ) -> list[float]:
        """The whole validation curve, epochs ``1..epochs``."""
        n = int(epochs or self.full_epochs)
        return [self.value(genotype, t, fidelity, seed) for t in range(1, n + 1)]

    def evaluate(
        self,
        genotype: Genotype,
        *,
        seed: int = 0,
        init_state: Mapping[str, Any] | None = None,
        on_epoch: EpochCallback | None = None,
        fidelity: Fidelity | None = None,
    ) -> EvalResult:
        """Report the simulated curve epoch by epoch (``on_epoch`` may raise :class:`StopTraining`)."""
        f = fidelity or Fidelity()
        epochs = int(f.epochs or self.full_epochs)
        first = int(f.start_epoch)
        curve: list[dict[str, float]] = []
        stopped = None
        for t in range(first + 1, epochs + 1):
            point = {"val_accuracy": self.value(genotype, t, f, seed), "train_loss": 1.0 / t}
            curve.append(point)
            if on_epoch is not None:
                try:
                    on_epoch(t - 1, point)
                except StopTraining as stop:
                    stopped = stop
                    break
        last = curve[-1]["val_accuracy"] if curve else self.value(genotype, max(1, first), f, seed)
        trained = len(curve)
        cost = f.data_fraction * f.resolution * f.width_mult**2
        metrics = {
            "val_accuracy": last,
            "test_accuracy": max(0.0, last - 0.01),
            "train_seconds": trained * self.seconds_per_epoch * cost,
            "epochs": float(first + trained),
            "params": float(round(1e5 * f.width_mult**2 * (1 + _unit(genotype.key, "p")))),
        }
        if self.objective not in metrics:
            metrics[self.objective] = last
        return EvalResult(
            metrics=metrics, curve=curve, state_dict=None, notes={"evaluator": "synthetic"}, stopped=stopped
        )

    def __repr__(self) -> str:
        return f"SyntheticEvaluator(full_epochs={self.full_epochs}, salt={self.salt!r})"


def hidden_rank_quality(evaluator: SyntheticEvaluator, genotypes: list[Genotype]) -> np.ndarray:
    """The hidden final qualities of ``genotypes`` (for checking what a search found)."""
    return np.asarray([evaluator.quality(g) for g in genotypes], dtype=np.float64)


__all__ = ["SyntheticEvaluator", "hidden_rank_quality"]
