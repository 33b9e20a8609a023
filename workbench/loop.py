"""One search: ask -> start trial -> inherit -> evaluate -> record -> tell; and resume."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from metastore import Metastore, TrialRecord
from workbench.errors import InvalidGenotype, StoreError, UserError
from workbench.evaluate.base import Evaluator
from workbench.evaluate.fidelity import FIDELITY_TAG
from workbench.evaluate.factory import evaluator_for, meta_features_for, space_for
from workbench.evaluate.trainer import evaluator_seed
from workbench.execute.base import Executor
from workbench.execute.trial import (
    HEARTBEAT_TAG,
    STOPPED_TAG,
    TrialJob,
    TrialOutcome,
    default_inherit,
    execute_trial,
    heartbeat_is_dead,
    morphisms_json,
)
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.strategy.base import Observation, Proposal, Strategy
from workbench.strategy.registry import make_strategy
from workbench.task import Task, parse_task_dict


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a genotype spec into dotted scalar params (``layers.0.op`` -> ``conv``)."""
    out: dict[str, Any] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1] or "value"] = value
    return out


def inherit_weights(
    store: Metastore, job: TrialJob, genotype: Genotype, evaluator: Evaluator | None = None
) -> tuple[Mapping[str, Any] | None, dict[str, str]]:
    """The weights a trial starts from, and notes for its run; never raises for bad weights.

    * No parent: None (train from scratch).
    * A parent and no morphism steps, same task: the parent's weights as they are.
    * Morphism steps (``job.morphisms``): the parent's genotype (from the store) and weights are
      replayed through the steps (:func:`workbench.morph.lineage.inherit_state`), so the child
      starts with its parent's function and is only fine-tuned.
    * A parent trained on another task: only tensors whose shapes fit are kept (the input stem
      and the classifier head are freshly initialised), then the steps are applied.

    Missing or corrupt weights, a parent that is not found, or steps that do not replay give
    ``(None, {"weights": why})``: the trial trains from scratch with the note as a tag
    (``nasw.note.weights``).
    """
    if not job.parent_trial:
        return None, {}
    from workbench.errors import NotFound
    from workbench.space.edits import steps_from_json

    scratch = "; trained from scratch"
    try:
        steps = steps_from_json(job.morphisms)
        parent = store.trial(job.parent_trial)
        here = store.trial(job.trial_id).task
    except (InvalidGenotype, NotFound) as exc:
        return None, {"weights": f"cannot inherit from {job.parent_trial}: {exc}{scratch}"}
    state = default_inherit(store, job, genotype)[0]
    if state is None:
        return None, {"weights": f"parent {job.parent_trial} weights missing or unreadable{scratch}"}
    other_task = parent.task != here
    if not steps and not other_task:
        return state, {"inherited": f"weights of trial {job.parent_trial}"}
    splits = getattr(evaluator, "splits", None)
    if splits is None:
        return None, {"weights": f"the evaluator has no input shape to replay morphisms on{scratch}"}
    from workbench.morph.base import MorphismError
    from workbench.morph.lineage import inherit_state

    try:
        parent_g = Genotype.from_json(parent.genotype_json)
        child_state, notes = inherit_state(
            parent_g, state, steps, genotype, splits.input_shape, splits.n_classes,
            other_task=other_task, seed=job.seed,
        )
    except (MorphismError, InvalidGenotype, RuntimeError, ValueError, TypeError, KeyError) as exc:
        return None, {"weights": f"cannot inherit from {job.parent_trial}: {str(exc).splitlines()[0][:300]}{scratch}"}
    how = f"{len(steps)} morphism step(s)" if steps else "shape-matched tensors"
    origin = f" of task {parent.task}" if other_task else ""
    return child_state, {**notes, "inherited": f"trial {job.parent_trial}{origin} through {how}"}


class Progress:
    """Callbacks the loop makes; the CLI draws a progress bar from them. All are optional."""

    def search_started(self, search_id: str, budget: int, done: int) -> None: ...

    def trial_started(self, number: int, genotype: Genotype) -> None: ...

    def epoch(self, number: int, epoch: int, metrics: Mapping[str, float]) -> None: ...

    def trial_finished(self, number: int, obs: Observation, best: float | None) -> None: ...


@dataclass
class SearchResult:
    """What a finished (or stopped) search produced."""

    search_id: str
    n_trials: int
    n_failed: int
    best_trial: TrialRecord | None
    summary: dict[str, float] = field(default_factory=dict)


def observation_of(record: TrialRecord, objective: str, space: SearchSpace) -> Observation | None:
    """The strategy's view of a recorded trial; None if its genotype does not validate."""
    try:
        g = Genotype.from_json(record.genotype_json)
        space.validate(g)
    except InvalidGenotype:
        return None
    value = record.metrics.get(objective) if record.state == "finished" else None
    if value is not None and not math.isfinite(value):
        value = None
    fidelity = fidelity_of(record)
    if value is not None and fidelity.get("stopped"):
        value = stopped_value(record.metrics, value)
    return Observation(
        genotype=g,
        value=value,
        objectives={k: v for k, v in record.metrics.items()},
        trial_id=record.trial_id,
        fidelity=fidelity,
    )


