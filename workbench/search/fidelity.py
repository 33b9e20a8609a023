"""Fidelity bookkeeping of a search: which fidelity each trial runs at and what it records,
the multi-fidelity scheduler and the learning-curve stop rule, set up from the task."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from metastore import Metastore, TrialRecord
from metastore.schema import TAG_FIDELITY, TAG_STOPPED_EARLY
from workbench.errors import StoreError, UserError
from workbench.evaluate.base import Evaluator, training_epochs, traits_of
from workbench.evaluate.fidelity import Fidelity, FidelitySpace, stopped_record
from workbench.search.records import fidelity_of, stopped_value
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.task import Task

#: Options of ``--stop-early lc``.
STOP_OPTIONS = frozenset({"threshold", "min_epochs", "every", "quantile"})


def fidelity_setup(
    task: Task,
    space: SearchSpace,
    evaluator: Evaluator,
    budget: float,
    scheduler: str | None,
    scheduler_options: Mapping[str, Any] | None = None,
    stop_early: str | None = None,
    stop_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The fidelity keywords of :class:`workbench.search.Search`: the task's fidelity space (a
    trained task with a ``[fidelity]`` table, or any trained task under a scheduler), the
    scheduler and the stop rule.

    Raises:
        UserError: An unknown scheduler or option, a tabular task under a scheduler, a malformed
            ``[fidelity]`` table.
    """
    traits = traits_of(evaluator)
    fs = None
    if (scheduler or task.fidelity) and space.trainable and traits.fidelity:
        from workbench.evaluate.fidelity import fidelity_space

        dims = len(traits.input_shape) - 1 if traits.input_shape is not None else 1
        fs = fidelity_space(task.fidelity, traits.epochs or 1, dims, where=task.name)
    sched = None
    if scheduler:
        if fs is None:
            raise UserError(
                f"task {task.name!r} ({task.kind}) cannot be evaluated at lower fidelities; "
                "--scheduler needs a trained task"
            )
        from workbench.evaluate.schedulers import make_scheduler

        sched = make_scheduler(scheduler, fs, float(budget), **dict(scheduler_options or {}))
    opts = dict(stop_options or {})
    if set(opts) - STOP_OPTIONS:
        raise UserError(
            f"unknown --stop-early options {sorted(set(opts) - STOP_OPTIONS)}; expected some of {sorted(STOP_OPTIONS)}"
        )
    return {"scheduler": sched, "fidelity_space": fs, "stop_early": stop_early, "stop_options": opts}


