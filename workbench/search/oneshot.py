"""The one-shot phases of a search: a weight-sharing supernet trained once before the first ask
(for ``--estimator oneshot``, or for a strategy whose :meth:`~workbench.strategy.base.Strategy.relaxation`
asks for op weights: DARTS, GDAS), recorded as the search's supernet run; trials scored by the
supernet tagged with their estimator; the best estimates retrained from scratch at the end.

The search calls :class:`OneShotPhase` at four places (``docs/architecture.md``, "One-shot and
gradient-based search"): :meth:`~OneShotPhase.before` the loop, :meth:`~OneShotPhase.trial_tags`
when a trial starts, :meth:`~OneShotPhase.after` the loop, and :meth:`~OneShotPhase.loop_trials`
when a resumed search reads its trials back (the supernet run is no trial of the loop).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from metastore import Metastore, TrialRecord
from metastore.schema import (
    OP_WEIGHTS_ARTIFACT,
    OP_WEIGHTS_PLOT,
    TAG_DERIVED,
    TAG_ESTIMATOR,
    TAG_FIDELITY,
    TAG_HEARTBEAT,
    TAG_RESUMED_FROM,
    TAG_SUPERNET,
    TAG_WARM_SUPERNET,
    fidelity_record,
    note_tag,
)
from workbench.errors import StoreError, UserError
from workbench.evaluate.base import Evaluator, traits_of
from workbench.search.supernet_source import SupernetSource, find_supernet_source
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.space.relaxation import OpWeights
from workbench.strategy.base import Proposal, Strategy

#: What ``--estimator`` accepts besides the default (train every trial).
ESTIMATORS: tuple[str, ...] = ("oneshot",)
#: Metric names of a supernet run's op weights: ``op_weight.<i>to<j>.<op>`` (edge ``j<-i``).
OP_WEIGHT_METRIC = "op_weight."
#: Prefix of a supernet run's per-epoch metrics (``supernet_train_loss``, ...), so that no
#: reader takes them for a trial's objective.
SUPERNET_METRIC = "supernet_"


def op_weight_metric(edge: str, op: str) -> str:
    """The metric name of ``op``'s weight on ``edge`` (``"1<-0"`` -> ``op_weight.0to1.<op>``)."""
    j, _, i = edge.partition("<-")
    return f"{OP_WEIGHT_METRIC}{i}to{j}.{op}"


def is_estimate(record: TrialRecord) -> bool:
    """True for a trial scored by an estimator (its fidelity record names it), not trained."""
    return bool(fidelity_record(record.tags.get(TAG_FIDELITY)).get("estimator"))


