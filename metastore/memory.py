"""An in-memory metastore for tests: the full contract, nothing written to disk.

``memory://`` opens a fresh, private store; ``memory://NAME`` opens the store of that name
shared by everyone in this process (so a store "reopened" from the same URI sees everything).
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metastore import _common as c
from metastore import schema
from metastore.base import Metastore
from metastore.errors import NotFound, StoreError
from metastore.records import FINISHED, RUNNING, SearchRecord, TaskHistory, TrialRecord

_log = logging.getLogger(__name__)


@dataclass
class _Search:
    search_id: str
    task: str
    strategy: str
    space: str
    seed: int
    objective: str
    spec: dict[str, Any]
    meta_features: dict[str, float]
    tags: dict[str, str]
    start_time: float
    seq: int = 0
    state: str = RUNNING
    summary: dict[str, float] = field(default_factory=dict)
    trial_ids: list[str] = field(default_factory=list)
    name: str = ""
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


@dataclass
class _Trial:
    trial_id: str
    search_id: str
    number: int
    genotype_json: str
    genotype_key: str
    params: dict[str, str]
    parent_trial: str | None
    tags: dict[str, str]
    start_time: float
    state: str = RUNNING
    reason: str | None = None
    end_time: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


@dataclass
class _State:
    """Everything one memory store holds (shared by stores opened with the same name)."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    searches: dict[str, _Search] = field(default_factory=dict)
    trials: dict[str, _Trial] = field(default_factory=dict)
    artifacts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    counter: itertools.count = field(default_factory=itertools.count)


_NAMED: dict[str, _State] = {}
_NAMED_LOCK = threading.Lock()


