"""The Evaluator protocol: turn a genotype into measured metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from workbench.space.genotype import Genotype

EpochCallback = Callable[[int, Mapping[str, float]], None]


@dataclass
class EvalResult:
    """What one evaluation measured.

    Attributes:
        metrics: Final metrics; always contains the evaluator's ``objective`` (e.g.
            ``val_accuracy``) and, where known, ``test_accuracy``, ``params``, ``latency``,
            ``train_seconds`` (real or simulated cost).
        curve: Per-epoch metrics, index = epoch.
        state_dict: Trained weights, for children to inherit (None for tabular lookups).
        notes: Free-text remarks recorded as tags (e.g. "weights missing: trained from scratch").
    """

    metrics: dict[str, float]
    curve: list[dict[str, float]] = field(default_factory=list)
    state_dict: dict[str, Any] | None = None
    notes: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Evaluator(Protocol):
    """Measures genotypes of one task.

    Contract:
        * ``evaluate`` returns an :class:`EvalResult` whose ``metrics[objective]`` is finite,
          or raises :class:`workbench.errors.TrialFailed` with the reason.
        * ``on_epoch(epoch, metrics)`` is called after every epoch (learning curves).
        * ``init_state`` (optional) is a state dict to start from (weight inheritance).
        * Deterministic for a given ``seed`` on CPU.
    """

    objective: str

    def evaluate(
        self,
        genotype: Genotype,
        *,
        seed: int = 0,
        init_state: Mapping[str, Any] | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> EvalResult: ...