class FidelityBook:
    """Fidelities, the scheduler and early stopping of one search (what the loop asks and keeps).

    Args:
        task: The task.
        space: Its space.
        evaluator: Its evaluator.
        store: The store (learning curves of finished trials are read back from it).
        scheduler: A :class:`workbench.evaluate.schedulers.Scheduler`, or None.
        fidelity_space: The task's fidelities (default: the scheduler's).
        stop_early: ``"lc"`` or None.
        stop_options: Settings of the stop rule.

    Raises:
        UserError: Fidelities or a stop rule on a task that cannot use them.
    """

    def __init__(
        self,
        task: Task,
        space: SearchSpace,
        evaluator: Evaluator,
        store: Metastore,
        scheduler: Any = None,
        fidelity_space: FidelitySpace | None = None,
        stop_early: str | None = None,
        stop_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.task, self.space, self.evaluator, self.store = task, space, evaluator, store
        self.scheduler = scheduler
        self.stop_early = stop_early or None
        self.stop_options = dict(stop_options or {})
        self.space_of_fidelities = (
            fidelity_space if fidelity_space is not None else (scheduler.space if scheduler is not None else None)
        )
        self.traits = traits_of(evaluator)
        self.curves: dict[str, tuple[float, ...]] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self.planned_epochs: dict[str, int] = {}
        if (scheduler is not None or self.space_of_fidelities is not None) and not self.traits.fidelity:
            raise UserError(
                f"task {task.name!r} ({task.kind}) cannot be evaluated at lower fidelities; "
                "--scheduler needs a trained task"
            )
        if self.stop_early is not None:
            if self.stop_early != "lc":
                raise UserError(f"unknown --stop-early rule {self.stop_early!r}; expected 'lc'")
            if not space.trainable or task.objective != "val_accuracy":
                raise UserError(
                    "--stop-early lc needs a trained task whose objective is val_accuracy "
                    f"(task {task.name!r}: {task.kind}, objective {task.objective})"
                )

    def spec(self) -> dict[str, Any]:
        """What the search's spec records of its fidelities (resume rebuilds them from it)."""
        spec: dict[str, Any] = {}
        if self.scheduler is not None:
            spec["scheduler"] = {"name": self.scheduler.name, "options": dict(self.scheduler.options or {})}
        if self.space_of_fidelities is not None:
            spec["fidelity_space"] = self.space_of_fidelities.to_dict()
        if self.stop_early is not None:
            spec["stop_early"] = {"rule": self.stop_early, "options": self.stop_options}
        return spec

    @property
    def tracks_cost(self) -> bool:
        """True when trials may be measured below full fidelity (a scheduler or early stopping)."""
        return self.scheduler is not None or self.stop_early is not None

    # -- a new trial ---------------------------------------------------------------------------
    def fidelity_for(self, decision: Any) -> tuple[Fidelity | None, dict[str, Any]]:
        """The fidelity of the next trial and its ``nasw.fidelity`` record."""
        fs = self.space_of_fidelities
        if decision is not None:
            return decision.fidelity, decision.record(fs)
        if fs is not None:
            return fs.high, fs.high.record(full=True, cost=1.0, level=1.0)
        return None, Fidelity().record(full=True, cost=1.0, level=1.0)

    def job_fidelity(self, trial_id: str, fid: Fidelity | None, record: Mapping[str, Any], scheduled: bool) -> str:
        """Remember a started trial's record; the fidelity its job trains at (JSON, ``""``: the
        evaluator's own settings, so a joint genotype's epochs stay its own)."""
        self.records[trial_id] = dict(record)
        if not scheduled and fid is not None and self._is_default_training(fid):
            fid = None
        return json.dumps(record, sort_keys=True) if fid is not None and self.traits.fidelity else ""

    def _is_default_training(self, fid: Fidelity) -> bool:
        """True when ``fid`` trains exactly as the evaluator does without a fidelity."""
        return (fid.data_fraction, fid.resolution, fid.width_mult, fid.start_epoch) == (1.0, 1.0, 1.0, 0) and (
            fid.epochs is None or fid.epochs == self.traits.epochs
        )

    # -- a finished trial ----------------------------------------------------------------------
    def live_tags(
        self, trial_id: str, metrics: Mapping[str, float], curve: tuple[float, ...] | list, stopped: str
    ) -> dict[str, str]:
        """The tags of a just-finished trial as the store now holds them (fidelity, stop)."""
        rec = dict(self.records.get(trial_id, {}))
        tags: dict[str, str] = {}
        if stopped:
            done = int(metrics.get("epochs", len(curve)) or 1)
            rec = stopped_record(rec, done, self.planned_epochs.get(trial_id), stopped)
            tags[TAG_STOPPED_EARLY] = stopped
        if rec:
            tags[TAG_FIDELITY] = json.dumps(rec, sort_keys=True)
        return tags

    @staticmethod
    def cost_of(record: TrialRecord) -> float:
        """Training compute of a trial in full-training equivalents (its recorded ``cost``;
        a trial stopped early counts the epochs it trained; 1 when nothing was recorded)."""
        if record.state != "finished" and not record.metrics:
            return 0.0
        return float(fidelity_of(record).get("cost", 1.0))

    # -- learning-curve stop rule --------------------------------------------------------------
    def _target_epochs(self, g: Genotype | None, fid: Fidelity | None) -> int | None:
        """Epochs a trial trains to (the fidelity's, else the trainer's for this genotype)."""
        if fid is not None and fid.epochs is not None:
            return int(fid.epochs)
        return training_epochs(self.evaluator, g)

    def stop_rule_json(
        self, g: Genotype, fid: Fidelity | None, record: Mapping[str, Any], trial_id: str, done: list[TrialRecord]
    ) -> str:
        """The stop rule of a new trial (``""``: none): the incumbent is the best finished trial
        of ``done`` measured at the same fidelity that was not stopped (its curve corrects the
        extrapolation); the population is every such trial's final value, the predicted one for
        trials stopped early."""
        if self.stop_early != "lc" or (fid is not None and fid.start_epoch):
            return ""
        from workbench.evaluate.curves import LCStopRule

        target = self._target_epochs(g, fid)
        if not target or target < 3:
            return ""
        keys = ("epochs", "data_fraction", "resolution", "width_mult")
        level = {k: record.get(k) for k in keys}
        objective = self.task.objective

        def same_level(r: TrialRecord) -> bool:
            rec = fidelity_of(r)
            if any(rec.get(k) != level[k] for k in keys[1:]):
                return False
            if rec.get("stopped"):  # compared by the epochs it was meant to train
                return int(rec.get("planned_epochs") or 0) == target
            return rec.get("epochs") == level["epochs"]

        same = [r for r in done if r.state == "finished" and objective in r.metrics and same_level(r)]
        peers = [
            r
            for r in same
            if not fidelity_of(r).get("stopped")
            and (r.metrics.get("epochs") is None or int(r.metrics["epochs"]) == target)
        ]
        incumbent = max(peers, key=lambda r: r.metrics[objective], default=None)
        self.planned_epochs[trial_id] = target
        if incumbent is None:
            return ""
        population = [
            stopped_value(r.metrics, r.metrics[objective]) if fidelity_of(r).get("stopped") else r.metrics[objective]
            for r in same
        ]
        rule = LCStopRule(
            target_epoch=target,
            incumbent=float(incumbent.metrics[objective]),
            incumbent_curve=self.curve_of(incumbent.trial_id),
            population=population,
            **self.stop_options,
        )
        return rule.to_json()

    def curve_of(self, trial_id: str) -> tuple[float, ...]:
        """The objective per epoch of a finished trial (kept from its outcome, else read back)."""
        if trial_id not in self.curves:
            try:
                points = self.store.metric_history(trial_id, self.task.objective)
            except (NotImplementedError, StoreError, UserError):
                points = []
            by_step: dict[int, float] = {}
            for step, value in points:
                by_step.setdefault(int(step), float(value))  # the final metric repeats the last step
            self.curves[trial_id] = tuple(by_step[k] for k in sorted(by_step))
        return self.curves[trial_id]
