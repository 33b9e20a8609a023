"""The on-disk schema of a store: every tag, param and artifact name nasw writes, in one place.

A new tag is added here and nowhere else (``tests/test_schema.py`` fails on a ``"nasw.`` literal
in any other module). Pure constants and parsers: no MLflow, importable from every layer.

Search runs (MLflow parent runs):
    ``nasw.kind=search``, ``nasw.strategy``, ``nasw.space``, ``nasw.seed``, ``nasw.objective``,
    ``nasw.state``, ``nasw.spec`` (the spec JSON, when it fits in a tag; always ``spec.json``),
    ``nasw.meta.<name>`` (meta-features); the step series ``progress/*`` (step = trial number:
    best so far, each trial's objective and seconds, see PROGRESS_*); warm starts add ``nasw.warm_start`` (mode),
    ``source_weights`` (JSON ``task -> weight`` at the start, then ``task -> [weight after each
    trial]``) and ``nasw.source_weights_by``; multi-objective searches ``nasw.pareto_size`` and
    the ``pareto_front.json`` artifact; ``nasw.note.<what>`` notes.
Trial runs (children of their search):
    ``nasw.kind=trial``, ``nasw.search``, ``nasw.number``, ``nasw.genotype_key``,
    ``nasw.genotype`` (when it fits; always ``genotype.json``), ``nasw.state``,
    ``nasw.parent_trial``, ``nasw.reason``, ``nasw.fidelity`` (JSON record, see
    :func:`fidelity_record`), ``nasw.morphisms`` (JSON steps from the parent),
    ``nasw.promoted_from``, ``nasw.stopped_early`` (the rule) with ``nasw.<rule>.decision`` and
    ``nasw.<rule>.details`` (:func:`rule_tag`), ``nasw.heartbeat``
    (``host:pid:time`` while running), ``nasw.rerun_of`` (the interrupted trial a resumed search
    re-ran), ``nasw.note.<what>`` notes; weights under ``weights/``;
    a trial scored by a one-shot estimator has ``nasw.estimator`` (and a ``nasw.fidelity`` with
    ``"full": false``).
Supernet runs (children of a one-shot search, not trials of its loop):
    ``nasw.supernet`` (the method), ``nasw.resumed_from``, ``nasw.derived``, ``nasw.heartbeat``;
    the checkpoint (weights, op logits, optimizer states) under ``weights/``; ``op_weights.json``
    and ``op_weights.png``.
"""

from __future__ import annotations

import json
from typing import Any

PREFIX = "nasw."

# -- managed by the store itself (callers may not set them) ------------------------------------
TAG_KIND = "nasw.kind"  # "search" or "trial"
TAG_STRATEGY = "nasw.strategy"
TAG_SPACE = "nasw.space"
TAG_SEED = "nasw.seed"
TAG_OBJECTIVE = "nasw.objective"
TAG_STATE = "nasw.state"  # running / finished / failed, on searches and trials
TAG_SPEC = "nasw.spec"  # full spec JSON when it fits in a tag (else only spec.json)
TAG_META_PREFIX = "nasw.meta."  # one tag per meta-feature: nasw.meta.<name> = repr(float)
TAG_SEARCH = "nasw.search"
TAG_NUMBER = "nasw.number"
TAG_GENOTYPE = "nasw.genotype"  # genotype JSON when it fits in a tag (always in genotype.json)
TAG_GENOTYPE_KEY = "nasw.genotype_key"
TAG_PARENT_TRIAL = "nasw.parent_trial"
TAG_REASON = "nasw.reason"

KIND_SEARCH = "search"
KIND_TRIAL = "trial"

RESERVED_TAGS = frozenset(
    {
        TAG_KIND,
        TAG_STRATEGY,
        TAG_SPACE,
        TAG_SEED,
        TAG_OBJECTIVE,
        TAG_STATE,
        TAG_SPEC,
        TAG_SEARCH,
        TAG_NUMBER,
        TAG_GENOTYPE,
        TAG_GENOTYPE_KEY,
        TAG_PARENT_TRIAL,
        TAG_REASON,
    }
)

