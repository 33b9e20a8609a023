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
        stopped: Set when training was stopped early by the epoch callback
            (:class:`StopTraining`): that exception, whose ``rule``, ``reason`` and ``details``
            are recorded on the run; the metrics are those after the last trained epoch.
    """

    metrics: dict[str, float]
    curve: list[dict[str, float]] = field(default_factory=list)
    state_dict: dict[str, Any] | None = None
    notes: dict[str, str] = field(default_factory=dict)
    stopped: StopTraining | None = None


class StopTraining(Exception):
    """Raised by an epoch callback to end training early (learning-curve extrapolation).

    The evaluator stops after the current epoch and returns its result with ``stopped`` set;
    the trial finishes (not failed) with its last metrics.

    Args:
        rule: Which rule stopped it (``"lc"``).
        reason: One line for the run's tags.
        details: Numbers behind the decision (``predicted``, ``p_better``, ``incumbent``, ...).
    """

    def __init__(self, rule: str, reason: str, details: Mapping[str, float] | None = None) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason
        self.details = dict(details or {})


@runtime_checkable
class Evaluator(Protocol):
    """Measures genotypes of one task.

    Contract:
        * ``evaluate`` returns an :class:`EvalResult` whose ``metrics[objective]`` is finite,
          or raises :class:`workbench.errors.TrialFailed` with the reason.
        * ``on_epoch(epoch, metrics)`` is called after every epoch (learning curves).
        * ``init_state`` (optional) is a state dict to start from (weight inheritance).
        * Deterministic for a given ``seed`` on CPU.
        * Optional, for evaluators that support it (:func:`supports_fidelity`): a keyword
          ``fidelity`` (:class:`workbench.evaluate.fidelity.Fidelity`) evaluates at a lower
          fidelity; callers pass it only to such evaluators. An ``on_epoch`` that raises
          :class:`StopTraining` ends training early with the result's ``stopped`` set.
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


def supports_fidelity(evaluator: Any) -> bool:
    """True when ``evaluator.evaluate`` takes a ``fidelity`` keyword."""
    import inspect

    try:
        return "fidelity" in inspect.signature(evaluator.evaluate).parameters
    except (TypeError, ValueError, AttributeError):
        return False