def split_options(estimator: str | None, options: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--option`` pairs split into the strategy's and the estimator's (``retrain_top``, ...;
    only with ``--estimator oneshot``)."""
    from workbench.oneshot.settings import ESTIMATOR_OPTIONS

    opts = dict(options or {})
    if estimator is None:
        return opts, {}
    if estimator not in ESTIMATORS:
        raise UserError(f"unknown estimator {estimator!r}; expected one of {list(ESTIMATORS)}")
    mine = {k: opts.pop(k) for k in sorted(set(opts) & ESTIMATOR_OPTIONS)}
    return opts, mine


@dataclass(frozen=True)
class OneShotSpec:
    """What a search records of its one-shot phase (``spec["oneshot"]``): the estimator and its
    options (a relaxation comes from the strategy's options, recorded with them)."""

    estimator: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    warm_start: str | None = None  # --warm-start: the supernet starts from another task's

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"estimator": self.estimator, "options": dict(self.options)}
        return {**out, "warm_start": self.warm_start} if self.warm_start else out

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> OneShotSpec:
        rec = spec.get("oneshot") if isinstance(spec.get("oneshot"), Mapping) else {}
        opts = rec.get("options") if isinstance(rec.get("options"), Mapping) else {}
        warm = rec.get("warm_start") if isinstance(rec.get("warm_start"), str) else None
        return cls(rec.get("estimator") or None, dict(opts), warm)


def oneshot_phase(
    spec: OneShotSpec,
    space: SearchSpace,
    evaluator: Evaluator,
    strategy: Strategy,
    *,
    workers: int = 1,
    scheduled: bool = False,
    seed: int = 0,
) -> tuple[Evaluator, OneShotPhase | None]:
    """The evaluator the search runs its trials with and its one-shot phase (None: no phase).

    Raises:
        UserError: A one-shot phase on a space without a supernet (or a tabular task), an
            estimator together with a gradient-based strategy, a scheduler or several workers,
            bad settings (absurd epochs, learning rates).
    """
    relaxation = strategy.relaxation()
    if spec.estimator is None and relaxation is None:
        return evaluator, None
    from workbench.oneshot.settings import EstimatorSettings, SupernetSettings, check_supernet_space

    what = f"--estimator {spec.estimator}" if relaxation is None else f"--strategy {strategy.name}"
    if spec.estimator is not None and relaxation is not None:
        raise UserError(
            f"--strategy {strategy.name} derives its cells from a supernet of its own; "
            f"--estimator {spec.estimator} is for the other strategies (use one or the other)"
        )
    check_supernet_space(space, what)
    if not traits_of(evaluator).trained:
        raise UserError(f"{what} trains a supernet on the task's data; this task has none (a lookup table)")
    if scheduled:
        raise UserError(
            f"{what} does not combine with --scheduler or --stop-early (its trials are not trained by epochs)"
        )
    if relaxation is not None:
        settings = SupernetSettings.read(relaxation.method, relaxation.settings, where=what)
        return evaluator, OneShotPhase(space, evaluator, strategy, settings, None, None, seed, spec)
    if workers > 1:
        raise UserError(f"{what} scores trials with the supernet in the search process; use --workers 1")
    from workbench.oneshot.estimator import OneShotEstimator

    est = EstimatorSettings.read(spec.options)
    estimator = OneShotEstimator(evaluator, bn_recalibrate=est.bn_recalibrate, bn_batches=est.bn_batches)
    phase = OneShotPhase(space, evaluator, strategy, est.supernet, estimator, est, seed, spec)
    return estimator, phase


class OneShotPhase:
    """The supernet of one search, the estimates and the retraining (see the module docstring)."""

    def __init__(
        self,
        space: SearchSpace,
        inner: Evaluator,
        strategy: Strategy,
        settings: Any,
        estimator: Any,
        estimator_settings: Any,
        seed: int,
        spec: OneShotSpec | None = None,
    ) -> None:
        self.space, self.inner, self.strategy = space, inner, strategy
        self.settings = settings.resolved(inner.config)
        self.estimator = estimator
        self.estimator_settings = estimator_settings
        self.seed = int(seed)
        self.spec = spec or OneShotSpec()
        self.supernet_seconds = 0.0
        self.supernet_id: str | None = None  # this search's supernet run, once trained or restored
        self._source: tuple[SupernetSource | None] | None = None  # the warm start's, once looked up
        self._retraining = False  # after(): the trials started now are retrained, not estimates

    # -- hooks the search calls ---------------------------------------------------------------
    def loop_trials(self, trials: Sequence[TrialRecord]) -> list[TrialRecord]:
        """The trials of the loop: every child run but the supernet runs."""
        return [t for t in trials if not t.tags.get(TAG_SUPERNET)]

    def trial_tags(self, record: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """A starting trial's fidelity record and extra tags: an estimate is not measured at
        full fidelity and costs no training (``"full": false``, ``cost`` 0) and names its
        estimator; a retrained trial (or any trial without an estimator) is unchanged."""
        if self.estimator is None or self._retraining:
            return dict(record), {}
        label = self.estimator.label
        return {**record, "full": False, "cost": 0.0, "estimator": label}, {TAG_ESTIMATOR: label}

    def summary(self, records: Sequence[TrialRecord]) -> dict[str, float]:
        """The phase's part of the search summary."""
        out = {"supernet_seconds": float(self.supernet_seconds)}
        if self.estimator is not None:
            out["n_estimates"] = float(sum(1 for r in records if is_estimate(r)))
            out["n_retrained"] = float(sum(1 for r in records if not is_estimate(r) and r.state == "finished"))
        return out

    def before(self, search: Any) -> None:
        """Train the supernet (or take the finished one, or continue an interrupted one from its
        last checkpoint) and hand it to the estimator, its op weights to the strategy."""
        from workbench.oneshot.train import SupernetTrainer

        store: Metastore = search.store
        if self.estimator is not None:  # --budget counts estimates: retrained trials of an earlier run are extra
            search.budget += sum(1 for r in search.records if not is_estimate(r))
        trainer = SupernetTrainer(
            self.inner.splits, self.inner.config, self.space.macro, self.settings, seed=self.seed, device=None
        )
        runs = [t for t in store.trials(search.search_id) if t.tags.get(TAG_SUPERNET)]
        result = self._finished(store, runs, trainer)
        if result is None:
            result = self._train(search, runs, trainer)
        if self.estimator is not None:
            self.estimator.attach(result.supernet)
        if result.op_weights is not None:
            self.strategy.set_op_weights(result.op_weights)

    def after(self, search: Any) -> None:
        """Retrain the best ``retrain_top`` estimates from scratch as ordinary trials whose
        ``parent_trial`` names the estimate (those already retrained on an earlier run of a
        resumed search are skipped)."""
        if self.estimator is None or not self.estimator_settings.retrain_top:
            return
        from workbench.execute.trial import execute_trial

        objective = search.task.objective
        estimates = [r for r in search.records if is_estimate(r) and r.state == "finished" and objective in r.metrics]
        done = {r.parent_trial for r in search.records if not is_estimate(r) and r.state == "finished"}
        best = sorted(estimates, key=lambda r: (-r.metrics[objective], r.number))[: self.estimator_settings.retrain_top]
        self._retraining = True
        try:
            for est in best:
                if est.trial_id in done:
                    continue
                g = Genotype.from_json(est.genotype_json)
                number = len(search.records)
                job = search.start_trial(Proposal(g, parent_trial=est.trial_id), number)
                job = replace(job, parent_trial=None)  # from scratch: the estimate has no weights of its own
                outcome = execute_trial(
                    search.store,
                    self.inner,
                    self.space,
                    job,
                    on_epoch=lambda e, m, n=number: search.progress.epoch(n, e, m),
                    save_weights=search.save_weights,
                )
                search.record(outcome, g)
        finally:
            self._retraining = False

    def supernet_source(self, store: Metastore, task: str) -> SupernetSource | None:
        """The supernet of another task this search's supernet starts from (``--warm-start``;
        looked up once), None without a warm start or without one that fits."""
        if self._source is None:
            from workbench.nn.supernet import build_supernet

            found = None
            if self.spec.warm_start:
                splits = self.inner.splits
                net = build_supernet(self.space.macro, splits.input_shape, splits.n_classes)
                shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
                found = find_supernet_source(store, self.spec.warm_start, task, shapes, self.settings.method)
            self._source = (found,)
        return self._source[0]

    # -- the supernet run ---------------------------------------------------------------------
    def _finished(self, store: Metastore, runs: Sequence[TrialRecord], trainer: Any) -> Any:
        """The result of a finished supernet run of this search (resume), None without one."""
        for run in runs:
            if run.state != "finished":
                continue
            state = store.load_weights(run.trial_id)
            if state is None or trainer.compatible(state):
                continue
            result = trainer.run(resume=state)  # at its last epoch: restores, trains nothing
            self.supernet_seconds = float(run.metrics.get("supernet_seconds", 0.0))
            self.supernet_id = run.trial_id
            return result
        return None

    def _checkpoint(self, store: Metastore, runs: Sequence[TrialRecord], trainer: Any) -> tuple[Any, str | None]:
        """The latest usable checkpoint of an interrupted supernet run, and that run's id."""
        for run in sorted(runs, key=lambda r: r.number, reverse=True):
            state = store.load_weights(run.trial_id)
            if state is not None and not trainer.compatible(state):
                return state, run.trial_id
        return None, None

    def _train(self, search: Any, runs: Sequence[TrialRecord], trainer: Any) -> Any:
        """Train the supernet in a new supernet run (continuing an interrupted one's checkpoint)."""
        from workbench.execute.trial import heartbeat_value

        store: Metastore = search.store
        method = self.settings.method
        state, previous = self._checkpoint(store, runs, trainer)
        tags = {
            TAG_SUPERNET: method,
            TAG_FIDELITY: json.dumps({"full": False, "supernet": method, "cost": 0.0}, sort_keys=True),
            TAG_HEARTBEAT: heartbeat_value(),
        }
        if previous is not None:
            tags[TAG_RESUMED_FROM] = previous
        source = self.supernet_source(store, search.task.name) if state is None else None
        if source is not None:  # a fresh supernet: start it from another task's
            trainer.init = source.supernet
            trainer.init_alpha = source.alpha
            tags[TAG_WARM_SUPERNET] = f"{source.task}:{source.run_id}"
        descriptor = Genotype.of(self.space.name, {"supernet": method, "macro": self.space.macro})
        params = {f"supernet.{k}": v for k, v in self.settings.to_dict().items()}
        run_id = store.start_trial(
            search.search_id, descriptor.to_json(), f"supernet:{method}", params=params, tags=tags
        )
        self.supernet_id = run_id
        if previous is not None:
            store.set_tags(
                run_id, {note_tag("resumed"): f"continued from epoch {int(state['epoch'])} of run {previous}"}
            )
        if source is not None:
            store.set_tags(run_id, {note_tag("warm"): source.describe()})
        history: list[OpWeights] = []

        def on_epoch(epoch: int, point: Mapping[str, float], weights: OpWeights | None, checkpoint: Any) -> None:
            metrics = {f"{SUPERNET_METRIC}{k}": float(v) for k, v in point.items()}
            if weights is not None:
                history.append(weights)
                for edge, row in weights.to_dict().items():
                    metrics.update({op_weight_metric(edge, op): p for op, p in row.items()})
            store.log_metric_steps(run_id, [(epoch, metrics)])
            store.save_weights(run_id, checkpoint())
            store.set_tags(run_id, {TAG_HEARTBEAT: heartbeat_value()})
            search.progress.epoch(-1, epoch, {"val_accuracy": point.get("val_accuracy", float("nan"))})

        try:
            result = trainer.run(on_epoch=on_epoch, resume=state)
        except BaseException as exc:
            reason = "interrupted by the user" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
            try:
                store.finish_trial(run_id, state="failed", reason=reason[:500])
            except StoreError:
                pass
            raise
        self.supernet_seconds = result.seconds
        final = {f"{SUPERNET_METRIC}{k}": float(v) for k, v in (result.curve[-1] if result.curve else {}).items()}
        final.update({"supernet_seconds": result.seconds, "supernet_epochs": float(result.epochs)})
        if result.op_weights is not None:
            self._log_weights(store, search.search_id, run_id, result)
        store.finish_trial(run_id, state="finished", metrics=final)
        return result

    def _log_weights(self, store: Metastore, search_id: str, run_id: str, result: Any) -> None:
        """The derived cell (tag), the op weights of every epoch (JSON) and their plot."""
        from workbench.oneshot.derive import derive
        from workbench.oneshot.plot import plot_op_weights

        derived = derive(self.space, result.op_weights)
        folder = Path(tempfile.mkdtemp(prefix="nasw-oneshot-"))
        history = [w.to_dict() for w in result.history]
        (folder / OP_WEIGHTS_ARTIFACT).write_text(
            json.dumps({"epochs": history, "final": result.op_weights.to_dict(), "derived": derived.value}, indent=1)
        )
        try:
            store.set_tags(run_id, {TAG_DERIVED: derived.to_json()[:5000]})
            store.log_file(run_id, str(folder / OP_WEIGHTS_ARTIFACT))
            title = f"{self.settings.method} op weights (derived: {self.space.describe(derived)})"
            png = plot_op_weights(result.history, title=title, path=str(folder / OP_WEIGHTS_PLOT))
            if png is not None:
                store.log_file(run_id, png)
                store.log_file(search_id, png)
        except (StoreError, OSError, ValueError):
            pass  # a plot must never fail a search