# -- written by the workbench through Metastore.set_tags / start_trial(tags=...) ---------------
TAG_FIDELITY = "nasw.fidelity"  # JSON: the fidelity a trial was measured at, with "full": true/false
TAG_MORPHISMS = "nasw.morphisms"  # JSON: the morphism steps from the parent trial
TAG_ORIGIN = "nasw.origin"  # where the trial's proposal came from (prior, transfer, random, model, ...)
TAG_PROMOTED_FROM = "nasw.promoted_from"  # a scheduler's promotion that retrains from scratch
TAG_STOPPED_EARLY = "nasw.stopped_early"  # the rule that stopped the trial ("lc")
TAG_HEARTBEAT = "nasw.heartbeat"  # host:pid:time, refreshed while a trial runs
TAG_RERUN_OF = "nasw.rerun_of"  # on a trial: the interrupted trial it re-runs (resume; same architecture)
TAG_WARM_START = "nasw.warm_start"  # the warm-start mode of a search (auto / tasks)
TAG_SOURCE_WEIGHTS = "source_weights"  # JSON: task -> weight, then task -> [weight after each trial]
TAG_SOURCE_WEIGHTS_BY = "nasw.source_weights_by"  # who weighed the sources
TAG_PARETO_SIZE = "nasw.pareto_size"  # size of a multi-objective search's Pareto front
TAG_NOTE_PREFIX = "nasw.note."  # free-text notes: nasw.note.<what>
# one-shot searches (workbench/search/oneshot.py): the supernet run (a child run of the search that
# is no trial of the loop), the trials a supernet scored, and what a supernet run continued from
TAG_SUPERNET = "nasw.supernet"  # on a supernet run: its training method (spos, darts, gdas)
TAG_ESTIMATOR = "nasw.estimator"  # on a trial scored, not trained: the estimator (oneshot, oneshot+bn)
TAG_RESUMED_FROM = "nasw.resumed_from"  # on a supernet run: the interrupted run whose checkpoint it continued
TAG_DERIVED = "nasw.derived"  # on a DARTS / GDAS supernet run: the derived cell's genotype JSON
TAG_WARM_SUPERNET = "nasw.warm_supernet"  # on a supernet run: ``task:run id`` of the supernet it started from

# note names (nasw.note.<name>)
NOTE_WEIGHTS = "weights"  # why a trial could not inherit its parent's weights
NOTE_INHERITED = "inherited"  # how a trial's weights started
NOTE_TRANSFER = "transfer"  # what a cross-task inheritance kept and freshly initialised
NOTE_WEIGHTS_SAVED = "weights_saved"  # why a trial's weights could not be saved
NOTE_OOM = "oom"  # a trial retried with a smaller batch after running out of memory
NOTE_UNUSABLE_TRIALS = "unusable_trials"  # trials a resumed search could not use


def note_tag(name: str) -> str:
    """The tag of note ``name``: ``nasw.note.<name>``."""
    return TAG_NOTE_PREFIX + name


# what an early-stopping rule recorded on the trial it stopped: nasw.<rule>.decision / .details
RULE_DECISION = "decision"  # the rule's reason, as text
RULE_DETAILS = "details"  # the rule's numbers, as JSON


def rule_tag(rule: str, what: str) -> str:
    """The tag of an early-stopping rule's record ``what`` (:data:`RULE_DECISION` or
    :data:`RULE_DETAILS`): ``nasw.<rule>.<what>``, e.g. ``nasw.lc.decision``."""
    return f"{PREFIX}{rule}.{what}"