def fidelity_of(record: TrialRecord) -> dict[str, Any]:
    """The fidelity a recorded trial was measured at (its ``nasw.fidelity`` tag; ``{}`` when it
    has none: recorded before fidelities existed, so at the task's full fidelity)."""
    from workbench.evaluate.fidelity import FIDELITY_TAG, parse_record

    rec = parse_record(record.tags.get(FIDELITY_TAG))
    if record.tags.get(STOPPED_TAG):
        rec = {**rec, "full": False, "stopped": record.tags[STOPPED_TAG]}
    return rec


def stopped_value(metrics: Mapping[str, float], value: float) -> float:
    """What a strategy is told for a trial stopped by learning-curve extrapolation: the final
    value the rule predicted (``lc_predicted_final``) when recorded, else its last value."""
    pred = metrics.get("lc_predicted_final")
    return float(pred) if pred is not None and math.isfinite(pred) else value


def is_full(record: TrialRecord) -> bool:
    """True for a trial measured at its task's full fidelity (and not stopped early)."""
    rec = fidelity_of(record)
    return not rec or bool(rec.get("full", True))


UNUSABLE = "not used on resume: "


def usable_record(record: TrialRecord, space: SearchSpace) -> TrialRecord:
    """A stored trial as a resumed search may use it.

    Whatever a shared store holds is checked before use: a finished trial whose genotype JSON
    is malformed, names another space, or does not validate in ``space`` (absurd widths, unknown
    ops) is never built into a network, never told to the strategy and never the best trial: it
    is kept in the search's count as failed with the reason (the stored run is not changed).
    """
    if record.state != "finished":
        return record
    try:
        space.validate(Genotype.from_json(record.genotype_json))
    except InvalidGenotype as exc:
        reason = f"{UNUSABLE}invalid genotype read back from the store: {str(exc).splitlines()[0] if str(exc) else ''}"
        return replace(record, state="failed", metrics={}, reason=reason[:500])
    return record


