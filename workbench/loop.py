"""One search: ask -> start trial -> inherit -> evaluate -> record -> tell; and resume."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metastore import Metastore, TrialRecord
from workbench.errors import InvalidGenotype, StoreError, UserError
from workbench.evaluate.base import Evaluator
from workbench.evaluate.factory import evaluator_for, meta_features_for, space_for
from workbench.evaluate.trainer import evaluator_seed
from workbench.execute.base import Executor
from workbench.execute.trial import (
    HEARTBEAT_TAG,
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
    return Observation(
        genotype=g,
        value=value,
        objectives={k: v for k, v in record.metrics.items()},
        trial_id=record.trial_id,
    )


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
        self.search_id: str | None = None
        self.records: list[TrialRecord] = []

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
        self.records = self.store.trials(search_id)
        obs = [o for o in (observation_of(r, self.task.objective, self.space) for r in self.records) if o]
        self.strategy.tell(obs)
        return len(self.records)

    def run(self) -> SearchResult:
        """Run trials until the budget is spent; interrupted trials are marked failed.

        With an executor of capacity > 1, a free worker gets a new proposal at once, with the
        running trials passed to the strategy as pending.
        """
        assert self.search_id is not None, "call start() or replay() first"
        self.progress.search_started(self.search_id, self.budget, len(self.records))
        executor = self.executor or self._in_process()
        state = "finished"
        running: dict[str, tuple[int, Genotype]] = {}
        try:
            while len(self.records) + len(running) < self.budget or running:
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
        finally:
            if executor is not self.executor:
                executor.shutdown()
            summary = self.summary()
            self.store.finish_search(self.search_id, state=state, summary=summary)
            if state == "finished":
                self._plot()
        return SearchResult(self.search_id, len(self.records), self.n_failed, self.best_record(), summary)

    # -- one trial ------------------------------------------------------------------------
    def start_trial(self, proposal: Proposal, number: int) -> TrialJob:
        """Create the trial's RUNNING run and the job that evaluates it."""
        g = proposal.genotype
        tags = {}
        steps = morphisms_json(proposal.morphisms)
        if proposal.morphisms:
            tags["nasw.morphisms"] = steps
        trial_id = self.store.start_trial(
            self.search_id, g.to_json(), g.key, params=flatten(g.value), parent_trial=proposal.parent_trial, tags=tags
        )
        self.progress.trial_started(number, g)
        return TrialJob(
            search_id=self.search_id,
            trial_id=trial_id,
            number=number,
            genotype_json=g.to_json(),
            seed=evaluator_seed(self.seed, number),
            objective=self.task.objective,
            parent_trial=proposal.parent_trial,
            morphisms=steps,
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
            reason=outcome.reason,
        )
        self.records.append(rec)
        value = outcome.metrics.get(self.task.objective) if outcome.state == "finished" else None
        obs = Observation(g, value, objectives=dict(outcome.metrics), trial_id=outcome.trial_id)
        self.strategy.tell([obs])
        best = self.best_record()
        self.progress.trial_finished(outcome.number, obs, best.metrics[self.task.objective] if best else None)
        return obs

    # -- results --------------------------------------------------------------------------
    @property
    def n_failed(self) -> int:
        return sum(1 for r in self.records if r.state == "failed")

    def best_record(self) -> TrialRecord | None:
        """The finished trial with the highest objective."""
        ok = [r for r in self.records if r.state == "finished" and self.task.objective in r.metrics]
        return max(ok, key=lambda r: r.metrics[self.task.objective]) if ok else None

    def summary(self) -> dict[str, float]:
        best = self.best_record()
        out = {"n_trials": float(len(self.records)), "n_failed": float(self.n_failed)}
        if best is not None:
            out[f"best_{self.task.objective}"] = best.metrics[self.task.objective]
            if self.task.report in best.metrics:
                out[f"best_{self.task.report}"] = best.metrics[self.task.report]
            out["best_trial_number"] = float(best.number)
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
) -> Search:
    """Build every object a search needs and create its parent run."""
    space = space_for(task)
    evaluator = evaluator_for(task, device=device)
    options = morph_options(store, strategy_name, dict(strategy_options or {}), evaluator)
    strategy = make_strategy(strategy_name, space, seed=seed, **options)
    execu = make_executor(executor, workers, store, task, device=device, address=address, trainable=space.trainable)
    search = Search(store, task, strategy, evaluator, space, budget, seed, progress, executor=execu)
    search.start(options, tags)
    return search


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
    strategy = make_strategy(strategy_name, space, seed=rec.seed, **options)
    execu = make_executor(executor, workers, store, task, device=device, address=address, trainable=space.trainable)
    search = Search(store, task, strategy, evaluator, space, total, rec.seed, progress, executor=execu)
    search.replay(search_id, force=force)
    return search
