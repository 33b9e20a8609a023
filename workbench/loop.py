"""One search: ask -> start trial -> inherit -> evaluate -> record -> tell; and resume."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metastore import Metastore, TrialRecord
from workbench.errors import InvalidGenotype, TrialFailed, UserError
from workbench.evaluate.base import Evaluator
from workbench.evaluate.factory import evaluator_for, meta_features_for, space_for
from workbench.evaluate.trainer import evaluator_seed
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

    def replay(self, search_id: str) -> int:
        """Attach to an existing search: mark stale trials failed and tell the strategy everything."""
        self.search_id = search_id
        self.store.mark_stale(search_id, reason="interrupted: the search stopped while this trial ran")
        self.records = self.store.trials(search_id)
        obs = [o for o in (observation_of(r, self.task.objective, self.space) for r in self.records) if o]
        self.strategy.tell(obs)
        return len(self.records)

    def run(self) -> SearchResult:
        """Run trials until the budget is spent; interrupted trials are marked failed."""
        assert self.search_id is not None, "call start() or replay() first"
        self.progress.search_started(self.search_id, self.budget, len(self.records))
        state = "finished"
        try:
            while len(self.records) < self.budget:
                proposal = self.strategy.ask(1)[0]
                obs = self.run_trial(proposal, len(self.records))
                self.strategy.tell([obs])
        except KeyboardInterrupt:
            state = "killed"
            raise
        finally:
            summary = self.summary()
            self.store.finish_search(self.search_id, state=state, summary=summary)
            if state == "finished":
                self._plot()
        return SearchResult(self.search_id, len(self.records), self.n_failed, self.best_record(), summary)

    # -- one trial ------------------------------------------------------------------------
    def run_trial(self, proposal: Proposal, number: int) -> Observation:
        """Start, evaluate and record one trial; failures are recorded, never raised."""
        g = proposal.genotype
        params = {k: v for k, v in flatten(g.value).items()}
        tags = {}
        if proposal.morphisms:
            tags["nasw.morphisms"] = ";".join(m.op for m in proposal.morphisms)
        trial_id = self.store.start_trial(
            self.search_id, g.to_json(), g.key, params=params, parent_trial=proposal.parent_trial, tags=tags
        )
        self.progress.trial_started(number, g)
        init_state = None
        if proposal.parent_trial and self.space.trainable:
            init_state = self.store.load_weights(proposal.parent_trial)

        def on_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
            self.store.log_metrics(trial_id, metrics, step=epoch)
            self.progress.epoch(number, epoch, metrics)

        try:
            result = self.evaluator.evaluate(
                g, seed=evaluator_seed(self.seed, number), init_state=init_state, on_epoch=on_epoch
            )
            value = result.metrics.get(self.task.objective)
            if value is None or not math.isfinite(value):
                raise TrialFailed(f"objective {self.task.objective!r} missing or not finite")
        except TrialFailed as exc:
            self.store.finish_trial(trial_id, state="failed", reason=exc.reason)
            obs = Observation(g, None, trial_id=trial_id)
        except KeyboardInterrupt:
            self.store.finish_trial(trial_id, state="failed", reason="interrupted by the user")
            self.records.append(self.store.trial(trial_id))
            raise
        except (RuntimeError, ValueError, MemoryError) as exc:
            # A trial that crashes (out of memory, a shape error) ends failed; the search goes on.
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
            self.store.finish_trial(trial_id, state="failed", reason=reason)
            obs = Observation(g, None, trial_id=trial_id)
        else:
            if self.save_weights and result.state_dict is not None:
                self.store.save_weights(trial_id, result.state_dict)
            if result.notes:
                self.store.set_tags(trial_id, {f"nasw.note.{k}": v for k, v in result.notes.items()})
            self.store.finish_trial(trial_id, state="finished", metrics=result.metrics)
            obs = Observation(g, float(value), objectives=dict(result.metrics), trial_id=trial_id)
        self.records.append(self.store.trial(trial_id))
        best = self.best_record()
        self.progress.trial_finished(number, obs, best.metrics[self.task.objective] if best else None)
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
        """Objective per trial and best so far, attached to the parent run."""
        try:
            from workbench.plots import plot_progress

            path = plot_progress(self.records, self.task.objective, title=f"{self.task.name}: {self.strategy.name}")
        except Exception:  # noqa: BLE001 - a plot must never fail a finished search
            return
        if path:
            self.store.log_file(self.search_id, path, "plots")


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
) -> Search:
    """Build every object a search needs and create its parent run."""
    space = space_for(task)
    evaluator = evaluator_for(task, device=device)
    options = dict(strategy_options or {})
    strategy = make_strategy(strategy_name, space, seed=seed, **options)
    search = Search(store, task, strategy, evaluator, space, budget, seed, progress)
    search.start(options, tags)
    return search


def resume_search(
    store: Metastore, search_id: str, *, budget: int | None = None, progress: Progress | None = None,
    device: str | None = None,
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
    search = Search(store, task, strategy, evaluator, space, total, rec.seed, progress)
    search.replay(search_id)
    return search
