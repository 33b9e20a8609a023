"""Recorded trials as a search reads them back: the strategy's view (observations), the fidelity
they were measured at, and whether a resumed search may use them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from metastore import TrialRecord
from metastore.schema import (
    REASON_INTERRUPTED,
    TAG_FIDELITY,
    TAG_MORPHISMS,
    TAG_ORIGIN,
    TAG_STOPPED_EARLY,
    fidelity_record,
)
from workbench.errors import InvalidGenotype
from workbench.space.base import SearchSpace
from workbench.space.edits import steps_from_json
from workbench.space.genotype import Genotype
from workbench.strategy.base import Observation, Proposal

#: The start of a failed trial's reason when a resumed search could not use it.
UNUSABLE = "not used on resume: "
#: The start of the reason of a trial an interruption stopped (Ctrl-C, SIGTERM, a killed search
#: whose trial was left running; :mod:`workbench.execute.signals`, :meth:`Search.replay`).
INTERRUPTED = REASON_INTERRUPTED


def is_interrupted(record: TrialRecord) -> bool:
    """True for a trial an interruption stopped (failed with an ``interrupted...`` reason): it
    does not count against the budget, and a resumed search re-runs its architecture."""
    return record.state == "failed" and (record.reason or "").startswith(INTERRUPTED)


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


def fidelity_of(record: TrialRecord) -> dict[str, Any]:
    """The fidelity a recorded trial was measured at (its ``nasw.fidelity`` tag; ``{}`` when it
    has none: recorded before fidelities existed, so at the task's full fidelity)."""
    rec = fidelity_record(record.tags.get(TAG_FIDELITY))
    if record.tags.get(TAG_STOPPED_EARLY):
        rec = {**rec, "full": False, "stopped": record.tags[TAG_STOPPED_EARLY]}
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


def observed_value(state: str, metrics: Mapping[str, float], objective: str, stopped: bool) -> float | None:
    """The objective a strategy is told: None unless the trial finished with a finite value; the
    predicted final value for a trial stopped early."""
    value = metrics.get(objective) if state == "finished" else None
    if value is not None and not math.isfinite(value):
        return None
    if value is not None and stopped:
        value = stopped_value(metrics, value)
    return value


def observation_of(record: TrialRecord, objective: str, space: SearchSpace) -> Observation | None:
    """The strategy's view of a recorded trial; None if its genotype does not validate."""
    try:
        g = Genotype.from_json(record.genotype_json)
        space.validate(g)
    except InvalidGenotype:
        return None
    fidelity = fidelity_of(record)
    value = observed_value(record.state, record.metrics, objective, bool(fidelity.get("stopped")))
    return Observation(
        genotype=g, value=value, objectives=dict(record.metrics), trial_id=record.trial_id, fidelity=fidelity
    )


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


def rerun_proposal(record: TrialRecord, space: SearchSpace) -> Proposal | None:
    """The proposal an interrupted trial was, to run it again: its genotype, the trial it
    inherits from, the morphism steps (none when unreadable: then it trains from scratch or
    inherits unchanged weights) and its origin; None when its genotype does not validate in
    ``space`` (a store is data: such a trial is not re-run)."""
    try:
        g = Genotype.from_json(record.genotype_json)
        space.validate(g)
    except InvalidGenotype:
        return None
    try:
        steps = steps_from_json(record.tags.get(TAG_MORPHISMS))
    except (InvalidGenotype, ValueError, TypeError, KeyError):
        steps = ()
    return Proposal(
        g,
        parent_trial=record.parent_trial,
        morphisms=steps,
        origin=record.tags.get(TAG_ORIGIN, ""),
    )
