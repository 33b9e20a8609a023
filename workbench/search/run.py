"""One search: ask -> start trial -> execute -> record -> tell, until the budget is spent; and
replay of a recorded search into a fresh strategy (resume)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from metastore import Metastore, TrialRecord
from metastore.schema import (
    NOTE_UNUSABLE_TRIALS,
    PARETO_ARTIFACT,
    PROGRESS_BEST,
    PROGRESS_COMPUTE,
    PROGRESS_OBJECTIVE,
    PROGRESS_SECONDS,
    PROGRESS_SOURCE_WEIGHT,
    PROGRESS_TOTAL_SECONDS,
    TAG_ESTIMATOR,
    TAG_FIDELITY,
    TAG_HEARTBEAT,
    TAG_MORPHISMS,
    TAG_ORIGIN,
    TAG_PARETO_SIZE,
    TAG_PROMOTED_FROM,
    TAG_RERUN_OF,
    TAG_SOURCE_WEIGHTS,
    TAG_SOURCE_WEIGHTS_BY,
    TAG_WARM_START,
    TRIAL_LABEL_CHARS,
    note_tag,
)
from workbench.errors import InvalidGenotype, StoreError, UserError
from workbench.evaluate.base import Evaluator, traits_of
from workbench.evaluate.factory import meta_features_for
from workbench.evaluate.trainer import evaluator_seed
from workbench.execute.base import Executor
from workbench.execute.inherit import inherit_weights
from workbench.execute.signals import interruption_reason, stop_on_signals
from workbench.execute.trial import TrialJob, TrialOutcome, execute_trial, heartbeat_is_dead, morphisms_json
from workbench.search.budget import Budget
from workbench.search.fidelity import FidelityBook
from workbench.search.progress import Progress, SearchResult
from workbench.search.records import (
    INTERRUPTED,
    UNUSABLE,
    fidelity_of,
    flatten,
    is_full,
    is_interrupted,
    observation_of,
    observed_value,
    rerun_proposal,
    usable_record,
)
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.space.registry import describe_json
from workbench.strategy.base import ORIGIN_PRIOR, ORIGIN_TRANSFER, Observation, Proposal, Strategy
from workbench.task import Task


class Search:
    """Drives one search against a metastore.

    Args:
        store: Where everything is recorded.
        task: The task.
        strategy: The ask/tell strategy (already built for ``space``).
        evaluator: Measures genotypes.
        space: The task's space.
        budget: Total number of trials (finished + failed) of the search; under a
            ``scheduler``, full-fidelity-equivalent trainings (:class:`Budget`).
        seed: Search seed (strategy and per-trial training seeds derive from it).
        progress: Callbacks for a live display.
        save_weights: Keep every trained trial's weights (for children to inherit).
        executor: Runs trials (None: one at a time, in this process).
        scheduler: A multi-fidelity scheduler (:mod:`workbench.evaluate.schedulers`).
        fidelity_space: The task's fidelities (default: the scheduler's).
        stop_early: ``"lc"``: stop trials whose extrapolated learning curve is unlikely to beat
            the incumbent (:class:`workbench.evaluate.curves.LCStopRule`).
        stop_options: Settings of the stop rule (``threshold``, ``min_epochs``, ``every``).
        warm: The warm-start plan (:class:`workbench.transfer.plan.WarmStartPlan`), if any.
        oneshot: The one-shot phase (:class:`workbench.search.oneshot.OneShotPhase`: a supernet
            trained before the first ask, estimates, retraining after the loop), if any.
    """

    def __init__(
        self,
        store: Metastore,
        task: Task,
        strategy: Strategy,
        evaluator: Evaluator,
        space: SearchSpace,
        budget: int | Budget,
        seed: int = 0,
        progress: Progress | None = None,
        save_weights: bool = True,
        executor: Executor | None = None,
        *,
        scheduler: Any = None,
        fidelity_space: Any = None,
        stop_early: str | None = None,
        stop_options: Mapping[str, Any] | None = None,
        warm: Any = None,
        oneshot: Any = None,
    ) -> None:
        if not isinstance(budget, Budget):
            budget = Budget.of(budget, scheduled=scheduler is not None)
        self.store = store
        self.task = task
        self.strategy = strategy
        self.evaluator = evaluator
        self.space = space
        self.budget = budget.amount
        self.seed = int(seed)
        self.progress = progress or Progress()
        self.save_weights = save_weights and space.trainable
        self.executor = executor
        self.warm = warm
        self.oneshot = oneshot
        self.search_id: str | None = None
        self.records: list[TrialRecord] = []
        self._reruns: list[TrialRecord] = []  # interrupted trials a resumed search re-runs first
        self._n_interrupted = 0  # of self.records
        self._origins: dict[int, str] = {}  # trial number -> its proposal's origin (this process)
        self.fidelity = FidelityBook(task, space, evaluator, store, scheduler, fidelity_space, stop_early, stop_options)

    @property
    def scheduler(self) -> Any:
        """The multi-fidelity scheduler, None without one."""
        return self.fidelity.scheduler

    @property
    def stop_early(self) -> str | None:
        """The early-stopping rule (``"lc"``), None without one."""
        return self.fidelity.stop_early

    # -- lifecycle ------------------------------------------------------------------------
    def start(
        self,
        strategy_options: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> str:
        """Create the parent run (``name``: its readable name, see :meth:`Metastore.start_search`)."""
        spec = {
            "task": self.task.to_dict(),
            "strategy": self.strategy.name,
            "strategy_options": dict(strategy_options or {}),
            "budget": self.budget,
            "seed": self.seed,
            "space_settings": self.space.settings(),
            **self.fidelity.spec(),
            **({"oneshot": self.oneshot.spec.to_dict()} if self.oneshot is not None else {}),
        }
        tags = dict(tags or {})
        if self.warm is not None:
            spec["warm_start"] = self.warm.to_spec()
            tags.update({TAG_WARM_START: self.warm.mode, TAG_SOURCE_WEIGHTS: self.warm.weights.to_json()})
        self.search_id = self.store.start_search(
            self.task.name,
            strategy=self.strategy.name,
            space=self.space.name,
            seed=self.seed,
            objective=self.task.objective,
            spec=spec,
            meta_features=meta_features_for(self.task, self.evaluator),
            tags=tags,
            name=name,
        )
        return self.search_id

    def replay(self, search_id: str, *, force: bool = False, stale_after: float = 600.0) -> int:
        """Attach to an existing search: fail its dead RUNNING trials and tell the strategy everything.

        A RUNNING trial whose heartbeat shows a live process (same host, pid alive, or a beat in
        the last ``stale_after`` seconds) means the search is still running elsewhere: that is an
        error unless ``force``.

        Interrupted trials (Ctrl-C, SIGTERM, a killed process) do not count against the budget
        and are not told to the strategy: :meth:`run` re-runs each one's architecture first (the
        new trial's ``nasw.rerun_of`` names it; under a scheduler, the scheduler decides again).
        """
        self.search_id = search_id
        for rec in self.store.trials(search_id):
            if rec.state != "running":
                continue
            beat = rec.tags.get(TAG_HEARTBEAT)
            if not force and beat and not heartbeat_is_dead(beat, stale_after):
                raise UserError(
                    f"trial {rec.number} of search {search_id} is still running ({beat.rsplit(':', 1)[0]}); "
                    "stop that process first, or resume with --force"
                )
            self.store.finish_trial(
                rec.trial_id, state="failed", reason=f"{INTERRUPTED}: the search stopped while this trial ran"
            )
        trials = self.store.trials(search_id)
        if self.oneshot is not None:
            trials = self.oneshot.loop_trials(trials)  # its supernet runs are no trials of the loop
        self.records = [usable_record(r, self.space) for r in trials]
        unusable = [r.number for r in self.records if (r.reason or "").startswith(UNUSABLE)]
        if unusable:
            self.store.set_tags(
                search_id,
                {
                    note_tag(NOTE_UNUSABLE_TRIALS): f"trials {unusable} have genotypes that do "
                    "not validate in this search's space; not used on resume"[:5000]
                },
            )
        rerun = {r.tags.get(TAG_RERUN_OF) for r in self.records}
        interrupted = [r for r in self.records if is_interrupted(r)]
        self._n_interrupted = len(interrupted)
        estimates = {r.trial_id for r in self.records if r.tags.get(TAG_ESTIMATOR)}  # retrained by the phase itself
        self._reruns = [
            r
            for r in interrupted
            if r.trial_id not in rerun and r.parent_trial not in estimates and rerun_proposal(r, self.space)
        ]
        if self.scheduler is not None:
            self._reruns = []  # the scheduler decides again what runs in their place
        observed = [
            (r, observation_of(r, self.task.objective, self.space)) for r in self.records if not is_interrupted(r)
        ]
        self.strategy.tell([o for _, o in observed if o])
        if self.scheduler is not None:
            self.scheduler.replay(
                (r.trial_id, r.genotype_key, fidelity_of(r), o.value if o is not None else None, r.state != "running")
                for r, o in observed
            )
        return len(self.records)

    def run(self) -> SearchResult:
        """Run trials until the budget is spent; interrupted trials are marked failed.

        With an executor of capacity > 1, a free worker gets a new proposal at once, with the
        running trials passed to the strategy as pending.
        """
        assert self.search_id is not None, "call start() or replay() first"
        total = self.budget if self.scheduler is None else len(self.records) + self.scheduler.expected_trials()
        self.progress.search_started(self.search_id, total, self.n_counted)
        executor = self.executor or self._in_process()
        state = "finished"
        running: dict[str, tuple[int, Genotype]] = {}
        try:
            with stop_on_signals():  # `kill PID` (SIGTERM) or a closed terminal (SIGHUP): as Ctrl-C
                if self.oneshot is not None:
                    self.oneshot.before(self)  # the supernet (and op weights) before the first ask
                if self.scheduler is not None:
                    self._run_scheduled(executor, running)
                else:
                    self._run_trials(executor, running)
                if self.oneshot is not None:
                    self.oneshot.after(self)  # the best estimates retrained from scratch
        except KeyboardInterrupt as exc:
            state = "killed"
            executor.cancel()  # trials still running in workers stop now
            for trial_id in running:
                try:
                    self.store.finish_trial(trial_id, state="failed", reason=interruption_reason(exc))
                except StoreError:
                    pass
            try:  # also a trial the interruption caught while it was being started
                self.store.mark_stale(self.search_id, reason=interruption_reason(exc))
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
        return SearchResult(self.search_id, self.n_counted, self.n_failed, self.best_record(), summary)

    def _run_trials(self, executor: Executor, running: dict[str, tuple[int, Genotype]]) -> None:
        """The loop without a scheduler: ``budget`` trials (interrupted ones do not count), free
        workers get a proposal at once; the architectures of interrupted trials come first."""
        while self.n_counted + len(running) < self.budget or running:
            while len(running) < executor.capacity and self.n_counted + len(running) < self.budget:
                pending = [g for _, g in running.values()]
                rerun = self._reruns.pop(0) if self._reruns else None
                proposal = (rerun and rerun_proposal(rerun, self.space)) or self.strategy.ask(1, pending=pending)[0]
                number = len(self.records) + len(running)
                job = self.start_trial(proposal, number, rerun_of=rerun.trial_id if rerun else None)
                running[job.trial_id] = (number, proposal.genotype)
                executor.submit(job)
            for outcome in executor.wait():
                number, g = running.pop(outcome.trial_id)
                self.record(outcome, g)

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
                self.record(outcome, g)
                by_id[outcome.trial_id] = self.records[-1]

    # -- one trial ------------------------------------------------------------------------
    def start_trial(
        self, proposal: Proposal, number: int, decision: Any = None, *, rerun_of: str | None = None
    ) -> TrialJob:
        """Create the trial's RUNNING run and the job that evaluates it.

        The run records the fidelity it is measured at: params ``fidelity.*`` and the tag
        ``nasw.fidelity`` (JSON: the fidelity, ``full``, its relative ``cost`` and, under a
        scheduler, ``rung``, ``bracket``, ``promoted_from``). ``decision`` is the scheduler's
        :class:`~workbench.evaluate.schedulers.Decision`, if any; ``rerun_of`` the interrupted
        trial this one re-runs.
        """
        g = proposal.genotype
        tags = {}
        steps = morphisms_json(proposal.morphisms)
        if proposal.morphisms:
            tags[TAG_MORPHISMS] = steps
        if proposal.origin:
            tags[TAG_ORIGIN] = proposal.origin
            self._origins[number] = proposal.origin
        fid, record = self.fidelity.fidelity_for(decision)
        if self.oneshot is not None:
            record, estimated = self.oneshot.trial_tags(record)  # an estimate: not full, its estimator
            tags.update(estimated)
        tags[TAG_FIDELITY] = json.dumps(record, sort_keys=True)
        if rerun_of:
            tags[TAG_RERUN_OF] = rerun_of
        if decision is not None and decision.promote and proposal.parent_trial != decision.promote:
            tags[TAG_PROMOTED_FROM] = decision.promote
        params = {**flatten(g.value), **(fid.params() if fid is not None else {})}
        trial_id = self.store.start_trial(
            self.search_id,
            g.to_json(),
            g.key,
            params=params,
            parent_trial=proposal.parent_trial,
            tags=tags,
            label=describe_json(g.to_json(), TRIAL_LABEL_CHARS),
        )
        job_fidelity = self.fidelity.job_fidelity(trial_id, fid, record, scheduled=decision is not None)
        self.progress.trial_started(number, g)
        stop = self.fidelity.stop_rule_json(g, fid, record, trial_id, self.records)
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

    def execute(self, job: TrialJob, on_epoch=None) -> TrialOutcome:
        """Evaluate a started trial in this process (inherit, train, record its metrics)."""
        return execute_trial(
            self.store,
            self.evaluator,
            self.space,
            job,
            on_epoch=on_epoch,
            save_weights=self.save_weights,
            inherit=inherit_weights,
        )

    def _in_process(self) -> Executor:
        from workbench.execute.inprocess import InProcessExecutor

        return InProcessExecutor(self.execute, self.progress.epoch)

    def record(self, outcome: TrialOutcome, g: Genotype) -> Observation:
        """Keep a finished trial's outcome as a record, tell the strategy, update the display."""
        rec = TrialRecord(
            trial_id=outcome.trial_id,
            search_id=self.search_id or "",
            task=self.task.name,
            number=outcome.number,
            genotype_json=g.to_json(),
            genotype_key=g.key,
            state=outcome.state,
            metrics=dict(outcome.metrics),
            reason=outcome.reason,
            tags=self.fidelity.live_tags(outcome.trial_id, outcome.metrics, outcome.curve, outcome.stopped),
        )
        self.records.append(rec)
        self._n_interrupted += is_interrupted(rec)
        value = observed_value(outcome.state, outcome.metrics, self.task.objective, bool(outcome.stopped))
        if outcome.curve:
            self.fidelity.curves[outcome.trial_id] = tuple(outcome.curve)
        obs = Observation(
            g, value, objectives=dict(outcome.metrics), trial_id=outcome.trial_id, fidelity=fidelity_of(rec)
        )
        if self.scheduler is not None:
            self.scheduler.finished(outcome.trial_id, value)
        self.strategy.tell([obs])
        if self.warm is not None and self.warm.sources:
            self._reweigh_sources()
        best = self.best_record()
        self._log_progress(rec, best)
        self.progress.trial_finished(outcome.number, obs, best.metrics[self.task.objective] if best else None)
        return obs

    def _log_progress(self, rec: TrialRecord, best: TrialRecord | None) -> None:
        """The search's progress after trial ``rec`` on the parent run, at step = its number (one
        write): best so far, the trial's objective and seconds, the seconds (and compute) so far,
        a warm start's trust in each source. Never fails the search."""
        objective = self.task.objective
        point: dict[str, float] = {}
        if best is not None:
            point[PROGRESS_BEST] = best.metrics[objective]
        if rec.state == "finished" and objective in rec.metrics:
            point[PROGRESS_OBJECTIVE] = rec.metrics[objective]
        seconds = [r.metrics.get("train_seconds", 0.0) for r in self.records if r.state == "finished"]
        point[PROGRESS_SECONDS] = rec.metrics.get("train_seconds", 0.0)
        point[PROGRESS_TOTAL_SECONDS] = float(sum(v for v in seconds if math.isfinite(v)))
        if self.fidelity.tracks_cost:
            point[PROGRESS_COMPUTE] = float(sum(self.fidelity.cost_of(r) for r in self.records))
        if self.warm is not None and self.warm.sources:
            for s in self.warm.sources:
                trust = self.warm.history.get(s.task) or [self.warm.weights.weights.get(s.task, 0.0)]
                point[PROGRESS_SOURCE_WEIGHT + s.task] = float(trust[-1])
        point = {k: v for k, v in point.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        try:
            self.store.log_search_steps(self.search_id, [(rec.number, point)])
        except (StoreError, ValueError, TypeError):
            pass

    def _reweigh_sources(self) -> None:
        """Trust in each source after this trial, kept on the parent run: the strategy's own
        weights when it has them (:meth:`Strategy.source_weights`, e.g. multi-task BO's RGPE
        weights), else the plan's ranking agreement."""
        ok = [
            (r, r.metrics[self.task.objective])
            for r in self.records
            if r.state == "finished" and self.task.objective in r.metrics
        ]
        try:
            weights = self.strategy.source_weights()
            if weights:
                self.warm.record_weights(weights)
                model = self.strategy.transfer_model
                how = f"strategy {self.strategy.name}" + (f" ({model})" if model else "")
            else:
                gs = [Genotype.from_json(r.genotype_json) for r, _ in ok]
                self.warm.update(self.space, meta_features_for(self.task, self.evaluator), gs, [v for _, v in ok])
                how = "ranking agreement"
            self.store.set_tags(
                self.search_id,
                {TAG_SOURCE_WEIGHTS: json.dumps(self.warm.history, sort_keys=True)[:7900], TAG_SOURCE_WEIGHTS_BY: how},
            )
        except (InvalidGenotype, StoreError, ValueError):
            pass

    # -- results --------------------------------------------------------------------------
    @property
    def n_failed(self) -> int:
        """Trials that failed (interrupted ones are not failures: they are re-run)."""
        return sum(1 for r in self.records if r.state == "failed" and not is_interrupted(r))

    @property
    def n_counted(self) -> int:
        """Trials that count against the budget: every trial but the interrupted ones."""
        return len(self.records) - self._n_interrupted

    def best_record(self) -> TrialRecord | None:
        """The finished trial with the highest objective, among those measured at full fidelity
        (not stopped early) when there are any."""
        ok = [r for r in self.records if r.state == "finished" and self.task.objective in r.metrics]
        full = [r for r in ok if is_full(r)]
        ok = full or ok
        return max(ok, key=lambda r: r.metrics[self.task.objective]) if ok else None

    def summary(self) -> dict[str, float]:
        best = self.best_record()
        out = {"n_trials": float(self.n_counted), "n_failed": float(self.n_failed)}
        if self.n_counted < len(self.records):
            out["n_interrupted"] = float(len(self.records) - self.n_counted)
        if best is not None:
            out[f"best_{self.task.objective}"] = best.metrics[self.task.objective]
            if self.task.report in best.metrics:
                out[f"best_{self.task.report}"] = best.metrics[self.task.report]
            out["best_trial_number"] = float(best.number)
        seconds = [r.metrics.get("train_seconds", 0.0) for r in self.records if r.state == "finished"]
        out["total_train_seconds"] = float(sum(v for v in seconds if math.isfinite(v)))
        if self.fidelity.tracks_cost:
            out["n_full_fidelity"] = float(sum(1 for r in self.records if r.state == "finished" and is_full(r)))
            out["n_stopped_early"] = float(sum(1 for r in self.records if fidelity_of(r).get("stopped")))
            out["compute_full_equivalents"] = float(sum(self.fidelity.cost_of(r) for r in self.records))
        if self.warm is not None and self.warm.sources:
            origins = [self._origins.get(r.number) or r.tags.get(TAG_ORIGIN, "") for r in self.records]
            out["warm_trials_from_prior"] = float(origins.count(ORIGIN_PRIOR))
            out["warm_trials_from_transfer"] = float(origins.count(ORIGIN_TRANSFER))
        if self.oneshot is not None:
            out.update(self.oneshot.summary(self.records))
        return out

    def source_use(self) -> str:
        """One line on how much a warm start was used: trials that came from the sources (their
        best architectures, a model of the sources' choices) and each source's final trust; ``""``
        for a cold search."""
        if self.warm is None or not self.warm.sources:
            return ""
        summary = self.summary()
        prior, model = int(summary["warm_trials_from_prior"]), int(summary["warm_trials_from_transfer"])
        trust = {
            s.task: (self.warm.history.get(s.task) or [self.warm.weights.weights.get(s.task, 0.0)])[-1]
            for s in self.warm.sources
        }
        ranked = ", ".join(f"{task} {w:.2f}" for task, w in sorted(trust.items(), key=lambda kv: -kv[1]))
        return (
            f"warm start: {prior + model} of {len(self.records)} trials came from the sources "
            f"({prior} of their best architectures, {model} chosen by a model of the sources); "
            f"final trust: {ranked}"
        )

    def _plot(self) -> None:
        """Every plot of the search (progress, best so far, learning curves, Pareto front, best
        architecture, source weights) and its HTML report, attached to the parent run."""
        try:
            from workbench.report import log_search_artifacts

            traits = traits_of(self.evaluator)
            log_search_artifacts(self.store, self.search_id, input_shape=traits.input_shape, n_classes=traits.n_classes)
        except Exception:  # noqa: BLE001 - a plot must never fail a finished search
            pass
        self._log_front()

    def _log_front(self) -> None:
        """For multi-objective searches: the Pareto front of finished trials as ``pareto_front.json``."""
        specs = self.strategy.objectives or []
        if len(specs) < 2:
            return
        import tempfile
        from pathlib import Path

        from workbench.strategy.pareto import objective_matrix, pareto_front, parse_objectives

        names = [str(o) for o in specs]
        done = [r for r in self.records if r.state == "finished"]
        try:
            parsed = parse_objectives(names)
            values, ok = objective_matrix([r.metrics for r in done], parsed)
            rows = [r for r, good in zip(done, ok) if good]
            if not rows:
                return
            idx = pareto_front(values[ok])  # oriented: every column maximised
        except (ValueError, TypeError, KeyError):
            return
        front = [
            {
                "trial_id": rows[i].trial_id,
                "number": rows[i].number,
                **{o.key: rows[i].metrics[o.key] for o in parsed},
                "genotype": json.loads(rows[i].genotype_json),
            }
            for i in sorted(int(i) for i in idx)
        ]
        path = Path(tempfile.mkdtemp(prefix="nasw-front-")) / PARETO_ARTIFACT
        path.write_text(json.dumps({"objectives": names, "front": front}, indent=2))
        self.store.log_file(self.search_id, str(path))
        self.store.set_tags(self.search_id, {TAG_PARETO_SIZE: str(len(front))})
