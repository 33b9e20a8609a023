"""Run one recorded trial: inherit weights, evaluate, write metrics and weights, finish the run.

The same function runs in the search process (in-process executor) and in workers (process
pool, Ray), which open the store by URI and rebuild the task's evaluator once per process.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from metastore import Metastore
from metastore.schema import (
    NOTE_WEIGHTS,
    NOTE_WEIGHTS_SAVED,
    RULE_DECISION,
    RULE_DETAILS,
    TAG_FIDELITY,
    TAG_HEARTBEAT,
    TAG_STOPPED_EARLY,
    fidelity_record,
    note_tag,
    rule_tag,
)
from workbench.errors import InvalidGenotype, StoreError, TrialFailed
from workbench.evaluate.base import Evaluator
from workbench.execute.limits import hard_limit_for, time_limit
from workbench.execute.signals import interruption_reason
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype


@dataclass(frozen=True)
class TrialJob:
    """Everything a worker needs to run one trial that the search already started in the store.

    Attributes:
        search_id: The search (parent run).
        trial_id: The trial (child run), already RUNNING in the store.
        number: Order of the trial in its search.
        genotype_json: ``Genotype.to_json()``.
        seed: Training seed.
        objective: Metric that must come back finite.
        parent_trial: Trial whose weights the child inherits, if any.
        morphisms: JSON list of morphism steps from the parent's genotype to this one.
        fidelity: JSON of the :class:`~workbench.evaluate.fidelity.Fidelity` to evaluate at
            ("": the evaluator's full fidelity).
        stop_early: JSON of an early-stopping rule
            (:class:`~workbench.evaluate.curves.LCStopRule`; "": none).
    """

    search_id: str
    trial_id: str
    number: int
    genotype_json: str
    seed: int
    objective: str
    parent_trial: str | None = None
    morphisms: str = "[]"
    fidelity: str = ""
    stop_early: str = ""


@dataclass(frozen=True)
class TrialOutcome:
    """What a trial ended with (the store already holds the same).

    ``curve`` is the objective per epoch (when the evaluator reports it); ``stopped`` names the
    rule that stopped the trial early (``"lc"``), if one did.
    """

    trial_id: str
    number: int
    state: str
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    seconds: float = 0.0
    curve: tuple[float, ...] = ()
    stopped: str | None = None


def heartbeat_value() -> str:
    """``host:pid:unix-time`` of the current process."""
    return f"{socket.gethostname()}:{os.getpid()}:{time.time():.0f}"


def heartbeat_is_dead(value: str | None, stale_after: float) -> bool:
    """True when the process that wrote ``value`` is gone (same host, pid not alive) or silent."""
    if not value:
        return True
    try:
        host, pid, stamp = value.rsplit(":", 2)
        pid_i, stamp_f = int(pid), float(stamp)
    except ValueError:
        return True
    if host == socket.gethostname():
        if pid_i == os.getpid():
            return True
        try:
            os.kill(pid_i, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    return time.time() - stamp_f > stale_after


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:500]


InheritFn = Callable[[Metastore, TrialJob, Genotype, Evaluator], "tuple[Mapping[str, Any] | None, dict[str, str]]"]


def default_inherit(
    store: Metastore, job: TrialJob, genotype: Genotype, evaluator: Evaluator | None = None
) -> tuple[Mapping[str, Any] | None, dict[str, str]]:
    """Weights to start from: the parent's, unchanged (no morphism steps). Returns (state, notes).

    :func:`workbench.execute.inherit.inherit_weights` also follows morphism steps and carries weights
    across tasks (it needs the ``evaluator`` for the task's input shape and classes).
    """
    if not job.parent_trial:
        return None, {}
    state = store.load_weights(job.parent_trial)
    if state is None:
        return None, {NOTE_WEIGHTS: f"parent {job.parent_trial} weights missing or unreadable; trained from scratch"}
    return state, {}


#: Per-epoch metrics are written in batches at most this often while a trial trains (one store
#: write per epoch costs 10-20 ms on SQLite: a 5% overhead on 0.3-second epochs), and always
#: before the trial ends. The MLflow UI's live curves lag by at most this much.
FLUSH_SECONDS = 2.0


def execute_trial(
    store: Metastore,
    evaluator: Evaluator,
    space: SearchSpace,
    job: TrialJob,
    on_epoch: Callable[[int, Mapping[str, float]], None] | None = None,
    save_weights: bool = True,
    inherit: InheritFn | None = None,
) -> TrialOutcome:
    """Evaluate a started trial and record the result; failures are recorded, never raised.

    ``KeyboardInterrupt`` (Ctrl-C, or :class:`~workbench.execute.signals.Terminated`) marks the
    trial failed with the reason and propagates.
    """
    start = time.perf_counter()
    try:
        store.set_tags(job.trial_id, {TAG_HEARTBEAT: heartbeat_value()})
    except StoreError:
        pass
    last_beat = [time.monotonic()]
    values: list[float] = []
    last_point: dict[str, float] = {}
    rule = _stop_rule(job)

    pending: list[tuple[int, dict[str, float]]] = []  # epochs not written yet
    last_flush = [time.monotonic()]

    def flush() -> None:
        """Write the buffered epochs (at most every FLUSH_SECONDS while training, and at the end)."""
        if pending:
            points = list(pending)
            pending.clear()
            store.log_metric_steps(job.trial_id, points)
        last_flush[0] = time.monotonic()

    def epoch_cb(epoch: int, metrics: Mapping[str, float]) -> None:
        pending.append((epoch, dict(metrics)))
        if time.monotonic() - last_flush[0] >= FLUSH_SECONDS:
            flush()
        if time.monotonic() - last_beat[0] > 5.0:
            last_beat[0] = time.monotonic()
            store.set_tags(job.trial_id, {TAG_HEARTBEAT: heartbeat_value()})
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        last_point.clear()
        last_point.update(metrics)
        if job.objective in metrics:
            values.append(float(metrics[job.objective]))
            if rule is not None:
                decision = rule.check(values)
                if decision.stop:
                    from workbench.evaluate.base import StopTraining

                    raise StopTraining("lc", decision.reason, decision.details())

    def fail(reason: str) -> TrialOutcome:
        try:
            flush()  # the epochs a failed trial got are kept
        except StoreError:
            pass
        store.finish_trial(job.trial_id, state="failed", reason=reason)
        return TrialOutcome(job.trial_id, job.number, "failed", reason=reason, seconds=time.perf_counter() - start)

    try:
        g = Genotype.from_json(job.genotype_json)
        space.validate(g)
        init_state, notes = (inherit or default_inherit)(store, job, g, evaluator) if space.trainable else (None, {})
        extra = {}
        if job.fidelity:
            from workbench.evaluate.fidelity import Fidelity

            extra["fidelity"] = Fidelity.from_json(job.fidelity)
        with time_limit(hard_limit_for(evaluator, g), what=f"trial {job.number}"):
            result = evaluator.evaluate(g, seed=job.seed, init_state=init_state, on_epoch=epoch_cb, **extra)
        value = result.metrics.get(job.objective)
        if value is None or not math.isfinite(value):
            raise TrialFailed(f"objective {job.objective!r} missing or not finite")
    except TrialFailed as exc:
        return fail(exc.reason)
    except InvalidGenotype as exc:
        return fail(f"invalid genotype: {exc}")
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP (workbench.execute.signals)
        fail(interruption_reason(exc))
        raise
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - a crashing trial (OOM, a user's loader) ends failed
        from workbench.evaluate.base import EvalResult, StopTraining

        if not isinstance(exc, StopTraining) or job.objective not in last_point:
            return fail(_reason(exc))
        # an evaluator that does not end training itself: finish with the last epoch's metrics
        result = EvalResult(metrics=dict(last_point), stopped=exc)
    flush()
    notes = {**notes, **result.notes}
    stop = result.stopped
    if stop is not None:
        _record_stop(store, job, stop, len(values))
    if save_weights and result.state_dict is not None and space.trainable:
        try:
            store.save_weights(job.trial_id, result.state_dict)
        except (StoreError, OSError) as exc:
            notes[NOTE_WEIGHTS_SAVED] = f"not saved: {_reason(exc)}"
    if notes:
        store.set_tags(job.trial_id, {note_tag(k): str(v)[:5000] for k, v in notes.items()})
    metrics = {k: float(v) for k, v in result.metrics.items()}
    if stop is not None:
        metrics.update({k: float(v) for k, v in stop.details.items()})
    store.finish_trial(job.trial_id, state="finished", metrics=metrics)
    return TrialOutcome(
        job.trial_id,
        job.number,
        "finished",
        metrics,
        seconds=time.perf_counter() - start,
        curve=tuple(values),
        stopped=None if stop is None else stop.rule,
    )


def _stop_rule(job: TrialJob) -> Any:
    """The job's early-stopping rule, or None."""
    if not job.stop_early:
        return None
    from workbench.evaluate.curves import LCStopRule

    return LCStopRule.from_json(job.stop_early)


def _record_stop(store: Metastore, job: TrialJob, stop: Any, epochs: int) -> None:
    """Tags of a trial stopped early: the rule, its reason and numbers, and its fidelity as
    trained (the epochs it got; not full, so warm-start histories leave it out)."""
    from workbench.evaluate.fidelity import stopped_record

    rule = _stop_rule(job)
    planned = fidelity_record(job.fidelity)
    record = stopped_record(planned, max(1, epochs), getattr(rule, "target_epoch", None), stop.rule)
    tags = {
        TAG_STOPPED_EARLY: stop.rule,
        TAG_FIDELITY: json.dumps(record, sort_keys=True),
        rule_tag(stop.rule, RULE_DECISION): stop.reason[:5000],
        rule_tag(stop.rule, RULE_DETAILS): json.dumps(stop.details, sort_keys=True),
    }
    try:
        store.set_tags(job.trial_id, tags)
    except StoreError:
        pass


def morphisms_json(steps: Any) -> str:
    """JSON text of a proposal's morphism steps (dataclasses or dicts)."""
    out = []
    for s in steps or ():
        if hasattr(s, "to_dict"):  # MorphismStep: {"op", "site", "params": {...}}
            out.append(s.to_dict())
        elif hasattr(s, "__dataclass_fields__"):
            from dataclasses import asdict

            out.append(asdict(s))
        else:
            out.append(s)
    return json.dumps(out, default=str)