class Search:
    """Drives one search against a metastore.

    Args:
        store: Where everything is recorded.
        task: The task.
        strategy: The ask/tell strategy (already built for ``space``).
        evaluator: Measures genotypes.
        space: The task's space.
        budget: Total number of trials (finished + failed) of the search.
        seed: Search seed (strategy and per-trial training seeds derive from it).
        progress: Callbacks for a live display.
        scheduler: A multi-fidelity scheduler (:mod:`workbench.evaluate.schedulers`); then
            ``budget`` counts full-fidelity-equivalent trainings, not trials.
        fidelity_space: The task's fidelities (default: from its ``[fidelity]`` table when it
            has one or a scheduler is used).
        stop_early: ``"lc"``: stop trials whose extrapolated learning curve is unlikely to beat
            the incumbent (:class:`workbench.evaluate.curves.LCStopRule`).
        stop_options: Settings of the stop rule (``threshold``, ``min_epochs``, ``every``).
    """

    def __init__(
        self,
        store: Metastore,
        task: Task,
        strategy: Strategy,
        evaluator: Evaluator,
        space: SearchSpace,
        budget: int,
        seed: int = 0,
        progress: Progress | None = None,
        save_weights: bool = True,
        executor: Executor | None = None,
        *,
        scheduler: Any = None,
        fidelity_space: Any = None,
        stop_early: str | None = None,
        stop_options: Mapping[str, Any] | None = None,
    ) -> None:
        if budget < 1:
            raise UserError(f"budget must be a positive number of trials, got {budget}")
        self.store = store
        self.task = task
        self.strategy = strategy
        self.evaluator = evaluator
        self.space = space
        self.budget = int(budget)
        self.seed = int(seed)
        self.progress = progress or Progress()
        self.save_weights = save_weights and space.trainable
        self.executor = executor
        self.warm = None  # a workbench.transfer.plan.WarmStartPlan for warm-started searches
        self.search_id: str | None = None
        self.records: list[TrialRecord] = []
        self._init_fidelity(scheduler, fidelity_space, stop_early, stop_options)

    def _init_fidelity(self, scheduler: Any, fidelity_space: Any, stop_early: str | None,
                       stop_options: Mapping[str, Any] | None) -> None:
        """Schedulers, fidelities and early stopping (issue 7); checks what the task supports."""
        from workbench.evaluate.base import supports_fidelity

        self.scheduler = scheduler
        self.stop_early = stop_early or None
        self.stop_options = dict(stop_options or {})
        self.fidelity_space = fidelity_space if fidelity_space is not None else getattr(scheduler, "space", None)
        self._fidelity_ok = supports_fidelity(self.evaluator)
        self._curves: dict[str, tuple[float, ...]] = {}
        self._fidelity_records: dict[str, dict[str, Any]] = {}
        self._planned_epochs: dict[str, int] = {}
        if (scheduler is not None or self.fidelity_space is not None) and not self._fidelity_ok:
            raise UserError(f"task {self.task.name!r} ({self.task.kind}) cannot be evaluated at lower fidelities; "
                            "--scheduler needs a trained task")
        if self.stop_early is not None:
            if self.stop_early != "lc":
                raise UserError(f"unknown --stop-early rule {self.stop_early!r}; expected 'lc'")
            if not self.space.trainable or self.task.objective != "val_accuracy":
                raise UserError("--stop-early lc needs a trained task whose objective is val_accuracy "
                                f"(task {self.task.name!r}: {self.task.kind}, objective {self.task.objective})")

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, strategy_options: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None) -> str:
        """Create the parent run."""
        spec = {
            "task": self.task.to_dict(),
            "strategy": self.strategy.name,
            "strategy_options": dict(strategy_options or {}),
            "budget": self.budget,
            "seed": self.seed,
            "space_settings": self.space.settings(),
        }
        if self.scheduler is not None:
            spec["scheduler"] = {"name": self.scheduler.name, "options": dict(getattr(self.scheduler, "options", {}) or {})}
        if self.fidelity_space is not None:
            spec["fidelity_space"] = self.fidelity_space.to_dict()
        if self.stop_early is not None:
            spec["stop_early"] = {"rule": self.stop_early, "options": self.stop_options}
        if self.warm is not None:
            spec["warm_start"] = self.warm.to_spec()
            tags = {**dict(tags or {}), "nasw.warm_start": self.warm.mode,
                    "source_weights": self.warm.weights.to_json()}
        self.search_id = self.store.start_search(
            self.task.name,
            strategy=self.strategy.name,
            space=self.space.name,
            seed=self.seed,
            objective=self.task.objective,
            spec=spec,
            meta_features=meta_features_for(self.task, self.evaluator),
            tags=dict(tags or {}),
        )
        return self.search_id

    def replay(self, search_id: str, *, force: bool = False, stale_after: float = 600.0) -> int:
        """Attach to an existing search: fail its dead RUNNING trials and tell the strategy everything.

        A RUNNING trial whose heartbeat shows a live process (same host, pid alive, or a beat in
        the last ``stale_after`` seconds) means the search is still running elsewhere: that is an
        error unless ``force``.
        """
        self.search_id = search_id
        for rec in self.store.trials(search_id):
            if rec.state != "running":
                continue
            beat = rec.tags.get(HEARTBEAT_TAG)
            if not force and beat and not heartbeat_is_dead(beat, stale_after):
                raise UserError(
                    f"trial {rec.number} of search {search_id} is still running ({beat.rsplit(':', 1)[0]}); "
                    "stop that process first, or resume with --force"
                )
            self.store.finish_trial(rec.trial_id, state="failed", reason="interrupted: the search stopped while this trial ran")
        self.records = [usable_record(r, self.space) for r in self.store.trials(search_id)]
        unusable = [r.number for r in self.records if (r.reason or "").startswith(UNUSABLE)]
        if unusable:
            self.store.set_tags(search_id, {"nasw.note.unusable_trials": f"trials {unusable} have genotypes that do "
                                            "not validate in this search's space; not used on resume"[:5000]})
        obs = [o for o in (observation_of(r, self.task.objective, self.space) for r in self.records) if o]
        self.strategy.tell(obs)
        if self.scheduler is not None:
            self.scheduler.replay(
                (r.trial_id, r.genotype_key, fidelity_of(r), o.value if o is not None else None, r.state != "running")
                for r, o in ((r, observation_of(r, self.task.objective, self.space)) for r in self.records)
            )
        return len(self.records)

    def run(self) -> SearchResult:
        """Run trials until the budget is spent; interrupted trials are marked failed.

        With an executor of capacity > 1, a free worker gets a new proposal at once, with the
        running trials passed to the strategy as pending.
        """
        assert self.search_id is not None, "call start() or replay() first"
        total = self.budget if self.scheduler is None else len(self.records) + self.scheduler.expected_trials()
        self.progress.search_started(self.search_id, total, len(self.records))
        executor = self.executor or self._in_process()
        state = "finished"
        running: dict[str, tuple[int, Genotype]] = {}
        try:
            if self.scheduler is not None:
                self._run_scheduled(executor, running)
            while self.scheduler is None and (len(self.records) + len(running) < self.budget or running):
                while len(running) < executor.capacity and len(self.records) + len(running) < self.budget:
                    pending = [g for _, g in running.values()]
                    proposal = self.strategy.ask(1, pending=pending)[0]
                    number = len(self.records) + len(running)
                    job = self.start_trial(proposal, number)
                    running[job.trial_id] = (number, proposal.genotype)
                    executor.submit(job)
                for outcome in executor.wait():
                    number, g = running.pop(outcome.trial_id)
                    self._record(outcome, g)
        except KeyboardInterrupt:
            state = "killed"
            for trial_id in running:
                try:
                    self.store.finish_trial(trial_id, state="failed", reason="interrupted by the user")
                except StoreError:
                    pass
            raise
        except BaseException:
            state = "failed"  # the store failed, or a bug: finished trials are kept; `nasw resume` continues
            raise
        finally:
            if executor is not self.executor:
                executor.shutdown()
            summary = self.summary()
            try:
                self.store.finish_search(self.search_id, state=state, summary=summary)
            except StoreError:
                if state == "finished":
                    raise  # otherwise the error on its way out already says what went wrong
            if state == "finished":
                self._plot()
        return SearchResult(self.search_id, len(self.records), self.n_failed, self.best_record(), summary)

    # -- one trial ------------------------------------------------------------------------
    def start_trial(self, proposal: Proposal, number: int, decision: Any = None) -> TrialJob:
        """Create the trial's RUNNING run and the job that evaluates it.

        The run records the fidelity it is measured at: params ``fidelity.*`` and the tag
        ``nasw.fidelity`` (JSON: the fidelity, ``full``, its relative ``cost`` and, under a
        scheduler, ``rung``, ``bracket``, ``promoted_from``). ``decision`` is the scheduler's
        :class:`~workbench.evaluate.schedulers.Decision`, if any.
        """
        g = proposal.genotype
        tags = {}
        steps = morphisms_json(proposal.morphisms)
        if proposal.morphisms:
            tags["nasw.morphisms"] = steps
        fid, record = self._fidelity_for(decision)
        tags[FIDELITY_TAG] = json.dumps(record, sort_keys=True)
        if decision is not None and decision.promote and proposal.parent_trial != decision.promote:
            tags["nasw.promoted_from"] = decision.promote
        params = {**flatten(g.value), **(fid.params() if fid is not None else {})}
        trial_id = self.store.start_trial(
            self.search_id, g.to_json(), g.key, params=params, parent_trial=proposal.parent_trial, tags=tags
        )
        self._fidelity_records[trial_id] = record
        self.progress.trial_started(number, g)
        if decision is None and fid is not None and self._is_default_training(fid):
            fid = None  # the evaluator's own settings (a joint genotype's epochs stay its own)
        job_fidelity = json.dumps(record, sort_keys=True) if fid is not None and self._fidelity_ok else ""
        stop = self._stop_rule_json(g, fid, record, trial_id)
        return TrialJob(
            search_id=self.search_id,
            trial_id=trial_id,
            number=number,
            genotype_json=g.to_json(),
            seed=evaluator_seed(self.seed, number),
            objective=self.task.objective,
            parent_trial=proposal.parent_trial,
            morphisms=steps,
            fidelity=job_fidelity,
            stop_early=stop,
        )

    def run_trial(self, proposal: Proposal, number: int) -> Observation:
        """Start, evaluate (in this process) and record one trial; failures are recorded, never raised."""
        job = self.start_trial(proposal, number)
        outcome = self._execute(job, lambda e, m: self.progress.epoch(number, e, m))
        return self._record(outcome, proposal.genotype)

    def _execute(self, job: TrialJob, on_epoch=None) -> TrialOutcome:
        return execute_trial(
            self.store, self.evaluator, self.space, job, on_epoch=on_epoch, save_weights=self.save_weights,
            inherit=inherit_weights,
        )

    def _in_process(self) -> Executor:
        from workbench.execute.inprocess import InProcessExecutor

        return InProcessExecutor(self._execute, self.progress.epoch)

    def _record(self, outcome: TrialOutcome, g: Genotype) -> Observation:
        """Keep the outcome as a record, tell the strategy, update the display."""
        rec = TrialRecord(
            trial_id=outcome.trial_id, search_id=self.search_id or "", task=self.task.name, number=outcome.number,
            genotype_json=g.to_json(), genotype_key=g.key, state=outcome.state, metrics=dict(outcome.metrics),
            reason=outcome.reason, tags=self._live_tags(outcome),
        )
        self.records.append(rec)
        value = outcome.metrics.get(self.task.objective) if outcome.state == "finished" else None
        if value is not None and not math.isfinite(value):
            value = None
        if value is not None and outcome.stopped:
            value = stopped_value(outcome.metrics, value)
        if outcome.curve:
            self._curves[outcome.trial_id] = tuple(outcome.curve)
        obs = Observation(g, value, objectives=dict(outcome.metrics), trial_id=outcome.trial_id,
                          fidelity=fidelity_of(rec))
        if self.scheduler is not None:
            self.scheduler.finished(outcome.trial_id, value)
        self.strategy.tell([obs])
        if self.warm is not None and self.warm.sources:
            self._reweigh_sources()
        best = self.best_record()
        self.progress.trial_finished(outcome.number, obs, best.metrics[self.task.objective] if best else None)
        return obs

    def _reweigh_sources(self) -> None:
        """Trust in each source after this trial, kept on the parent run: the strategy's own
        weights when it has them (``source_weights()``, e.g. multi-task BO's RGPE weights), else
        the plan's ranking agreement."""
        import json

        ok = [(r, r.metrics[self.task.objective]) for r in self.records
              if r.state == "finished" and self.task.objective in r.metrics]
        try:
            own = getattr(self.strategy, "source_weights", None)
            weights = own() if callable(own) else None
            if weights:
                for s in self.warm.sources:
                    self.warm.history.setdefault(s.task, []).append(round(float(weights.get(s.task, 0.0)), 4))
                how = f"strategy {self.strategy.name}" + (f" ({getattr(self.strategy, 'transfer_model', '')})"
                                                          if getattr(self.strategy, "transfer_model", "") else "")
            else:
                gs = [Genotype.from_json(r.genotype_json) for r, _ in ok]
                self.warm.update(self.space, meta_features_for(self.task, self.evaluator), gs, [v for _, v in ok])
                how = "ranking agreement"
            self.store.set_tags(self.search_id, {"source_weights": json.dumps(self.warm.history, sort_keys=True)[:7900],
                                                 "nasw.source_weights_by": how})
        except (InvalidGenotype, StoreError, ValueError):
            pass

    # -- fidelities, schedulers, early stopping (issue 7) -----------------------------------
    def _fidelity_for(self, decision: Any) -> tuple[Any, dict[str, Any]]:
        """The fidelity of the next trial and its ``nasw.fidelity`` record."""
        from workbench.evaluate.fidelity import Fidelity

        fs = self.fidelity_space
        if decision is not None:
            return decision.fidelity, decision.record(fs)
        if fs is not None:
            return fs.high, fs.high.record(full=True, cost=1.0, level=1.0)
        return None, Fidelity().record(full=True, cost=1.0, level=1.0)

    def _is_default_training(self, fid: Any) -> bool:
        """True when ``fid`` trains exactly as the evaluator does without a fidelity."""
        epochs = getattr(getattr(self.evaluator, "config", None), "epochs", None)
        return (fid.data_fraction, fid.resolution, fid.width_mult, fid.start_epoch) == (1.0, 1.0, 1.0, 0) and (
            fid.epochs is None or fid.epochs == epochs)

    def _live_tags(self, outcome: TrialOutcome) -> dict[str, str]:
        """The tags of a just-finished trial as the store now holds them (fidelity, stop)."""
        from workbench.evaluate.fidelity import stopped_record

        rec = dict(self._fidelity_records.get(outcome.trial_id, {}))
        tags: dict[str, str] = {}
        if outcome.stopped:
            done = int(outcome.metrics.get("epochs", len(outcome.curve)) or 1)
            rec = stopped_record(rec, done, self._planned_epochs.get(outcome.trial_id), outcome.stopped)
            tags[STOPPED_TAG] = outcome.stopped
        if rec:
            tags[FIDELITY_TAG] = json.dumps(rec, sort_keys=True)
        return tags

    def _cost_of(self, record: TrialRecord) -> float:
        """Training compute of a trial in full-training equivalents (its recorded ``cost``;
        a trial stopped early counts the epochs it trained; 1 when nothing was recorded)."""
        if record.state != "finished" and not record.metrics:
            return 0.0
        return float(fidelity_of(record).get("cost", 1.0))

    def _target_epochs(self, g: Genotype | None, fid: Any) -> int | None:
        """Epochs a trial trains to (the fidelity's, else the trainer's for this genotype)."""
        if fid is not None and getattr(fid, "epochs", None) is not None:
            return int(fid.epochs)
        cfg = None
        config_for = getattr(self.evaluator, "config_for", None)
        if g is not None and callable(config_for):
            try:
                cfg = config_for(g)
            except Exception:  # noqa: BLE001 - the trial reports its own error
                cfg = None
        cfg = cfg or getattr(self.evaluator, "config", None)
        epochs = getattr(cfg, "epochs", None)
        return int(epochs) if epochs else None

    def _stop_rule_json(self, g: Genotype, fid: Any, record: Mapping[str, Any], trial_id: str) -> str:
        """The stop rule of a new trial (``""``: none): the incumbent is the best finished trial
        measured at the same fidelity that was not stopped (its curve corrects the
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

        def same_level(r: TrialRecord) -> bool:
            rec = fidelity_of(r)
            if any(rec.get(k) != level[k] for k in keys[1:]):
                return False
            if rec.get("stopped"):  # compared by the epochs it was meant to train
                return int(rec.get("planned_epochs") or 0) == target
            return rec.get("epochs") == level["epochs"]

        same = [r for r in self.records
                if r.state == "finished" and self.task.objective in r.metrics and same_level(r)]
        peers = [r for r in same if not fidelity_of(r).get("stopped")
                 and (r.metrics.get("epochs") is None or int(r.metrics["epochs"]) == target)]
        incumbent = max(peers, key=lambda r: r.metrics[self.task.objective], default=None)
        self._planned_epochs[trial_id] = target
        if incumbent is None:
            return ""
        population = [stopped_value(r.metrics, r.metrics[self.task.objective]) if fidelity_of(r).get("stopped")
                      else r.metrics[self.task.objective] for r in same]
        rule = LCStopRule(
            target_epoch=target, incumbent=float(incumbent.metrics[self.task.objective]),
            incumbent_curve=self._curve_of(incumbent.trial_id), population=population, **self.stop_options,
        )
        return rule.to_json()

    def _curve_of(self, trial_id: str) -> tuple[float, ...]:
        """The objective per epoch of a finished trial (kept from its outcome, else read back)."""
        if trial_id not in self._curves:
            try:
                points = self.store.metric_history(trial_id, self.task.objective)
            except (NotImplementedError, StoreError, UserError):
                points = []
            by_step: dict[int, float] = {}
            for step, value in points:
                by_step.setdefault(int(step), float(value))  # the final metric repeats the last step
            self._curves[trial_id] = tuple(by_step[k] for k in sorted(by_step))
        return self._curves[trial_id]

    def _run_scheduled(self, executor: Executor, running: dict[str, tuple[int, Genotype]]) -> None:
        """The loop under a scheduler: it decides each next trial (a new configuration, which the
        strategy proposes, or a promotion of a finished trial to a higher fidelity); free
        workers get work at once; when the schedule ends, the best trial of the highest rung
        reached is trained at full fidelity if no trial got there."""
        sched = self.scheduler
        by_id = {r.trial_id: r for r in self.records}
        final_asked = False
        while True:
            while len(running) < executor.capacity:
                decision = sched.next()
                if decision is None and not running and not final_asked:
                    final_asked = True
                    decision = sched.final_decision()
                if decision is None:
                    break
                if decision.promote:
                    src = by_id.get(decision.promote) or next(r for r in self.records if r.trial_id == decision.promote)
                    g = Genotype.from_json(src.genotype_json)
                    proposal = Proposal(g, parent_trial=decision.promote if decision.fidelity.start_epoch else None)
                else:
                    pending = [g for _, g in running.values()]
                    proposal = self.strategy.ask(1, pending=pending)[0]
                number = len(self.records) + len(running)
                job = self.start_trial(proposal, number, decision)
                sched.started(decision, job.trial_id, proposal.genotype.key)
                running[job.trial_id] = (number, proposal.genotype)
                executor.submit(job)
            if not running:
                return
            for outcome in executor.wait():
                number, g = running.pop(outcome.trial_id)
                self._record(outcome, g)
                by_id[outcome.trial_id] = self.records[-1]

    # -- results --------------------------------------------------------------------------
    @property
    def n_failed(self) -> int:
        return sum(1 for r in self.records if r.state == "failed")

    def best_record(self) -> TrialRecord | None:
        """The finished trial with the highest objective, among those measured at full fidelity
        (not stopped early) when there are any."""
        ok = [r for r in self.records if r.state == "finished" and self.task.objective in r.metrics]
        full = [r for r in ok if is_full(r)]
        ok = full or ok
        return max(ok, key=lambda r: r.metrics[self.task.objective]) if ok else None

    def summary(self) -> dict[str, float]:
        best = self.best_record()
        out = {"n_trials": float(len(self.records)), "n_failed": float(self.n_failed)}
        if best is not None:
            out[f"best_{self.task.objective}"] = best.metrics[self.task.objective]
            if self.task.report in best.metrics:
                out[f"best_{self.task.report}"] = best.metrics[self.task.report]
            out["best_trial_number"] = float(best.number)
        seconds = [r.metrics.get("train_seconds", 0.0) for r in self.records if r.state == "finished"]
        out["total_train_seconds"] = float(sum(v for v in seconds if math.isfinite(v)))
        if self.scheduler is not None or self.stop_early is not None:
            out["n_full_fidelity"] = float(sum(1 for r in self.records if r.state == "finished" and is_full(r)))
            out["n_stopped_early"] = float(sum(1 for r in self.records if fidelity_of(r).get("stopped")))
            out["compute_full_equivalents"] = float(sum(self._cost_of(r) for r in self.records))
        return out

    def _plot(self) -> None:
        """Every plot of the search (progress, best so far, learning curves, Pareto front, best
        architecture, source weights) and its HTML report, attached to the parent run."""
        try:
            from workbench.report import log_search_artifacts

            splits = getattr(self.evaluator, "splits", None)
            log_search_artifacts(
                self.store,
                self.search_id,
                input_shape=None if splits is None else splits.input_shape,
                n_classes=None if splits is None else splits.n_classes,
            )
        except Exception:  # noqa: BLE001 - a plot must never fail a finished search
            pass
        self._log_front()

    def _log_front(self) -> None:
        """For multi-objective searches: the Pareto front of finished trials as ``pareto_front.json``."""
        specs = getattr(self.strategy, "objectives", None) or []
        if len(specs) < 2:
            return
        import json
        import tempfile
        from pathlib import Path

        from workbench.strategy.pareto import objective_matrix, pareto_front

        names = [str(o) for o in specs]
        done = [r for r in self.records if r.state == "finished"]
        try:
            from workbench.strategy.pareto import parse_objectives

            parsed = parse_objectives(names)
            values, ok = objective_matrix([r.metrics for r in done], parsed)
            rows = [r for r, good in zip(done, ok) if good]
            if not rows:
                return
            idx = pareto_front(values[ok])  # oriented: every column maximised
        except (ValueError, TypeError, KeyError):
            return
        front = [
            {"trial_id": rows[i].trial_id, "number": rows[i].number,
             **{o.key: rows[i].metrics[o.key] for o in parsed}, "genotype": json.loads(rows[i].genotype_json)}
            for i in sorted(int(i) for i in idx)
        ]
        path = Path(tempfile.mkdtemp(prefix="nasw-front-")) / "pareto_front.json"
        path.write_text(json.dumps({"objectives": names, "front": front}, indent=2))
        self.store.log_file(self.search_id, str(path))
        self.store.set_tags(self.search_id, {"nasw.pareto_size": str(len(front))})


def new_search(
    store: Metastore,
    task: Task,
    strategy_name: str,
    budget: int,
    seed: int = 0,
    *,
    strategy_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    device: str | None = None,
    tags: Mapping[str, str] | None = None,
    prior: Sequence[Genotype] = (),
    executor: str = "inprocess",
    workers: int = 1,
    address: str | None = None,
    warm_start: str | None = None,
    echo: Callable[[str], None] | None = None,
    scheduler: str | None = None,
    scheduler_options: Mapping[str, Any] | None = None,
    stop_early: str | None = None,
    stop_options: Mapping[str, Any] | None = None,
) -> Search:
    """Build every object a search needs and create its parent run.

    ``warm_start`` is ``none``, ``auto`` or ``TASK[,TASK...]``: earlier searches of other tasks
    in the same space are read from the store, weighed (meta-features first, ranking agreement
    once the target has data) and handed to the strategy; ``echo`` receives a line saying which.

    ``scheduler`` (``sh``, ``hyperband``, ``asha``; options e.g. ``eta``, ``n_configs``,
    ``promote``) runs the search over the task's fidelities; then ``budget`` counts
    full-fidelity-equivalent trainings. ``stop_early="lc"`` stops trials by learning-curve
    extrapolation (options ``threshold``, ``min_epochs``, ``every``).
    """
    space = space_for(task)
    evaluator = evaluator_for(task, device=device)
    options = morph_options(store, strategy_name, dict(strategy_options or {}), evaluator)
    warm = _plan_warm_start(store, task, space, evaluator, strategy_name, options, warm_start)
    options = climb_options(strategy_name, options, budget, warm.strategy_kwargs if warm else {})
    if warm is not None and echo is not None:
        echo(warm.describe())
    strategy = make_strategy(strategy_name, space, seed=seed, **options, **(warm.strategy_kwargs if warm else {}))
    price_genotypes(strategy, evaluator)
    execu = make_executor(executor, workers, store, task, device=device, address=address, trainable=space.trainable)
    fkw = fidelity_setup(task, space, evaluator, budget, scheduler, scheduler_options, stop_early, stop_options)
    search = Search(store, task, strategy, evaluator, space, budget, seed, progress, executor=execu, **fkw)
    search.warm = warm
    search.start(options, tags)
    return search


def fidelity_setup(
    task: Task, space: SearchSpace, evaluator: Evaluator, budget: float, scheduler: str | None,
    scheduler_options: Mapping[str, Any] | None = None, stop_early: str | None = None,
    stop_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The fidelity keywords of :class:`Search`: the task's fidelity space (a trained task with a
    ``[fidelity]`` table, or any trained task under a scheduler), the scheduler and the stop rule.

    Raises:
        UserError: An unknown scheduler or option, a tabular task under a scheduler, a malformed
            ``[fidelity]`` table.
    """
    from workbench.evaluate.base import supports_fidelity

    fs = None
    if (scheduler or task.fidelity) and space.trainable and supports_fidelity(evaluator):
        from workbench.evaluate.fidelity import fidelity_space

        cfg = getattr(evaluator, "config", None)
        splits = getattr(evaluator, "splits", None)
        dims = len(splits.input_shape) - 1 if splits is not None else 1
        fs = fidelity_space(task.fidelity, int(getattr(cfg, "epochs", 1) or 1), dims, where=task.name)
    sched = None
    if scheduler:
        if fs is None:
            raise UserError(f"task {task.name!r} ({task.kind}) cannot be evaluated at lower fidelities; "
                            "--scheduler needs a trained task")
        from workbench.evaluate.schedulers import make_scheduler

        sched = make_scheduler(scheduler, fs, float(budget), **dict(scheduler_options or {}))
        sched.options = dict(scheduler_options or {})
    opts = dict(stop_options or {})
    allowed = {"threshold", "min_epochs", "every", "quantile"}
    if set(opts) - allowed:
        raise UserError(f"unknown --stop-early options {sorted(set(opts) - allowed)}; expected some of {sorted(allowed)}")
    return {"scheduler": sched, "fidelity_space": fs, "stop_early": stop_early, "stop_options": opts}


