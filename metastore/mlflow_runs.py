"""The MLflow client layer under :class:`~metastore.mlflow_store.MlflowStore`.

:class:`MlflowRuns` owns one :class:`mlflow.tracking.MlflowClient` (never the fluent
``mlflow.start_run`` state, so several stores can live in one process) and knows how nasw maps
onto MLflow: an experiment per task (tagged so the MLflow 3 UI opens on the runs table), runs of
a ``nasw.kind``, artifacts in local folders or served by a server, run objects read back as
:class:`~metastore.records.SearchRecord` / :class:`~metastore.records.TrialRecord`.

Errors: :meth:`MlflowRuns._call` wraps every client call. Unknown ids raise
:class:`~metastore.errors.NotFound`; every other MLflow, database or connection failure becomes
a one-line :class:`~metastore.errors.StoreError` (after a few retries with backoff when SQLite
reports "database is locked"). A server that does not answer is retried by MLflow itself first,
with nasw's defaults about 10 s in all (:data:`metastore.mlflow_setup.HTTP_DEFAULTS`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from metastore import _common as c
from metastore import schema
from metastore.artifacts import UnsafeArtifact, read_json_artifact
from metastore.errors import NotFound, StoreError
from metastore.mlflow_setup import (
    check_sqlite_store,
    creation_lock,
    http_defaults,
    local_folder,
    quiet_mlflow,
    resolve_location,
    write_problem,
)
from metastore.records import RUNNING, SearchRecord, TrialRecord

if TYPE_CHECKING:
    from mlflow.entities import Run

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

_RETRIES = 5
_FIRST_BACKOFF_S = 0.1
_PAGE = 50000  # MLflow's largest page for search_runs / search_experiments
_LOCKED = re.compile(r"database (table )?is locked", re.IGNORECASE)
_UNREACHABLE = re.compile(
    r"Max retries exceeded|NewConnectionError|Connection refused|ConnectTimeout|ReadTimeout|timed out|"
    r"Name or service not known|nodename nor servname|No route to host|RemoteDisconnected",
    re.IGNORECASE,
)
_RUN_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")  # what MLflow accepts as a run id


class MlflowRuns:
    """Runs, experiments and artifacts of one MLflow tracking store, through the client.

    Args:
        uri: A store URI (see :mod:`metastore.mlflow_setup`).
        mode: ``create`` (create a missing SQLite store; it must be writable), ``write`` (it
            must exist and be writable) or ``read`` (it must exist; the store writes nothing
            of its own while reading); see :func:`metastore.mlflow_setup.check_sqlite_store`.

    Attributes:
        writable: Whether writes can succeed (False for a SQLite store opened to read whose
            file or folders are not writable; True for a server store).

    Raises:
        StoreError: The URI is malformed or the store cannot be opened for ``mode``.
    """

    def __init__(self, uri: str, *, mode: str = "create") -> None:
        self.uri = uri
        location = resolve_location(uri)
        self._tracking_uri = location.tracking_uri
        self._db_path = location.db_path
        self._artifact_root = location.artifact_root
        self._mode = mode
        self._lock = threading.RLock()
        self._task_experiment: dict[str, str] = {}
        self._experiment_task: dict[str, str] = {}
        self._search_experiment: dict[str, str] = {}
        self._warned: set[tuple[str, str]] = set()
        self._last_ms = 0
        self.writable = True
        state = "ready"
        if self._db_path is not None:
            state = check_sqlite_store(self._db_path, mode)
            self.writable = write_problem(self._db_path) is None
        from mlflow.tracking import MlflowClient

        quiet_mlflow(server=self._db_path is None)  # after the import, which configures logging
        if self._db_path is None:
            http_defaults()

        with warnings.catch_warnings():
            # MLflow's SQLAlchemy models trigger deprecation warnings of SQLAlchemy when the
            # store is first created; they are MLflow's to fix and would spam every user.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(mlflow|sqlalchemy|alembic)\.")
            if self._db_path is None:
                lock = contextlib.nullcontext()
            else:  # a store that looks ready may still be being created by another process
                lock = creation_lock(self._db_path, create=state != "ready")
            with lock:
                self._client = self._call("open the store", MlflowClient, tracking_uri=self._tracking_uri)
                self._call("open the store", self._client.search_experiments, max_results=1)

    # -- MLflow calls --------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Call the MLflow client, mapping its failures onto the project's errors.

        Raises:
            NotFound: MLflow says the resource does not exist.
            StoreError: Any other MLflow, database or connection failure (SQLite lock errors
                are retried a few times with exponential backoff first).
        """
        from mlflow.exceptions import MlflowException

        delay = _FIRST_BACKOFF_S
        for attempt in range(_RETRIES):
            try:
                return fn(*args, **kwargs)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    raise NotFound(f"cannot {what} in {self.uri}: {one_line(exc)}") from None
                error: Exception = exc
            except (OSError, sqlite3.Error) as exc:
                error = exc
            except Exception as exc:
                if type(exc).__module__.split(".", 1)[0] not in ("sqlalchemy", "requests", "urllib3"):
                    raise
                error = exc
            if _LOCKED.search(str(error)) and attempt < _RETRIES - 1:
                time.sleep(delay)
                delay *= 2
                continue
            if self._db_path is None and _UNREACHABLE.search(str(error)):
                raise StoreError(
                    f"cannot {what} in {self.uri}: the MLflow server does not answer "
                    f"({_unreachable_why(str(error))}, gave up after "
                    f"{os.environ.get('MLFLOW_HTTP_REQUEST_MAX_RETRIES', '?')} retries); "
                    "is `mlflow server` running there?"
                ) from error
            raise StoreError(f"cannot {what} in {self.uri}: {one_line(error)}") from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _log_batch(
        self,
        run_id: str,
        *,
        metrics: list[Any] | None = None,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """``log_batch`` in chunks within MLflow's limits (100 params, 100 tags, 1000 entities)."""
        from mlflow.entities import Param, RunTag

        metric_list = list(metrics or [])
        param_list = [Param(k, v) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, v) for k, v in (tags or {}).items()]
        while metric_list or param_list or tag_list:
            m, metric_list = metric_list[:800], metric_list[800:]
            p, param_list = param_list[:100], param_list[100:]
            t, tag_list = tag_list[:100], tag_list[100:]
            self._call("log to a run", self._client.log_batch, run_id, metrics=m, params=p, tags=t)

    def _search_runs(
        self, experiment_ids: list[str], filter_string: str, order_by: list[str] | None = None
    ) -> list[Run]:
        """Every active run matching the filter, through all pages."""
        runs: list[Run] = []
        token: str | None = None
        while True:
            page = self._call(
                "search runs",
                self._client.search_runs,
                experiment_ids,
                filter_string=filter_string,
                max_results=_PAGE,
                order_by=order_by,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _child_runs(self, experiment_id: str, search_id: str, extra_filter: str = "") -> list[Run]:
        runs = self._search_runs(
            [experiment_id], f"tags.`{schema.MLFLOW_PARENT_RUN_TAG}` = '{search_id}'{extra_filter}"
        )
        return [r for r in runs if r.data.tags.get(schema.TAG_KIND) == schema.KIND_TRIAL]

    def _experiment_ids(self) -> list[str]:
        """Ids of every active experiment."""
        ids: list[str] = []
        token: str | None = None
        while True:
            page = self._call("list experiments", self._client.search_experiments, max_results=_PAGE, page_token=token)
            for experiment in page:
                ids.append(experiment.experiment_id)
                with self._lock:
                    self._experiment_task[experiment.experiment_id] = experiment.name
            token = page.token
            if not token:
                return ids

    def _experiment_id(self, task: str, *, create: bool) -> str | None:
        """The experiment of ``task``; created (with the experiment-kind tag) when asked."""
        with self._lock:
            if task in self._task_experiment:
                return self._task_experiment[task]
        experiment = self._call("look up an experiment", self._client.get_experiment_by_name, task)
        if experiment is None:
            if not create:
                return None
            experiment_id = self._create_experiment(task)
        else:
            if experiment.lifecycle_stage != "active":
                raise StoreError(
                    f"the experiment of task {task!r} is deleted in {self.uri}; restore it with "
                    f"`mlflow experiments restore --experiment-id {experiment.experiment_id}` or "
                    "remove it for good with `mlflow gc`"
                )
            experiment_id = experiment.experiment_id
            if schema.MLFLOW_EXPERIMENT_KIND_TAG not in experiment.tags and self._mode != "read":
                self._call(
                    "tag an experiment",
                    self._client.set_experiment_tag,
                    experiment_id,
                    schema.MLFLOW_EXPERIMENT_KIND_TAG,
                    schema.MLFLOW_EXPERIMENT_KIND,
                )
        with self._lock:
            self._task_experiment[task] = experiment_id
            self._experiment_task[experiment_id] = task
        return experiment_id

    def _create_experiment(self, task: str) -> str:
        kwargs: dict[str, Any] = {"tags": {schema.MLFLOW_EXPERIMENT_KIND_TAG: schema.MLFLOW_EXPERIMENT_KIND}}
        if self._artifact_root is not None:
            folder = re.sub(r"[^A-Za-z0-9_.-]", "_", task).strip(".") or "task"
            kwargs["artifact_location"] = Path(self._artifact_root, folder).as_uri()
        try:
            return self._call("create an experiment", self._client.create_experiment, task, **kwargs)
        except StoreError:
            # Another process may have created it a moment ago.
            experiment = self._call("look up an experiment", self._client.get_experiment_by_name, task)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _task_of(self, experiment_id: str) -> str:
        with self._lock:
            if experiment_id in self._experiment_task:
                return self._experiment_task[experiment_id]
        name = self._call("look up an experiment", self._client.get_experiment, experiment_id).name
        with self._lock:
            self._experiment_task[experiment_id] = name
        return name

    def _check_id(self, run_id: str, kind: str = "search or trial") -> None:
        """Refuse ids MLflow would reject as malformed, as unknown ids.

        Raises:
            NotFound: ``run_id`` cannot be the id of any run.
        """
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise NotFound(f"no {kind} with id {run_id!r} in {self.uri}")

    def _get_run(self, run_id: str, kind: str) -> Run:
        """An active run of the given ``nasw.kind``.

        Raises:
            NotFound: No such run, a deleted run, or a run of another kind.
        """
        self._check_id(run_id, kind)
        run = self._call(f"find {kind} {run_id!r}", self._client.get_run, run_id)
        if run.info.lifecycle_stage != "active" or run.data.tags.get(schema.TAG_KIND) != kind:
            raise NotFound(f"no {kind} with id {run_id!r} in {self.uri}")
        return run

    def _search_run(self, search_id: str) -> Run:
        run = self._get_run(search_id, schema.KIND_SEARCH)
        with self._lock:
            self._search_experiment[search_id] = run.info.experiment_id
        return run

    def _trial_run(self, trial_id: str) -> Run:
        return self._get_run(trial_id, schema.KIND_TRIAL)

    def _running_trial_run(self, trial_id: str) -> Run:
        run = self._trial_run(trial_id)
        state = run.data.tags.get(schema.TAG_STATE, RUNNING)
        if state != RUNNING:
            raise StoreError(f"trial {trial_id} is {state}; finished trials are immutable")
        return run

    def _experiment_of_search(self, search_id: str) -> str:
        with self._lock:
            if search_id in self._search_experiment:
                return self._search_experiment[search_id]
        return self._search_run(search_id).info.experiment_id

    def _now_ms(self) -> int:
        """Milliseconds since the epoch, strictly increasing within this store."""
        with self._lock:
            self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
            return self._last_ms

    # -- records -------------------------------------------------------------------------
    def _search_record(self, run: Run, n_trials: int) -> SearchRecord:
        tags = run.data.tags
        spec: dict[str, Any] = {}
        text = tags.get(schema.TAG_SPEC)
        if text is None:
            text = self._artifact_text(run, schema.SPEC_ARTIFACT)
        if text:
            try:
                spec = json.loads(text)
            except ValueError:
                _log.warning("spec of search %s is not valid JSON; ignoring it", run.info.run_id)
        try:
            seed = int(tags.get(schema.TAG_SEED, "0"))
        except ValueError:
            seed = 0
        return SearchRecord(
            search_id=run.info.run_id,
            task=self._task_of(run.info.experiment_id),
            strategy=tags.get(schema.TAG_STRATEGY, ""),
            space=tags.get(schema.TAG_SPACE, ""),
            seed=seed,
            objective=tags.get(schema.TAG_OBJECTIVE, ""),
            state=tags.get(schema.TAG_STATE, RUNNING),
            spec=spec,
            summary={k: v for k, v in run.data.metrics.items() if not k.startswith(schema.PROGRESS_PREFIX)},
            tags=c.user_tags(tags),
            n_trials=n_trials,
            start_time=(run.info.start_time or 0) / 1000.0,
            name=run.info.run_name or "",
        )

    def _trial_record(self, run: Run) -> TrialRecord:
        tags = run.data.tags
        genotype = tags.get(schema.TAG_GENOTYPE)
        if genotype is None:
            genotype = self._artifact_text(run, schema.GENOTYPE_ARTIFACT) or ""
        return TrialRecord(
            trial_id=run.info.run_id,
            search_id=tags.get(schema.MLFLOW_PARENT_RUN_TAG, tags.get(schema.TAG_SEARCH, "")),
            task=self._task_of(run.info.experiment_id),
            number=run_number(run),
            genotype_json=genotype,
            genotype_key=tags.get(schema.TAG_GENOTYPE_KEY, ""),
            state=tags.get(schema.TAG_STATE, RUNNING),
            metrics=dict(run.data.metrics),
            params=dict(run.data.params),
            parent_trial=tags.get(schema.TAG_PARENT_TRIAL),
            reason=tags.get(schema.TAG_REASON),
            tags=c.user_tags(tags),
            start_time=(run.info.start_time or 0) / 1000.0,
            end_time=None if run.info.end_time is None else run.info.end_time / 1000.0,
        )

    # -- artifacts -----------------------------------------------------------------------
    def _artifact_location(self, run_id: str, artifact_uri: str, relative: str, tmp: str) -> tuple[str, str] | None:
        """``(path, root)`` of one artifact of a run as a local file, or None when it is absent.

        A local artifact folder is read in place, and ``root`` is the store's artifact folder
        (SQLite stores) or the run's own folder (a server that records local paths); a served
        artifact is downloaded into ``tmp``, which is then the root. The file is not opened
        here: :mod:`metastore.artifacts` checks it (a regular file inside ``root``, no link,
        bounded) when it is read.
        """
        local = local_folder(artifact_uri)
        if local is not None:
            return os.path.join(local, *relative.split("/")), self._artifact_root or local
        try:
            return self._client.download_artifacts(run_id, relative, tmp), tmp
        except Exception as exc:  # noqa: BLE001 - a missing or unreachable artifact reads as absent
            _log.debug("artifact %s of run %s not available: %s", relative, run_id, one_line(exc))
            return None

    def _artifact_text(self, run: Run, relative: str) -> str | None:
        return self._artifact_text_of(run.info.run_id, run.info.artifact_uri, relative)

    def _artifact_text_of(self, run_id: str, artifact_uri: str, relative: str) -> str | None:
        """A JSON artifact's text, checked (:func:`metastore.artifacts.read_json_artifact`);
        None when it is absent or refused (a warning says why)."""
        with tempfile.TemporaryDirectory(prefix="nasw-artifact-") as tmp:
            found = self._artifact_location(run_id, artifact_uri, relative, tmp)
            if found is None:
                return None
            try:
                return read_json_artifact(found[0], found[1], relative.rsplit("/", 1)[-1])
            except FileNotFoundError:
                return None
            except (UnsafeArtifact, OSError) as exc:
                if (run_id, relative) not in self._warned:  # once per artifact, not per read
                    self._warned.add((run_id, relative))
                    _log.warning("artifact %s of run %s is not read: %s", relative, run_id, exc)
                return None


def run_number(run: Run) -> int:
    """A run's ``nasw.number`` (0 when missing or unreadable)."""
    try:
        return int(run.data.tags.get(schema.TAG_NUMBER, "0"))
    except ValueError:
        return 0


def _unreachable_why(text: str) -> str:
    """A few words on why a server did not answer, from a requests/urllib3 error message."""
    lowered = text.lower()
    for needle, why in (
        ("connection refused", "connection refused"),
        ("failed to establish", "connection refused"),
        ("name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("no route to host", "no route to host"),
        ("timed out", "timed out"),
        ("timeout", "timed out"),
        ("remotedisconnected", "the server closed the connection"),
    ):
        if needle in lowered:
            return why
    return "no connection"


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, at most 300 characters."""
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0]
    return line if len(line) <= 300 else line[:297] + "..."
