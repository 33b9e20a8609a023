"""The MLflow metastore: experiment = task, parent run = search, child run = trial.

Only :class:`mlflow.tracking.MlflowClient` is used (never the fluent ``mlflow.start_run`` state),
so several stores can live in one process. mlflow is imported when a store is opened, never at
package import.

Store URIs (:mod:`metastore.mlflow_setup`): ``sqlite:///runs/mlflow.db`` (a SQLite file; the
artifacts live in ``artifacts/<task>/<run id>/artifacts`` next to it, each experiment being
created with a ``file://`` artifact location there), ``http(s)://host:port`` (an ``mlflow
server``), or a folder (``<folder>/mlflow.db``).

Modules: this one holds the :class:`~metastore.base.Metastore` contract on MLflow;
:mod:`metastore.mlflow_runs` the client layer under it (experiments, runs, artifacts, error
mapping); :mod:`metastore.sqlite_reader` the read-only SQLite fast path; :mod:`metastore.schema`
every tag and artifact name.

Layout (tag names in :mod:`metastore.schema`):
    * Experiment (one per task), tagged ``mlflow.experimentKind=custom_model_development`` so
      the MLflow 3 UI opens on the runs table rather than the GenAI traces view.
    * Search run, named as the search was (``digits·evolution·population=20·b30·3f2a9c``; ``{id}``
      in a name is the start of the run id), else ``{strategy}-{task}-s{seed}``: tags ``nasw.kind=search``,
      ``nasw.strategy``, ``nasw.space``, ``nasw.seed``, ``nasw.objective``, ``nasw.state``,
      ``nasw.spec`` (the spec JSON, when under 8000 characters), ``nasw.meta.<name>`` (one per
      meta-feature), ``mlflow.runColor`` (its colour in the UI's charts) and the user's tags;
      params: the scalar leaves of the spec (dotted keys, values cut to 500 characters);
      artifacts ``spec.json`` and ``meta_features.json``; the ``progress/*`` step series (step =
      trial number, :meth:`MlflowStore.log_search_steps`) and the summary as metrics.
    * Trial run, named ``t{number:02d} {label}`` (the short genotype; ``trial-{number}`` without
      one): tags ``mlflow.parentRunId`` (nests it under its search
      in the UI), ``nasw.kind=trial``, ``nasw.search``, ``nasw.number`` (0-based start order),
      ``nasw.genotype_key``, ``nasw.genotype`` (the genotype JSON, when under 8000 characters),
      ``nasw.state``, ``nasw.parent_trial``, ``nasw.reason``; params: the given params;
      artifacts ``genotype.json`` and ``weights/model.pt``; metrics per epoch with ``step``
      and the final metrics, logged at the last step with a later timestamp so that they are
      the run's latest values. MLflow status FINISHED or FAILED follows ``nasw.state``.

Reading history fast: for SQLite stores :meth:`MlflowStore.histories` (also the trial counts,
the trial numbering and the "still running?" check before logging metrics) reads MLflow's tables
directly, read-only (:mod:`metastore.sqlite_reader`: 10,000 trials in 0.2 to 0.5 s). Server
stores, or a database whose layout is not as expected, go through the MLflow client instead
(about 10 s for 10,000 trials). :meth:`MlflowStore.trials` always uses the client (about 1 s per
1,000 trials).

Artifacts read back (``genotype.json``, ``spec.json``, weights) are opened only when they are
regular files inside the artifact folder, never through a link, within a size bound, and JSON
ones only when they parse to the expected shape (:mod:`metastore.artifacts`); anything else
reads as absent, with one warning per artifact.

Errors: unknown ids raise :class:`~metastore.errors.NotFound`; every other MLflow, database or
connection failure becomes a one-line :class:`~metastore.errors.StoreError` (see
:mod:`metastore.mlflow_runs`; a server that does not answer gives up after about 10 s: set
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``_BACKOFF_FACTOR`` / ``_TIMEOUT`` to wait longer).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from metastore import _common as c
from metastore import schema
from metastore.artifacts import WEIGHTS_LIMIT, open_regular
from metastore.base import Metastore
from metastore.errors import NotFound, StoreError
from metastore.mlflow_runs import MlflowRuns, one_line, run_number
from metastore.records import FAILED, FINISHED, RUNNING, SearchRecord, TaskHistory, TrialRecord
from metastore.sqlite_reader import SqliteReader

_log = logging.getLogger(__name__)

_MLFLOW_STATUS = {RUNNING: "RUNNING", FINISHED: "FINISHED", FAILED: "FAILED", c.KILLED: "KILLED"}


class MlflowStore(MlflowRuns, Metastore):
    """The metastore on an MLflow tracking store (SQLite file or ``mlflow server``).

    Trial numbers are handed out by the process that starts the trials (the first one of a
    search in this process continues after the largest number already stored), so one process
    drives a search at a time; any number of processes may record different searches at once.

    Args:
        uri: A store URI (see :mod:`metastore.mlflow_setup`).
        mode: ``create`` (the default), ``write`` or ``read``: see :class:`MlflowRuns`.

    Raises:
        StoreError: The URI is malformed or the store cannot be opened for ``mode``.
    """

    def __init__(self, uri: str, *, mode: str = "create") -> None:
        super().__init__(uri, mode=mode)
        self._next_number: dict[str, int] = {}
        self._sqlite = None if self._db_path is None else SqliteReader(self._db_path)

    def __repr__(self) -> str:
        return f"MlflowStore({self.uri!r})"

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
        """Create the search's parent run (and the task's experiment if needed); return its id."""
        user = c.check_user_tags(tags)
        experiment_id = self._experiment_id(task, create=True)
        assert experiment_id is not None
        spec_text = c.spec_json(spec)
        meta = {str(k): float(v) for k, v in (meta_features or {}).items()}
        run_tags = {
            schema.TAG_KIND: schema.KIND_SEARCH,
            schema.TAG_STRATEGY: str(strategy),
            schema.TAG_SPACE: str(space),
            schema.TAG_SEED: str(int(seed)),
            schema.TAG_OBJECTIVE: str(objective),
            schema.TAG_STATE: RUNNING,
            **c.meta_tags(meta),
            **user,
        }
        if len(spec_text) <= c.MAX_TAG_VALUE:
            run_tags[schema.TAG_SPEC] = spec_text
        run = self._call(
            "start a search",
            self._client.create_run,
            experiment_id,
            start_time=self._now_ms(),
            tags=run_tags,
            run_name=c.truncate(str(name).replace(schema.NAME_ID, ""), 250)
            if name
            else f"{strategy}-{task}-s{int(seed)}",
        )
        search_id = run.info.run_id
        if name and schema.NAME_ID in str(name):
            final = c.truncate(schema.search_name(str(name), search_id), 250)
            self._call("name the search", self._client.update_run, search_id, name=final)
        with self._lock:
            self._search_experiment[search_id] = experiment_id
            self._next_number[search_id] = 0
        self._log_batch(
            search_id,
            params=c.param_items(c.flat_scalars(spec)),
            tags={schema.MLFLOW_RUN_COLOR_TAG: self._new_color(experiment_id, search_id)},
        )
        self._call("log spec.json", self._client.log_text, search_id, spec_text, schema.SPEC_ARTIFACT)
        self._call("log meta_features.json", self._client.log_text, search_id, c.spec_json(meta), schema.META_ARTIFACT)
        return search_id

    def _new_color(self, experiment_id: str, search_id: str) -> str:
        """A colour for a new search in the UI's charts: one the task's latest searches do not have."""
        page = self._call(
            "search runs",
            self._client.search_runs,
            [experiment_id],
            filter_string=f"tags.`{schema.TAG_KIND}` = '{schema.KIND_SEARCH}'",
            max_results=len(schema.RUN_COLORS),
            order_by=["attributes.start_time DESC"],
        )
        used = [r.data.tags.get(schema.MLFLOW_RUN_COLOR_TAG) for r in page if r.info.run_id != search_id]
        free = [color for color in schema.RUN_COLORS if color not in used]
        return free[0] if free else schema.RUN_COLORS[len(page) % len(schema.RUN_COLORS)]

    def finish_search(
        self, search_id: str, *, state: str = FINISHED, summary: Mapping[str, float] | None = None
    ) -> None:
        """Log the summary metrics and end the parent run as ``finished``, ``failed`` or ``killed``.

        A resumed search may end again; MLflow's run status follows (FINISHED, FAILED, KILLED).
        """
        from mlflow.entities import Metric

        c.check_end_state(state, "search", c.SEARCH_END_STATES)
        values = c.float_metrics(summary)
        self._search_run(search_id)
        now = self._now_ms()
        self._log_batch(
            search_id,
            metrics=[Metric(k, v, now, 0) for k, v in values.items()],
            tags={schema.TAG_STATE: state},
        )
        self._call("end the search", self._client.set_terminated, search_id, status=_MLFLOW_STATUS[state], end_time=now)

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
        """Create a RUNNING child run under the search, named ``t<number> <label>``; return its id."""
        user = c.check_user_tags(tags)
        experiment_id = self._experiment_of_search(search_id)
        number = self._take_number(search_id)
        genotype_json = str(genotype_json)
        run_tags = {
            schema.MLFLOW_PARENT_RUN_TAG: search_id,
            schema.TAG_KIND: schema.KIND_TRIAL,
            schema.TAG_SEARCH: search_id,
            schema.TAG_NUMBER: str(number),
            schema.TAG_GENOTYPE_KEY: str(genotype_key),
            schema.TAG_STATE: RUNNING,
            **user,
        }
        if parent_trial:
            run_tags[schema.TAG_PARENT_TRIAL] = str(parent_trial)
        if len(genotype_json) <= c.MAX_TAG_VALUE:
            run_tags[schema.TAG_GENOTYPE] = genotype_json
        run = self._call(
            "start a trial",
            self._client.create_run,
            experiment_id,
            start_time=self._now_ms(),
            tags=run_tags,
            run_name=trial_run_name(number, label),
        )
        trial_id = run.info.run_id
        self._log_batch(trial_id, params=c.param_items(params))
        self._call("log genotype.json", self._client.log_text, trial_id, genotype_json, schema.GENOTYPE_ARTIFACT)
        return trial_id

    def log_metrics(self, trial_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics of a running trial at ``step`` (0 when None).

        Raises:
            NotFound: Unknown trial.
            StoreError: The trial has ended (finished trials are immutable).
        """
        from mlflow.entities import Metric

        values = c.float_metrics(metrics)
        self._check_running(trial_id)
        now = self._now_ms()
        self._log_batch(trial_id, metrics=[Metric(k, v, now, int(step or 0)) for k, v in values.items()])

    def log_metric_steps(self, trial_id: str, points: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        """Log several steps of a running trial's metrics in one batch (one state check, one write).

        Raises:
            NotFound: Unknown trial.
            StoreError: The trial has ended.
        """
        from mlflow.entities import Metric

        if not points:
            return
        self._check_running(trial_id)
        now = self._now_ms()
        self._log_batch(
            trial_id,
            metrics=[
                Metric(k, v, now, int(step or 0))
                for step, metrics in points
                for k, v in c.float_metrics(metrics).items()
            ],
        )

    def log_search_steps(self, search_id: str, points: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        """Log a search's step series (its progress per trial) on the parent run in one batch."""
        from mlflow.entities import Metric

        if not points:
            return
        self._experiment_of_search(search_id)  # unknown ids raise NotFound (cached after the first)
        now = self._now_ms()
        metrics = [Metric(k, v, now, int(step)) for step, values in points for k, v in c.float_metrics(values).items()]
        self._log_batch(search_id, metrics=metrics)

    def finish_trial(
        self,
        trial_id: str,
        *,
        state: str,
        metrics: Mapping[str, float] | None = None,
        reason: str | None = None,
    ) -> None:
        """End a running trial as ``finished`` or ``failed``.

        The final metrics are logged at the trial's last step with a timestamp after every
        earlier point, so MLflow reports them as the run's (latest) metrics.

        Raises:
            NotFound: Unknown trial.
            StoreError: The trial has already ended, or ``state`` is not an end state.
        """
        from mlflow.entities import Metric

        c.check_end_state(state, "trial")
        values = c.float_metrics(metrics)
        run = self._running_trial_run(trial_id)
        points = list(getattr(run.data, "_metric_objs", None) or [])
        step = max((m.step for m in points), default=0)
        now = max([self._now_ms()] + [m.timestamp + 1 for m in points])
        run_tags = {schema.TAG_STATE: state}
        if reason is not None:
            run_tags[schema.TAG_REASON] = c.truncate(str(reason), c.MAX_TAG_VALUE)
        self._log_batch(trial_id, metrics=[Metric(k, v, now, step) for k, v in values.items()], tags=run_tags)
        self._call("end the trial", self._client.set_terminated, trial_id, status=_MLFLOW_STATUS[state], end_time=now)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set free tags on a search or a trial (``nasw.*`` names the store uses are refused)."""
        values = c.check_user_tags(tags)
        self._check_id(run_id)
        if values:
            self._log_batch(run_id, tags=values)

    def update_spec(self, search_id: str, changes: Mapping[str, Any]) -> None:
        """Replace top-level entries of a search's spec: the ``nasw.spec`` tag (when the spec
        fits in one) and ``spec.json`` are rewritten; the params logged at the start keep their
        first values (MLflow params are immutable)."""
        run = self._search_run(search_id)
        spec = self._search_record(run, 0).spec
        spec.update({str(k): v for k, v in changes.items()})
        text = c.spec_json(spec)
        if len(text) <= c.MAX_TAG_VALUE:
            self._log_batch(search_id, tags={schema.TAG_SPEC: text})
        elif schema.TAG_SPEC in run.data.tags:  # the old spec must not be read back instead
            self._call("update the spec", self._client.delete_tag, search_id, schema.TAG_SPEC)
        self._call("log spec.json", self._client.log_text, search_id, text, schema.SPEC_ARTIFACT)

    def log_file(self, run_id: str, path: str, artifact_dir: str | None = None) -> None:
        """Attach a local file to a search or trial as an artifact (in ``artifact_dir``)."""
        if not os.path.isfile(path):
            raise StoreError(f"cannot attach {path}: no such file")
        self._check_id(run_id)
        self._call("log an artifact", self._client.log_artifact, run_id, path, artifact_dir)

    def save_weights(self, trial_id: str, state_dict: Mapping[str, Any]) -> None:
        """``torch.save`` the state dict and log it as the trial's artifact ``weights/model.pt``."""
        import torch

        self._trial_run(trial_id)
        with tempfile.TemporaryDirectory(prefix="nasw-weights-") as tmp:
            path = os.path.join(tmp, schema.WEIGHTS_FILE)
            torch.save(dict(state_dict), path)
            self._call("save weights", self._client.log_artifact, trial_id, path, schema.WEIGHTS_DIR)

    def load_weights(self, trial_id: str) -> dict[str, Any] | None:
        """Load ``weights/model.pt`` with ``torch.load(weights_only=True)`` onto the CPU.

        Returns:
            The state dict, or None when the trial has no weights or they cannot be read (a
            corrupt or malicious file is never unpickled beyond what ``weights_only`` allows; a
            link, a file that is not regular or lies outside the artifact folder, or one over
            :data:`metastore.artifacts.WEIGHTS_LIMIT` is never opened).

        Raises:
            NotFound: Unknown trial.
        """
        import torch

        run = self._trial_run(trial_id)
        relative = f"{schema.WEIGHTS_DIR}/{schema.WEIGHTS_FILE}"
        with tempfile.TemporaryDirectory(prefix="nasw-weights-") as tmp:
            found = self._artifact_location(run.info.run_id, run.info.artifact_uri, relative, tmp)
            if found is None:
                return None
            try:
                with open_regular(found[0], found[1], WEIGHTS_LIMIT) as fh:
                    return torch.load(fh, weights_only=True, map_location="cpu")
            except FileNotFoundError:
                return None
            except Exception as exc:  # noqa: BLE001 - any unreadable file means "no weights"
                _log.warning("weights of trial %s are unreadable (%s); ignoring them", trial_id, one_line(exc))
                return None

    # -- reading -------------------------------------------------------------------------
    def search(self, search_id: str) -> SearchRecord:
        """One search by full id."""
        run = self._search_run(search_id)
        return self._search_record(run, self._trial_counts([search_id]).get(search_id, 0))

    def searches(self, task: str | None = None) -> list[SearchRecord]:
        """All searches (of one task), newest first."""
        if task is None:
            experiment_ids = self._experiment_ids()
        else:
            experiment_id = self._experiment_id(task, create=False)
            experiment_ids = [] if experiment_id is None else [experiment_id]
        if not experiment_ids:
            return []
        runs = self._search_runs(
            experiment_ids,
            f"tags.`{schema.TAG_KIND}` = '{schema.KIND_SEARCH}'",
            order_by=["attributes.start_time DESC"],
        )
        counts = self._trial_counts([r.info.run_id for r in runs])
        return [self._search_record(r, counts.get(r.info.run_id, 0)) for r in runs]

    def trials(self, search_id: str) -> list[TrialRecord]:
        """A search's trials in start order."""
        experiment_id = self._experiment_of_search(search_id)
        runs = self._child_runs(experiment_id, search_id)
        runs.sort(key=run_number)
        return [self._trial_record(r) for r in runs]

    def trial(self, trial_id: str) -> TrialRecord:
        """One trial by full id."""
        return self._trial_record(self._trial_run(trial_id))

    def histories(
        self, space: str, metric: str, exclude_task: str | None = None, *, full_fidelity_only: bool = True
    ) -> dict[str, TaskHistory]:
        """Finished trials with a non-NaN ``metric`` of every search in ``space``, by task.

        Trials are ordered by search start, then trial number; a task's meta-features are
        those of its newest search that recorded them. SQLite stores are read directly with
        :mod:`sqlite3` (about 0.1 s for 10,000 trials); server stores through the client.
        Trials whose ``nasw.fidelity`` tag says ``"full": false`` (lower rungs, stopped early)
        are left out unless ``full_fidelity_only`` is False.
        """
        if self._sqlite is not None:
            try:
                return self._sqlite.histories(space, metric, exclude_task, full_fidelity_only, self._stored_genotype)
            except sqlite3.Error as exc:
                self._sqlite_failed(exc)
        return self._histories_client(space, metric, exclude_task, full_fidelity_only)

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """Every ``(step, value)`` point of one metric of a trial or search, in step order.

        Raises:
            NotFound: Unknown run.
        """
        self._check_id(run_id)
        self._call(f"find run {run_id!r}", self._client.get_run, run_id)  # unknown ids raise NotFound
        points = self._call("read a metric history", self._client.get_metric_history, run_id, key)
        points = sorted(points, key=lambda m: (m.step, m.timestamp))
        return [(int(m.step), float(m.value)) for m in points]

    def _check_running(self, trial_id: str) -> None:
        """Like :meth:`_running_trial_run`, but a SQLite store answers with one cheap query.

        Raises:
            NotFound: Unknown trial.
            StoreError: The trial has ended.
        """
        if self._sqlite is None:
            self._running_trial_run(trial_id)
            return
        self._check_id(trial_id, schema.KIND_TRIAL)
        try:
            row = self._sqlite.trial_state(trial_id)
        except sqlite3.Error as exc:
            self._sqlite_failed(exc)
            self._running_trial_run(trial_id)
            return
        if row is None or row[0] != schema.KIND_TRIAL or row[2] != "active":
            raise NotFound(f"no trial with id {trial_id!r} in {self.uri}")
        state = row[1] or RUNNING
        if state != RUNNING:
            raise StoreError(f"trial {trial_id} is {state}; finished trials are immutable")

    def _take_number(self, search_id: str) -> int:
        """The next trial number of a search (continuing after the stored ones)."""
        with self._lock:
            if search_id not in self._next_number:
                self._next_number[search_id] = self._stored_max_number(search_id) + 1
            number = self._next_number[search_id]
            self._next_number[search_id] = number + 1
            return number

    # -- counting and history: direct SQLite reads with a client fallback -----------------
    def _sqlite_failed(self, exc: sqlite3.Error) -> None:
        _log.warning("reading %s directly failed (%s); using the MLflow client", self.uri, exc)

    def _stored_genotype(self, trial_id: str, artifact_uri: str) -> str:
        """A trial's ``genotype.json`` (for genotypes too long for their tag); "" when unreadable."""
        return self._artifact_text_of(trial_id, artifact_uri, schema.GENOTYPE_ARTIFACT) or ""

    def _trial_counts(self, search_ids: list[str]) -> dict[str, int]:
        """Number of trials of each search."""
        if not search_ids:
            return {}
        if self._sqlite is not None:
            try:
                wanted = set(search_ids)
                return {sid: n for sid, n in self._sqlite.trial_counts().items() if sid in wanted}
            except sqlite3.Error as exc:
                self._sqlite_failed(exc)
        out: dict[str, int] = {}
        for search_id in search_ids:
            out[search_id] = len(self._child_runs(self._experiment_of_search(search_id), search_id))
        return out

    def _stored_max_number(self, search_id: str) -> int:
        """The largest trial number stored for a search (-1 when it has none)."""
        if self._sqlite is not None:
            try:
                return self._sqlite.max_number(search_id)
            except sqlite3.Error as exc:
                self._sqlite_failed(exc)
        runs = self._child_runs(self._experiment_of_search(search_id), search_id)
        return max((run_number(r) for r in runs), default=-1)

    def _histories_client(
        self, space: str, metric: str, exclude_task: str | None, full_fidelity_only: bool = True
    ) -> dict[str, TaskHistory]:
        experiment_ids = self._experiment_ids()
        if not experiment_ids:
            return {}
        searches = [
            r
            for r in self._search_runs(experiment_ids, f"tags.`{schema.TAG_KIND}` = '{schema.KIND_SEARCH}'")
            if r.data.tags.get(schema.TAG_SPACE) == space
        ]
        search_task: dict[str, str] = {}
        search_order: dict[str, tuple[int, str]] = {}
        meta_by_search: dict[str, dict[str, str]] = {}
        rows = []
        for run in searches:
            task = self._task_of(run.info.experiment_id)
            if task == exclude_task:
                continue
            search_id = run.info.run_id
            search_task[search_id] = task
            search_order[search_id] = (run.info.start_time or 0, search_id)
            meta_by_search[search_id] = {k: v for k, v in run.data.tags.items() if k.startswith(schema.TAG_META_PREFIX)}
            finished = f" and tags.`{schema.TAG_STATE}` = '{FINISHED}'"
            for trial in self._child_runs(run.info.experiment_id, search_id, finished):
                value = trial.data.metrics.get(metric)
                if value is None or not c.is_number(value):
                    continue
                fidelity = trial.data.tags.get(schema.TAG_FIDELITY)
                if full_fidelity_only and not schema.is_full_fidelity(fidelity):
                    continue
                genotype = trial.data.tags.get(schema.TAG_GENOTYPE)
                if genotype is None:
                    genotype = self._artifact_text(trial, schema.GENOTYPE_ARTIFACT) or ""
                rows.append(
                    (
                        search_order[search_id],
                        run_number(trial),
                        task,
                        trial.info.run_id,
                        genotype,
                        value,
                        schema.fidelity_record(fidelity),
                    )
                )
        rows.sort(key=lambda r: (r[0], r[1]))
        return c.group_histories(rows, search_task, search_order, meta_by_search)


def trial_run_name(number: int, label: str | None) -> str:
    """A trial's MLflow run name: ``t03 conv5x64>dense64`` (the label cut to keep it readable in
    the UI's runs table), ``trial-3`` without a label."""
    if not label:
        return f"trial-{number}"
    text = " ".join(str(label).split())
    if len(text) > schema.TRIAL_LABEL_CHARS:
        text = text[: schema.TRIAL_LABEL_CHARS - 1].rstrip() + "…"
    return f"t{number:02d} {text}"