def _plan_warm_start(store: Metastore, task: Task, space: SearchSpace, evaluator: Evaluator, strategy_name: str,
                     options: Mapping[str, Any], warm_start: str | None, prior_json: Sequence[str] | None = None):
    """The warm-start plan of a new (or resumed) search, or None."""
    import inspect

    from workbench.strategy.registry import strategy_class
    from workbench.transfer.plan import plan_warm_start

    if not warm_start or warm_start == "none":
        return None
    histories = store.histories(space.name, task.objective, exclude_task=task.name)
    accepted = list(inspect.signature(strategy_class(strategy_name).__init__).parameters)
    plan = plan_warm_start(warm_start, histories, space, task.name, meta_features_for(task, evaluator),
                           strategy_name, options, accepted)
    if plan is not None and prior_json is not None:  # resume: the recorded prior, exactly
        from workbench.transfer.plan import strategy_kwargs_for

        plan.prior = [Genotype.from_json(t) for t in prior_json]
        plan.strategy_kwargs = strategy_kwargs_for(strategy_name, options, plan.sources, plan.weights, plan.prior, accepted)
    return plan


def morph_options(store: Metastore, strategy_name: str, options: dict[str, Any], evaluator: Evaluator) -> dict[str, Any]:
    """Complete the options of strategies that propose network morphisms (recorded for resume).

    * ``input_shape`` (the task's example shape) for ``hillclimb`` and ``evolution`` with
      ``morph``, so they leave out morphism sites that cannot preserve the function;
    * ``start_trial=ID`` (``hillclimb``; a trial of any task, a unique id prefix is enough):
      its genotype becomes ``start_genotype`` and the first trial inherits its weights.
    """
    uses_morphs = strategy_name == "hillclimb" or (strategy_name == "evolution" and options.get("morph"))
    splits = getattr(evaluator, "splits", None)
    if uses_morphs and splits is not None and "input_shape" not in options:
        options["input_shape"] = [int(x) for x in splits.input_shape]
    if strategy_name == "hillclimb" and options.get("start_trial") and "start_genotype" not in options:
        from workbench.lineage import resolve_trial

        tid = resolve_trial(store, str(options["start_trial"]))
        options["start_trial"] = tid
        options["start_genotype"] = store.trial(tid).genotype_json
    return options