# -- MLflow's own tags, as nasw sets them (the MLflow backend only) ---------------------------
MLFLOW_PREFIX = "mlflow."  # MLflow's system tags; callers may not set them either
MLFLOW_PARENT_RUN_TAG = "mlflow.parentRunId"  # on a trial: its search (nests it in the UI)
MLFLOW_EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # on a task's experiment
MLFLOW_RUN_COLOR_TAG = "mlflow.runColor"  # on a search: its colour in the UI's charts (RUN_COLORS)
#: Colours of searches in the UI's charts (picked by the search's id), distinct side by side.
RUN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
MLFLOW_EXPERIMENT_KIND = "custom_model_development"  # the MLflow 3 UI opens on the runs table


# -- artifacts ----------------------------------------------------------------------------------
SPEC_ARTIFACT = "spec.json"
META_ARTIFACT = "meta_features.json"
GENOTYPE_ARTIFACT = "genotype.json"
PARETO_ARTIFACT = "pareto_front.json"
OP_WEIGHTS_ARTIFACT = "op_weights.json"  # a DARTS / GDAS supernet run: op weights per edge, every epoch
OP_WEIGHTS_PLOT = "op_weights.png"  # ... and their evolution as a plot (also on the search run)
WEIGHTS_DIR = "weights"
WEIGHTS_FILE = "model.pt"

# -- metrics ------------------------------------------------------------------------------------
# A search's progress, logged on its parent run with step = trial number (Metastore.log_search_steps),
# so that the MLflow UI charts several searches' progress side by side (its "progress" section).
PROGRESS_PREFIX = "progress/"
PROGRESS_BEST = "progress/best_objective"  # best objective so far (full-fidelity trials first)
PROGRESS_OBJECTIVE = "progress/trial_objective"  # this trial's objective (absent for a failed trial)
PROGRESS_SECONDS = "progress/trial_seconds"  # this trial's training seconds
PROGRESS_TOTAL_SECONDS = "progress/total_seconds"  # training seconds of the search so far
PROGRESS_COMPUTE = "progress/compute"  # full-training equivalents so far (searches with fidelities)
PROGRESS_SOURCE_WEIGHT = "progress/source_weight/"  # + source task: a warm start's trust after this trial
TRIAL_LABEL_CHARS = 60  # a trial's run name: t<number> and at most this much of its short genotype

# -- params -------------------------------------------------------------------------------------
FIDELITY_PARAM_PREFIX = "fidelity."  # a trial's fidelity fields as params fidelity.<field>


# -- reasons ---------------------------------------------------------------------------------------
REASON_INTERRUPTED = "interrupted"  # how the reason of a trial an interruption stopped starts (re-run on resume)

# -- names ----------------------------------------------------------------------------------------
NAME_ID = "{id}"  # in a search's name: replaced by the start of its id (a prefix `nasw show` accepts)
NAME_ID_CHARS = 6


def search_name(name: str, search_id: str) -> str:
    """A search's run name: ``name`` with :data:`NAME_ID` replaced by the first
    :data:`NAME_ID_CHARS` characters of its id (``digits·evolution·population=20·3f2a9c``)."""
    return name.replace(NAME_ID, search_id[:NAME_ID_CHARS])


# -- parsers ------------------------------------------------------------------------------------
def fidelity_record(text: str | None) -> dict[str, Any]:
    """A trial's ``nasw.fidelity`` tag as a dict (``{}`` when missing or unreadable).

    Fields: the fidelity (``epochs``, ``data_fraction``, ``resolution``, ``width_mult``,
    ``start_epoch``), ``full`` (measured at the task's full fidelity), ``cost`` (relative to a
    full training), ``level``; under a scheduler ``rung``, ``bracket``, ``promoted_from``; for a
    trial stopped early ``planned_epochs`` and ``stopped``.
    """
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def is_full_fidelity(text: str | None) -> bool:
    """True for a trial measured at its task's full fidelity: no ``nasw.fidelity`` tag (recorded
    before fidelities existed) or one whose ``full`` is true (not a lower rung, not stopped early)."""
    record = fidelity_record(text)
    return not record or bool(record.get("full", True))
