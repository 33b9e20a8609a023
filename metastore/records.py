"""Plain records the metastore reads and writes. Genotypes travel as JSON text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
TRIAL_STATES = (RUNNING, FINISHED, FAILED)


@dataclass(frozen=True)
class SearchRecord:
    """One search (an MLflow parent run).

    Attributes:
        search_id: The MLflow run id of the parent run.
        task: Task name (the MLflow experiment).
        strategy: Strategy name.
        space: Versioned space name of its genotypes.
        seed: The search seed.
        objective: Metric the search maximises (e.g. ``val_accuracy``).
        state: ``running``, ``finished`` or ``failed``.
        spec: The full run spec (budget, options, task settings) as JSON-able dict.
        summary: Final summary metrics (best value, best test accuracy, ...).
        tags: Free string tags (warm-start sources, ...).
        n_trials: Number of trials recorded so far.
        start_time: Seconds since the epoch.
        name: Its readable name (the MLflow run name; ``""`` when unknown).
    """

    search_id: str
    task: str
    strategy: str
    space: str
    seed: int
    objective: str
    state: str
    spec: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    n_trials: int = 0
    start_time: float = 0.0
    name: str = ""


@dataclass(frozen=True)
class TrialRecord:
    """One trial (an MLflow child run).

    Attributes:
        trial_id: The MLflow run id of the child run.
        search_id: Its search.
        task: Task name.
        number: 0-based order of the trial within its search.
        genotype_json: ``Genotype.to_json()`` text.
        genotype_key: Canonical key of the genotype.
        state: ``running``, ``finished`` or ``failed``.
        metrics: Final metrics (``val_accuracy``, ``test_accuracy``, ``train_seconds``, ...).
        params: The genotype's fields and training settings as logged.
        parent_trial: Trial whose weights this one inherited, if any.
        reason: Why it failed, if it did.
        tags: Free string tags (lineage steps, fidelity, ...).
        start_time: Seconds since the epoch.
        end_time: Seconds since the epoch, or None while running.
    """

    trial_id: str
    search_id: str
    task: str
    number: int
    genotype_json: str
    genotype_key: str
    state: str
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    parent_trial: str | None = None
    reason: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    start_time: float = 0.0
    end_time: float | None = None


@dataclass(frozen=True)
class TaskHistory:
    """Every finished trial of one task in one space, ready for models.

    Attributes:
        task: Task name.
        genotype_jsons: `n` genotype JSON texts.
        values: `n` objective values (float64).
        meta_features: The task's meta-features as recorded on its searches.
        trial_ids: `n` trial ids.
        fidelities: `n` fidelity records (the ``nasw.fidelity`` tag as a dict: ``epochs``,
            ``data_fraction``, ``resolution``, ``width_mult``, ``full``, ...; ``{}`` for trials
            recorded without one, i.e. at full fidelity).
    """

    task: str
    genotype_jsons: list[str]
    values: np.ndarray
    meta_features: dict[str, float] = field(default_factory=dict)
    trial_ids: list[str] = field(default_factory=list)
    fidelities: list[dict[str, Any]] = field(default_factory=list)