def climb_options(
    strategy_name: str, options: dict[str, Any], budget: float, warm_kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """Set ``initial`` (the random trials before the climb) of a ``hillclimb`` search to half its
    ``budget`` (:func:`workbench.strategy.hillclimb.default_initial`; recorded for resume), unless
    the user chose it or the climb has a start (``start_trial``, or a warm start's best
    architecture in ``warm_kwargs``): then it climbs from that start at once."""
    if strategy_name != "hillclimb" or "initial" in options:
        return options
    if options.get("start_genotype") or warm_kwargs.get("start_genotype"):
        return options
    from workbench.strategy.hillclimb import default_initial

    options["initial"] = default_initial(budget)
    return options


def price_genotypes(strategy: Strategy, evaluator: Evaluator) -> None:
    """Give a strategy that prices genotypes (``set_cost``: hillclimb) the multiply-adds of their
    networks for the task's input; strategies do not build networks themselves."""
    splits = getattr(evaluator, "splits", None)
    if not hasattr(strategy, "set_cost") or splits is None:
        return
    from workbench.nn.cost import multiply_adds

    shape, n_classes = tuple(int(x) for x in splits.input_shape), int(splits.n_classes)
    strategy.set_cost(lambda g: multiply_adds(g, shape, n_classes))


def make_executor(
    name: str, workers: int, store: Metastore, task: Task, *, device: str | None = None,
    address: str | None = None, trainable: bool = True,
) -> Executor | None:
    """The executor for ``--executor NAME --workers N`` (None: in process, one at a time)."""
    import json

    from workbench.execute.base import executor_class

    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if name == "inprocess" and workers == 1:
        return None
    if name == "inprocess":
        name = "pool"
    cls = executor_class(name)
    if store.uri.startswith("memory://"):
        raise UserError("parallel workers need a persistent store (sqlite:///... or http://...), not memory://")
    task_json = json.dumps(task.to_dict())
    kwargs: dict[str, Any] = {"device": device, "save_weights": trainable}
    if name == "ray":
        kwargs["address"] = address
    return cls(store, store.uri, task_json, workers, **kwargs)


def resume_search(
    store: Metastore, search_id: str, *, budget: int | None = None, progress: Progress | None = None,
    device: str | None = None, force: bool = False, executor: str = "inprocess", workers: int = 1,
    address: str | None = None,
) -> Search:
    """Rebuild a recorded search from its spec and replay its trials into a fresh strategy."""
    rec = store.search(search_id)
    spec = rec.spec
    try:
        task = parse_task_dict(spec["task"])
        strategy_name = spec["strategy"]
        options = dict(spec.get("strategy_options") or {})
        total = int(budget if budget is not None else spec["budget"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"search {search_id} has no usable spec to resume from ({exc})") from None
    space = space_for(task)
    evaluator = evaluator_for(task, device=device)
    ws = spec.get("warm_start") if isinstance(spec.get("warm_start"), Mapping) else None
    warm = None
    if ws:
        names = ",".join(ws.get("sources") or {}) or "auto"
        warm = _plan_warm_start(store, task, space, evaluator, strategy_name, options, names,
                                prior_json=list(ws.get("prior") or []))
    strategy = make_strategy(strategy_name, space, seed=rec.seed, **options, **(warm.strategy_kwargs if warm else {}))
    price_genotypes(strategy, evaluator)
    execu = make_executor(executor, workers, store, task, device=device, address=address, trainable=space.trainable)
    sch = spec.get("scheduler") if isinstance(spec.get("scheduler"), Mapping) else {}
    stop = spec.get("stop_early") if isinstance(spec.get("stop_early"), Mapping) else {}
    fkw = fidelity_setup(task, space, evaluator, total, sch.get("name"), sch.get("options"), stop.get("rule"),
                         stop.get("options"))
    search = Search(store, task, strategy, evaluator, space, total, rec.seed, progress, executor=execu, **fkw)
    search.warm = warm
    search.replay(search_id, force=force)
    return search