class MemoryStore(Metastore):
    """The metastore contract held in Python dicts (ids are random 32-hex strings like MLflow's).

    Args:
        uri: ``memory://`` (private) or ``memory://NAME`` (shared within the process).
    """

    def __init__(self, uri: str = "memory://") -> None:
        if not uri.startswith("memory://"):
            raise StoreError(f"a memory store URI starts with 'memory://'; got {uri!r}")
        self.uri = uri
        name = uri[len("memory://") :]
        if not name:
            self._state = _State()
        else:
            with _NAMED_LOCK:
                self._state = _NAMED.setdefault(name, _State())

    # -- writing -------------------------------------------------------------------------
    def start_search(
        self,
        task: str,
        *,
        strategy: str,
        space: str,
        seed: int,
        objective: str,
        spec: Mapping[str, Any] | None = None,
        meta_features: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> str:
        """Create a search; return its id."""
        search_id = uuid.uuid4().hex
        record = _Search(
            search_id=search_id,
            task=str(task),
            strategy=str(strategy),
            space=str(space),
            seed=int(seed),
            objective=str(objective),
            spec=dict(spec or {}),
            meta_features={str(k): float(v) for k, v in (meta_features or {}).items()},
            tags=c.check_user_tags(tags),
            start_time=time.time(),
            name=schema.search_name(str(name), search_id) if name else f"{strategy}-{task}-s{int(seed)}",
        )
        with self._state.lock:
            record.seq = next(self._state.counter)
            self._state.searches[record.search_id] = record
            self._state.artifacts[record.search_id] = {
                schema.SPEC_ARTIFACT: c.spec_json(record.spec).encode(),
                schema.META_ARTIFACT: c.spec_json(record.meta_features).encode(),
            }
        return record.search_id

    def update_spec(self, search_id: str, changes: Mapping[str, Any]) -> None:
        """Replace top-level entries of a search's spec (and its ``spec.json``)."""
        with self._state.lock:
            record = self._search(search_id)
            record.spec.update({str(k): v for k, v in changes.items()})
            self._state.artifacts.setdefault(search_id, {})[schema.SPEC_ARTIFACT] = c.spec_json(record.spec).encode()

    def finish_search(
        self, search_id: str, *, state: str = FINISHED, summary: Mapping[str, float] | None = None
    ) -> None:
        """Record the summary metrics and end the search as ``finished``, ``failed`` or ``killed``.

        A resumed search may end again.
        """
        c.check_end_state(state, "search", c.SEARCH_END_STATES)
        values = c.float_metrics(summary)
        with self._state.lock:
            record = self._search(search_id)
            record.summary.update(values)
            record.state = state

    def start_trial(
        self,
        search_id: str,
        genotype_json: str,
        genotype_key: str,
        *,
        params: Mapping[str, Any] | None = None,
        parent_trial: str | None = None,
        tags: Mapping[str, str] | None = None,
        label: str | None = None,
    ) -> str:
        """Create a running trial numbered after the search's last one; return its id (``label``:
        its readable name after the number, which this store does not keep)."""
        user = c.check_user_tags(tags)
        with self._state.lock:
            search = self._search(search_id)
            trial = _Trial(
                trial_id=uuid.uuid4().hex,
                search_id=search_id,
                number=len(search.trial_ids),
                genotype_json=str(genotype_json),
                genotype_key=str(genotype_key),
                params=c.param_items(params),
                parent_trial=parent_trial,
                tags=user,
                start_time=time.time(),
            )
            search.trial_ids.append(trial.trial_id)
            self._state.trials[trial.trial_id] = trial
            self._state.artifacts[trial.trial_id] = {schema.GENOTYPE_ARTIFACT: trial.genotype_json.encode()}
        return trial.trial_id

    def log_metrics(self, trial_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics of a running trial.

        Raises:
            NotFound: Unknown trial.
            StoreError: The trial has ended.
        """
        values = c.float_metrics(metrics)
        with self._state.lock:
            trial = self._running(trial_id)
            for key, value in values.items():
                trial.history.setdefault(key, []).append((int(step or 0), value))
                trial.metrics[key] = value

    def log_search_steps(self, search_id: str, points) -> None:
        """Keep a search's step series (read back by :meth:`metric_history`)."""
        with self._state.lock:
            search = self._search(search_id)
            for step, metrics in points:
                for key, value in c.float_metrics(metrics).items():
                    search.history.setdefault(key, []).append((int(step), value))

    def finish_trial(
        self,
        trial_id: str,
        *,
        state: str,
        metrics: Mapping[str, float] | None = None,
        reason: str | None = None,
    ) -> None:
        """End a running trial; its final metrics win over the per-epoch ones.

        Raises:
            NotFound: Unknown trial.
            StoreError: The trial has already ended, or ``state`` is not an end state.
        """
        c.check_end_state(state, "trial")
        values = c.float_metrics(metrics)
        with self._state.lock:
            trial = self._running(trial_id)
            trial.metrics.update(values)
            trial.state = state
            trial.reason = None if reason is None else str(reason)
            trial.end_time = time.time()

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set free tags on a search or a trial."""
        values = c.check_user_tags(tags)
        with self._state.lock:
            self._run_tags(run_id).update(values)

    def log_file(self, run_id: str, path: str, artifact_dir: str | None = None) -> None:
        """Keep a copy of a local file's bytes as an artifact of a search or trial."""
        with self._state.lock:
            self._run_tags(run_id)  # raises NotFound
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise StoreError(f"cannot read artifact file {path}: {exc.strerror or exc}") from None
        name = os.path.basename(path)
        key = f"{artifact_dir.strip('/')}/{name}" if artifact_dir else name
        with self._state.lock:
            self._state.artifacts.setdefault(run_id, {})[key] = data

    def save_weights(self, trial_id: str, state_dict: Mapping[str, Any]) -> None:
        """Keep ``torch.save(state_dict)`` bytes as the trial's ``weights/model.pt``."""
        import torch

        with self._state.lock:
            self._trial(trial_id)
        buffer = io.BytesIO()
        torch.save(dict(state_dict), buffer)
        with self._state.lock:
            self._state.artifacts.setdefault(trial_id, {})[_weights_key()] = buffer.getvalue()

    def load_weights(self, trial_id: str) -> dict[str, Any] | None:
        """``torch.load(weights_only=True)`` of the saved bytes; None when missing or corrupt."""
        with self._state.lock:
            self._trial(trial_id)
            data = self._state.artifacts.get(trial_id, {}).get(_weights_key())
        if data is None:
            return None
        import torch

        try:
            return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - any unreadable file means "no weights"
            _log.warning("weights of trial %s are unreadable (%s); ignoring them", trial_id, exc)
            return None

    # -- reading -------------------------------------------------------------------------
    def search(self, search_id: str) -> SearchRecord:
        """One search by full id."""
        with self._state.lock:
            return self._search_record(self._search(search_id))

    def searches(self, task: str | None = None) -> list[SearchRecord]:
        """All searches (of one task), newest first."""
        with self._state.lock:
            rows = [s for s in self._state.searches.values() if task is None or s.task == task]
            rows.sort(key=lambda s: s.seq, reverse=True)
            return [self._search_record(s) for s in rows]

    def trials(self, search_id: str) -> list[TrialRecord]:
        """A search's trials in start order."""
        with self._state.lock:
            search = self._search(search_id)
            return [self._trial_record(self._state.trials[t]) for t in search.trial_ids]

    def trial(self, trial_id: str) -> TrialRecord:
        """One trial by full id."""
        with self._state.lock:
            return self._trial_record(self._trial(trial_id))

    def histories(
        self, space: str, metric: str, exclude_task: str | None = None, *, full_fidelity_only: bool = True
    ) -> dict[str, TaskHistory]:
        """Finished trials with a non-NaN ``metric`` of every search in ``space``, by task
        (only those at full fidelity unless ``full_fidelity_only`` is False)."""
        with self._state.lock:
            rows = sorted(
                (s for s in self._state.searches.values() if s.space == space and s.task != exclude_task),
                key=lambda s: s.seq,
            )
            grouped: dict[str, tuple[list[str], list[float], dict[str, float], list[str], list[dict]]] = {}
            for search in rows:
                genotypes, values, meta, ids, fids = grouped.setdefault(search.task, ([], [], {}, [], []))
                meta.update(search.meta_features)  # newest search wins
                for trial_id in search.trial_ids:
                    trial = self._state.trials[trial_id]
                    value = trial.metrics.get(metric)
                    if trial.state != FINISHED or value is None or not c.is_number(value):
                        continue
                    fidelity = trial.tags.get(schema.TAG_FIDELITY)
                    if full_fidelity_only and not schema.is_full_fidelity(fidelity):
                        continue
                    genotypes.append(trial.genotype_json)
                    values.append(value)
                    ids.append(trial_id)
                    fids.append(schema.fidelity_record(fidelity))
        return {
            task: TaskHistory(task, g, np.asarray(v, dtype=np.float64), m, i, f)
            for task, (g, v, m, i, f) in grouped.items()
            if i
        }

    def metric_history(self, trial_id: str, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` pairs logged for one metric of a trial or search, in step order."""
        with self._state.lock:
            if trial_id in self._state.searches:
                return sorted(self._state.searches[trial_id].history.get(key, []), key=lambda p: p[0])
            return list(self._trial(trial_id).history.get(key, []))

    # -- internals -----------------------------------------------------------------------
    def _search(self, search_id: str) -> _Search:
        try:
            return self._state.searches[search_id]
        except KeyError:
            raise NotFound(f"no search with id {search_id!r} in {self.uri}") from None

    def _trial(self, trial_id: str) -> _Trial:
        try:
            return self._state.trials[trial_id]
        except KeyError:
            raise NotFound(f"no trial with id {trial_id!r} in {self.uri}") from None

    def _running(self, trial_id: str) -> _Trial:
        trial = self._trial(trial_id)
        if trial.state != RUNNING:
            raise StoreError(f"trial {trial_id} is {trial.state}; finished trials are immutable")
        return trial

    def _run_tags(self, run_id: str) -> dict[str, str]:
        if run_id in self._state.searches:
            return self._state.searches[run_id].tags
        if run_id in self._state.trials:
            return self._state.trials[run_id].tags
        raise NotFound(f"no search or trial with id {run_id!r} in {self.uri}")

    def _search_record(self, s: _Search) -> SearchRecord:
        return SearchRecord(
            search_id=s.search_id,
            task=s.task,
            strategy=s.strategy,
            space=s.space,
            seed=s.seed,
            objective=s.objective,
            state=s.state,
            spec=dict(s.spec),
            summary=dict(s.summary),
            tags=dict(s.tags),
            n_trials=len(s.trial_ids),
            start_time=s.start_time,
            name=s.name,
        )

    def _trial_record(self, t: _Trial) -> TrialRecord:
        return TrialRecord(
            trial_id=t.trial_id,
            search_id=t.search_id,
            task=self._state.searches[t.search_id].task,
            number=t.number,
            genotype_json=t.genotype_json,
            genotype_key=t.genotype_key,
            state=t.state,
            metrics=dict(t.metrics),
            params=dict(t.params),
            parent_trial=t.parent_trial,
            reason=t.reason,
            tags=dict(t.tags),
            start_time=t.start_time,
            end_time=t.end_time,
        )


def _weights_key() -> str:
    return f"{schema.WEIGHTS_DIR}/{schema.WEIGHTS_FILE}"
