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


@dataclass(frozen=True)
class EvaluatorTraits:
    """What the search needs to know of an evaluator, read in one place.

    Attributes:
        input_shape: The task's example shape (trained tasks), None for tabular lookups.
        n_classes: The task's number of classes, None for tabular lookups.
        epochs: Epochs of a full training (the trainer's settings), None when it has none.
        fidelity: Whether ``evaluate`` takes a ``fidelity`` (:func:`supports_fidelity`).
    """

    input_shape: tuple[int, ...] | None = None
    n_classes: int | None = None
    epochs: int | None = None
    fidelity: bool = False

    @property
    def trained(self) -> bool:
        """True when the evaluator trains networks on data with a known shape."""
        return self.input_shape is not None and self.n_classes is not None


def traits_of(evaluator: Any) -> EvaluatorTraits:
    """The :class:`EvaluatorTraits` of ``evaluator``: its optional ``splits`` (the task's data,
    with ``input_shape`` and ``n_classes``) and ``config`` (trainer settings, with ``epochs``)
    attributes and whether it takes a fidelity. Evaluators are duck-typed (the protocol above),
    so this is the one place that looks for the optional parts."""
    splits = getattr(evaluator, "splits", None)
    epochs = getattr(getattr(evaluator, "config", None), "epochs", None)
    return EvaluatorTraits(
        input_shape=None if splits is None else tuple(int(x) for x in splits.input_shape),
        n_classes=None if splits is None else int(splits.n_classes),
        epochs=int(epochs) if epochs else None,
        fidelity=supports_fidelity(evaluator),
    )


def training_config(evaluator: Any, genotype: Genotype | None = None) -> Any:
    """The trainer settings ``evaluator`` trains ``genotype`` with (its optional
    ``config_for(genotype)``: a joint genotype carries its own; else its ``config``), None for
    evaluators that do not train. A genotype the evaluator cannot read gives its ``config``."""
    config_for = getattr(evaluator, "config_for", None)
    if genotype is not None and callable(config_for):
        try:
            cfg = config_for(genotype)
        except Exception:  # noqa: BLE001 - an unusable genotype fails later with its own reason
            cfg = None
        if cfg is not None:
            return cfg
    return getattr(evaluator, "config", None)


def training_epochs(evaluator: Any, genotype: Genotype | None = None) -> int | None:
    """Epochs ``evaluator`` trains ``genotype`` for (:func:`training_config`), None when it does
    not train."""
    epochs = getattr(training_config(evaluator, genotype), "epochs", None)
    return int(epochs) if epochs else None
