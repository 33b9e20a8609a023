"""The MLflow metastore: experiment = task, parent run = search, child run = trial.

Only :class:`mlflow.tracking.MlflowClient` is used (never the fluent ``mlflow.start_run`` state),
so several stores can live in one process. mlflow is imported when a store is opened, never at
package import.

Store URIs:
    * ``sqlite:///runs/mlflow.db``: a SQLite file relative to the current directory (resolved to
      an absolute path when the store is opened; the folder is created).
    * ``sqlite:////abs/path/mlflow.db``: a SQLite file by absolute path.
    * ``http://host:port`` / ``https://...``: an ``mlflow server`` (artifacts as it serves them).
    * ``path/to/folder``: the same as ``sqlite:///path/to/folder/mlflow.db``; a path ending in
      ``.db`` names the SQLite file itself.

For SQLite stores the artifacts live in ``artifacts/<task>/<run id>/artifacts`` next to the
database file (each experiment is created with a ``file://`` artifact location there).

Layout (tag names in :mod:`metastore._common`):
    * Experiment (one per task), tagged ``mlflow.experimentKind=custom_model_development`` so
      the MLflow 3 UI opens on the runs table rather than the GenAI traces view.
    * Search run, named ``{strategy}-{task}-s{seed}``: tags ``nasw.kind=search``,
      ``nasw.strategy``, ``nasw.space``, ``nasw.seed``, ``nasw.objective``, ``nasw.state``,
      ``nasw.spec`` (the spec JSON, when under 8000 characters), ``nasw.meta.<name>`` (one per
      meta-feature) and the user's tags; params: the scalar leaves of the spec (dotted keys,
      values cut to 500 characters); artifacts ``spec.json`` and ``meta_features.json``; the
      summary as metrics.
    * Trial run, named ``trial-{number}``: tags ``mlflow.parentRunId`` (nests it under its search
      in the UI), ``nasw.kind=trial``, ``nasw.search``, ``nasw.number`` (0-based start order),
      ``nasw.genotype_key``, ``nasw.genotype`` (the genotype JSON, when under 8000 characters),
      ``nasw.state``, ``nasw.parent_trial``, ``nasw.reason``; params: the given params;
      artifacts ``genotype.json`` and ``weights/model.pt``; metrics per epoch with ``step``
      and the final metrics, logged at the last step with a later timestamp so that they are
      the run's latest values. MLflow status FINISHED or FAILED follows ``nasw.state``.

Reading history fast: MLflow's search API builds full run objects and takes seconds for
thousands of runs, so for SQLite stores :meth:`MlflowStore.histories` (also the trial counts, the
trial numbering and the "still running?" check before logging metrics) reads the database
directly with :mod:`sqlite3`, read-only, from MLflow's tables ``runs``, ``tags``,
``latest_metrics`` and ``experiments`` (10,000 trials in 0.2 to 0.5 s). Server stores, or a
database whose layout is not as expected, go through the MLflow client instead (about 10 s for
10,000 trials). :meth:`MlflowStore.trials` always uses the client (about 1 s per 1,000 trials).

Errors: unknown ids raise :class:`~workbench.errors.NotFound`; every other MLflow, database or
connection failure becomes a one-line :class:`~workbench.errors.StoreError` (after a few retries
with backoff when SQLite reports "database is locked"). A server that does not answer is retried
by MLflow itself first, with nasw's defaults about 10 s in all (:data:`HTTP_DEFAULTS`; set
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``_BACKOFF_FACTOR`` / ``_TIMEOUT`` to change them).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from metastore import _common as c
from metastore.base import Metastore
from metastore.records import FAILED, FINISHED, RUNNING, SearchRecord, TaskHistory, TrialRecord
from workbench.errors import NotFound, StoreError

if TYPE_CHECKING:
    from mlflow.entities import Run

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
PARENT_RUN_TAG = "mlflow.parentRunId"

_RETRIES = 5
_FIRST_BACKOFF_S = 0.1
_PAGE = 50000  # MLflow's largest page for search_runs / search_experiments
_MLFLOW_STATUS = {RUNNING: "RUNNING", FINISHED: "FINISHED", FAILED: "FAILED", c.KILLED: "KILLED"}
_LOCKED = re.compile(r"database (table )?is locked", re.IGNORECASE)
_UNREACHABLE = re.compile(
    r"Max retries exceeded|NewConnectionError|Connection refused|ConnectTimeout|ReadTimeout|timed out|"
    r"Name or service not known|nodename nor servname|No route to host|RemoteDisconnected",
    re.IGNORECASE,
)
_RUN_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")  # what MLflow accepts as a run id


@dataclass(frozen=True)
class StoreLocation:
    """Where a store URI points.

    Attributes:
        tracking_uri: The URI handed to ``MlflowClient``.
        db_path: Absolute path of the SQLite file, or None for a server.
        artifact_root: Absolute folder of the artifacts of a SQLite store, or None.
    """

    tracking_uri: str
    db_path: str | None
    artifact_root: str | None


def resolve_location(uri: str) -> StoreLocation:
    """Interpret a store URI (see the module docstring).

    Raises:
        StoreError: An empty URI or a scheme this store does not speak.
    """
    text = uri.strip()
    if not text:
        raise StoreError("store URI is empty; expected sqlite:///PATH.db, http://HOST:PORT or a folder")
    if text.startswith(("http://", "https://")):
        return StoreLocation(tracking_uri=text.rstrip("/"), db_path=None, artifact_root=None)
    if text.startswith("sqlite:"):
        if not text.startswith("sqlite:///") or len(text) == len("sqlite:///"):
            raise StoreError(f"a SQLite store URI is sqlite:///RELATIVE.db or sqlite:////ABS.db; got {uri!r}")
        path = text[len("sqlite:///") :].split("?", 1)[0]
    elif text.startswith("file://"):
        path = _folder_db(urllib.request.url2pathname(urllib.parse.urlparse(text).path))
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        raise StoreError(
            f"unsupported store URI {uri!r}; expected sqlite:///PATH.db, http(s)://HOST:PORT "
            "(an mlflow server), a folder, or memory://"
        )
    else:
        path = _folder_db(text)
    db_path = os.path.abspath(os.path.expanduser(path))
    return StoreLocation(
        tracking_uri="sqlite:///" + db_path,
        db_path=db_path,
        artifact_root=os.path.join(os.path.dirname(db_path), "artifacts"),
    )


def tracking_uri_for(uri: str) -> str:
    """The MLflow tracking URI of a store URI (``sqlite:////abs/mlflow.db`` or the server URL).

    Raises:
        StoreError: The URI is malformed (see :func:`resolve_location`).
    """
    return resolve_location(uri).tracking_uri


def _folder_db(path: str) -> str:
    """A folder means ``<folder>/mlflow.db``; a ``.db`` path (or an existing file) is the file."""
    expanded = os.path.expanduser(path)
    if expanded.endswith(".db") or os.path.isfile(expanded):
        return expanded
    return os.path.join(expanded, "mlflow.db")


def quiet_mlflow(server: bool = False) -> None:
    """Keep MLflow's info chatter (migrations, run links) off the console; warnings still show.

    Args:
        server: Also stop MLflow printing a run link on stdout for every ended run, and a
            progress bar for every artifact read back, of a server store (by setting
            ``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT`` and ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``
            unless they are set already).
    """
    for name in ("mlflow", "alembic"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    if server:
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


#: MLflow's HTTP retry settings for nasw, unless the user set them: MLflow's own defaults (7
#: retries, backoff factor 2, 120 s timeout) keep a command waiting about four minutes on a
#: server that is down; these give up after about 10 s (0 + 2 + 4 s of backoff plus jitter).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def http_defaults() -> dict[str, str]:
    """Set :data:`HTTP_DEFAULTS` in the environment where the user has not; return what is in effect.

    A server store that is down or unreachable then gives one clear :class:`StoreError` after
    a few retries with backoff (about 10 s), not minutes; set the variables to wait longer.
    """
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in HTTP_DEFAULTS}


class MlflowStore(Metastore):
    """The metastore on an MLflow tracking store (SQLite file or ``mlflow server``).

    Trial numbers are handed out by the process that starts the trials (the first one of a
    search in this process continues after the largest number already stored), so one process
    drives a search at a time; any number of processes may record different searches at once.

    Args:
        uri: A store URI (see the module docstring).

    Raises:
        StoreError: The URI is malformed or the store cannot be opened.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        location = resolve_location(uri)
        self._tracking_uri = location.tracking_uri
        self._db_path = location.db_path
        self._artifact_root = location.artifact_root
        self._lock = threading.RLock()
        self._task_experiment: dict[str, str] = {}
        self._experiment_task: dict[str, str] = {}
        self._search_experiment: dict[str, str] = {}
        self._next_number: dict[str, int] = {}
        self._last_ms = 0
        if self._db_path is not None:
            try:
                os.makedirs(os.path.dirname(self._db_path), exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store folder for {uri}: {exc.strerror or exc}") from None
        from mlflow.tracking import MlflowClient

        quiet_mlflow(server=self._db_path is None)  # after the import, which configures logging
        if self._db_path is None:
            http_defaults()

        with warnings.catch_warnings():
            # MLflow's SQLAlchemy models trigger deprecation warnings of SQLAlchemy when the
            # store is first created; they are MLflow's to fix and would spam every user.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(mlflow|sqlalchemy|alembic)\.")
            self._client = self._call("open the store", MlflowClient, tracking_uri=self._tracking_uri)
            self._call("open the store", self._client.search_experiments, max_results=1)

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
    ) -> str:
        """Create the search's parent run (and the task's experiment if needed); return its id."""
        user = c.check_user_tags(tags)
        experiment_id = self._experiment_id(task, create=True)
        assert experiment_id is not None
        spec_text = c.spec_json(spec)
        meta = {str(k): float(v) for k, v in (meta_features or {}).items()}
        run_tags = {
            c.TAG_KIND: c.KIND_SEARCH,
            c.TAG_STRATEGY: str(strategy),
            c.TAG_SPACE: str(space),
            c.TAG_SEED: str(int(seed)),
            c.TAG_OBJECTIVE: str(objective),
            c.TAG_STATE: RUNNING,
            **c.meta_tags(meta),
            **user,
        }
        if len(spec_text) <= c.MAX_TAG_VALUE:
            run_tags[c.TAG_SPEC] = spec_text
        run = self._call(
            "start a search",
            self._client.create_run,
            experiment_id,
            start_time=self._now_ms(),
            tags=run_tags,
            run_name=f"{strategy}-{task}-s{int(seed)}",
        )
        search_id = run.info.run_id
        with self._lock:
            self._search_experiment[search_id] = experiment_id
            self._next_number[search_id] = 0
        self._log_batch(search_id, params=c.param_items(c.flat_scalars(spec)))
        self._call("log spec.json", self._client.log_text, search_id, spec_text, c.SPEC_ARTIFACT)
        self._call(
            "log meta_features.json", self._client.log_text, search_id, c.spec_json(meta), c.META_ARTIFACT
        )
        return search_id

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
            tags={c.TAG_STATE: state},
        )
        self._call(
            "end the search", self._client.set_terminated, search_id, status=_MLFLOW_STATUS[state], end_time=now
        )

    def start_trial(
        self,
        search_id: str,
        genotype_json: str,
        genotype_key: str,
        *,
        params: Mapping[str, Any] | None = None,
        parent_trial: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Create a RUNNING child run under the search; return the trial id."""
        user = c.check_user_tags(tags)
        experiment_id = self._experiment_of_search(search_id)
        number = self._take_number(search_id)
        genotype_json = str(genotype_json)
        run_tags = {
            PARENT_RUN_TAG: search_id,
            c.TAG_KIND: c.KIND_TRIAL,
            c.TAG_SEARCH: search_id,
            c.TAG_NUMBER: str(number),
            c.TAG_GENOTYPE_KEY: str(genotype_key),
            c.TAG_STATE: RUNNING,
            **user,
        }
        if parent_trial:
            run_tags[c.TAG_PARENT_TRIAL] = str(parent_trial)
        if len(genotype_json) <= c.MAX_TAG_VALUE:
            run_tags[c.TAG_GENOTYPE] = genotype_json
        run = self._call(
            "start a trial",
            self._client.create_run,
            experiment_id,
            start_time=self._now_ms(),
            tags=run_tags,
            run_name=f"trial-{number}",
        )
        trial_id = run.info.run_id
        self._log_batch(trial_id, params=c.param_items(params))
        self._call("log genotype.json", self._client.log_text, trial_id, genotype_json, c.GENOTYPE_ARTIFACT)
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
        self._log_batch(trial_id, metrics=[Metric(k, v, now, int(step or 0)) for step, metrics in points
                                           for k, v in c.float_metrics(metrics).items()])

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
        run_tags = {c.TAG_STATE: state}
        if reason is not None:
            run_tags[c.TAG_REASON] = c.truncate(str(reason), c.MAX_TAG_VALUE)
        self._log_batch(trial_id, metrics=[Metric(k, v, now, step) for k, v in values.items()], tags=run_tags)
        self._call("end the trial", self._client.set_terminated, trial_id, status=_MLFLOW_STATUS[state], end_time=now)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set free tags on a search or a trial (``nasw.*`` names the store uses are refused)."""
        values = c.check_user_tags(tags)
        self._check_id(run_id)
        if values:
            self._log_batch(run_id, tags=values)

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
            path = os.path.join(tmp, c.WEIGHTS_FILE)
            torch.save(dict(state_dict), path)
            self._call("save weights", self._client.log_artifact, trial_id, path, c.WEIGHTS_DIR)

    def load_weights(self, trial_id: str) -> dict[str, Any] | None:
        """Load ``weights/model.pt`` with ``torch.load(weights_only=True)`` onto the CPU.

        Returns:
            The state dict, or None when the trial has no weights or they cannot be read (a
            corrupt or malicious file is never unpickled beyond what ``weights_only`` allows).

        Raises:
            NotFound: Unknown trial.
        """
        import torch

        run = self._trial_run(trial_id)
        with tempfile.TemporaryDirectory(prefix="nasw-weights-") as tmp:
            path = self._artifact_path(run, f"{c.WEIGHTS_DIR}/{c.WEIGHTS_FILE}", tmp)
            if path is None:
                return None
            try:
                return torch.load(path, weights_only=True, map_location="cpu")
            except Exception as exc:  # noqa: BLE001 - any unreadable file means "no weights"
                _log.warning("weights of trial %s are unreadable (%s); ignoring them", trial_id, _one_line(exc))
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
            experiment_ids, f"tags.`{c.TAG_KIND}` = '{c.KIND_SEARCH}'", order_by=["attributes.start_time DESC"]
        )
        counts = self._trial_counts([r.info.run_id for r in runs])
        return [self._search_record(r, counts.get(r.info.run_id, 0)) for r in runs]

    def trials(self, search_id: str) -> list[TrialRecord]:
        """A search's trials in start order."""
        experiment_id = self._experiment_of_search(search_id)
        runs = self._child_runs(experiment_id, search_id)
        runs.sort(key=_number)
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
        if self._db_path is not None:
            try:
                return self._histories_sql(space, metric, exclude_task, full_fidelity_only)
            except sqlite3.Error as exc:
                _log.warning("reading %s directly failed (%s); using the MLflow client", self.uri, exc)
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
                    raise NotFound(f"cannot {what} in {self.uri}: {_one_line(exc)}") from None
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
                    f"{os.environ.get('MLFLOW_HTTP_REQUEST_MAX_RETRIES', '?')} retries); is `mlflow server` running there?"
                ) from error
            raise StoreError(f"cannot {what} in {self.uri}: {_one_line(error)}") from error
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
            [experiment_id], f"tags.`{PARENT_RUN_TAG}` = '{search_id}'{extra_filter}"
        )
        return [r for r in runs if r.data.tags.get(c.TAG_KIND) == c.KIND_TRIAL]

    def _experiment_ids(self) -> list[str]:
        """Ids of every active experiment."""
        ids: list[str] = []
        token: str | None = None
        while True:
            page = self._call(
                "list experiments", self._client.search_experiments, max_results=_PAGE, page_token=token
            )
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
            if EXPERIMENT_KIND_TAG not in experiment.tags:
                self._call(
                    "tag an experiment",
                    self._client.set_experiment_tag,
                    experiment_id,
                    EXPERIMENT_KIND_TAG,
                    EXPERIMENT_KIND,
                )
        with self._lock:
            self._task_experiment[task] = experiment_id
            self._experiment_task[experiment_id] = task
        return experiment_id

    def _create_experiment(self, task: str) -> str:
        kwargs: dict[str, Any] = {"tags": {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}}
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
        if run.info.lifecycle_stage != "active" or run.data.tags.get(c.TAG_KIND) != kind:
            raise NotFound(f"no {kind} with id {run_id!r} in {self.uri}")
        return run

    def _search_run(self, search_id: str) -> Run:
        run = self._get_run(search_id, c.KIND_SEARCH)
        with self._lock:
            self._search_experiment[search_id] = run.info.experiment_id
        return run

    def _trial_run(self, trial_id: str) -> Run:
        return self._get_run(trial_id, c.KIND_TRIAL)

    def _check_running(self, trial_id: str) -> None:
        """Like :meth:`_running_trial_run`, but a SQLite store answers with one cheap query.

        Raises:
            NotFound: Unknown trial.
            StoreError: The trial has ended.
        """
        if self._db_path is None:
            self._running_trial_run(trial_id)
            return
        self._check_id(trial_id, c.KIND_TRIAL)
        try:
            rows = self._sql(_SQL_TRIAL_STATE, (trial_id,))
        except sqlite3.Error as exc:
            _log.warning("reading %s directly failed (%s); using the MLflow client", self.uri, exc)
            self._running_trial_run(trial_id)
            return
        if not rows or rows[0][0] != c.KIND_TRIAL or rows[0][2] != "active":
            raise NotFound(f"no trial with id {trial_id!r} in {self.uri}")
        state = rows[0][1] or RUNNING
        if state != RUNNING:
            raise StoreError(f"trial {trial_id} is {state}; finished trials are immutable")

    def _running_trial_run(self, trial_id: str) -> Run:
        run = self._trial_run(trial_id)
        state = run.data.tags.get(c.TAG_STATE, RUNNING)
        if state != RUNNING:
            raise StoreError(f"trial {trial_id} is {state}; finished trials are immutable")
        return run

    def _experiment_of_search(self, search_id: str) -> str:
        with self._lock:
            if search_id in self._search_experiment:
                return self._search_experiment[search_id]
        return self._search_run(search_id).info.experiment_id

    def _take_number(self, search_id: str) -> int:
        """The next trial number of a search (continuing after the stored ones)."""
        with self._lock:
            if search_id not in self._next_number:
                self._next_number[search_id] = self._stored_max_number(search_id) + 1
            number = self._next_number[search_id]
            self._next_number[search_id] = number + 1
            return number

    def _now_ms(self) -> int:
        """Milliseconds since the epoch, strictly increasing within this store."""
        with self._lock:
            self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
            return self._last_ms

    # -- records -------------------------------------------------------------------------
    def _search_record(self, run: Run, n_trials: int) -> SearchRecord:
        tags = run.data.tags
        spec: dict[str, Any] = {}
        text = tags.get(c.TAG_SPEC)
        if text is None:
            text = self._artifact_text(run, c.SPEC_ARTIFACT)
        if text:
            try:
                spec = json.loads(text)
            except ValueError:
                _log.warning("spec of search %s is not valid JSON; ignoring it", run.info.run_id)
        try:
            seed = int(tags.get(c.TAG_SEED, "0"))
        except ValueError:
            seed = 0
        return SearchRecord(
            search_id=run.info.run_id,
            task=self._task_of(run.info.experiment_id),
            strategy=tags.get(c.TAG_STRATEGY, ""),
            space=tags.get(c.TAG_SPACE, ""),
            seed=seed,
            objective=tags.get(c.TAG_OBJECTIVE, ""),
            state=tags.get(c.TAG_STATE, RUNNING),
            spec=spec,
            summary=dict(run.data.metrics),
            tags=c.user_tags(tags),
            n_trials=n_trials,
            start_time=(run.info.start_time or 0) / 1000.0,
        )

    def _trial_record(self, run: Run) -> TrialRecord:
        tags = run.data.tags
        genotype = tags.get(c.TAG_GENOTYPE)
        if genotype is None:
            genotype = self._artifact_text(run, c.GENOTYPE_ARTIFACT) or ""
        return TrialRecord(
            trial_id=run.info.run_id,
            search_id=tags.get(PARENT_RUN_TAG, tags.get(c.TAG_SEARCH, "")),
            task=self._task_of(run.info.experiment_id),
            number=_number(run),
            genotype_json=genotype,
            genotype_key=tags.get(c.TAG_GENOTYPE_KEY, ""),
            state=tags.get(c.TAG_STATE, RUNNING),
            metrics=dict(run.data.metrics),
            params=dict(run.data.params),
            parent_trial=tags.get(c.TAG_PARENT_TRIAL),
            reason=tags.get(c.TAG_REASON),
            tags=c.user_tags(tags),
            start_time=(run.info.start_time or 0) / 1000.0,
            end_time=None if run.info.end_time is None else run.info.end_time / 1000.0,
        )

    # -- artifacts -----------------------------------------------------------------------
    def _artifact_path(self, run: Run, relative: str, tmp: str) -> str | None:
        """A local path of one artifact of ``run`` (downloaded into ``tmp`` if remote), or None."""
        return self._artifact_path_of(run.info.run_id, run.info.artifact_uri, relative, tmp)

    def _artifact_path_of(self, run_id: str, artifact_uri: str, relative: str, tmp: str) -> str | None:
        local = _local_folder(artifact_uri)
        if local is not None:
            path = os.path.join(local, *relative.split("/"))
            return path if os.path.isfile(path) else None
        try:
            return self._client.download_artifacts(run_id, relative, tmp)
        except Exception as exc:  # noqa: BLE001 - a missing or unreachable artifact reads as absent
            _log.debug("artifact %s of run %s not available: %s", relative, run_id, _one_line(exc))
            return None

    def _artifact_text(self, run: Run, relative: str) -> str | None:
        return self._artifact_text_of(run.info.run_id, run.info.artifact_uri, relative)

    def _artifact_text_of(self, run_id: str, artifact_uri: str, relative: str) -> str | None:
        with tempfile.TemporaryDirectory(prefix="nasw-artifact-") as tmp:
            path = self._artifact_path_of(run_id, artifact_uri, relative, tmp)
            if path is None:
                return None
            try:
                with open(path, encoding="utf-8") as fh:
                    return fh.read()
            except (OSError, UnicodeDecodeError) as exc:
                _log.warning("artifact %s of run %s is unreadable: %s", relative, run_id, exc)
                return None

    # -- counting and history: direct SQLite reads with a client fallback -----------------
    def _connect_ro(self) -> sqlite3.Connection:
        assert self._db_path is not None
        uri = "file:" + urllib.parse.quote(self._db_path) + "?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=30.0)

    def _sql(self, query: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on the SQLite tracking database."""
        con = self._connect_ro()
        try:
            return con.execute(query, tuple(args)).fetchall()
        finally:
            con.close()

    def _trial_counts(self, search_ids: list[str]) -> dict[str, int]:
        """Number of trials of each search."""
        if not search_ids:
            return {}
        if self._db_path is not None:
            try:
                rows = self._sql(_SQL_TRIAL_COUNTS)
                wanted = set(search_ids)
                return {sid: n for sid, n in rows if sid in wanted}
            except sqlite3.Error as exc:
                _log.warning("reading %s directly failed (%s); using the MLflow client", self.uri, exc)
        out: dict[str, int] = {}
        for search_id in search_ids:
            out[search_id] = len(self._child_runs(self._experiment_of_search(search_id), search_id))
        return out

    def _stored_max_number(self, search_id: str) -> int:
        """The largest trial number stored for a search (-1 when it has none)."""
        if self._db_path is not None:
            try:
                rows = self._sql(_SQL_MAX_NUMBER, (search_id,))
                return -1 if not rows or rows[0][0] is None else int(rows[0][0])
            except sqlite3.Error as exc:
                _log.warning("reading %s directly failed (%s); using the MLflow client", self.uri, exc)
        runs = self._child_runs(self._experiment_of_search(search_id), search_id)
        return max((_number(r) for r in runs), default=-1)

    def _histories_sql(
        self, space: str, metric: str, exclude_task: str | None, full_fidelity_only: bool = True
    ) -> dict[str, TaskHistory]:
        con = self._connect_ro()
        try:
            searches = con.execute(_SQL_SEARCHES_IN_SPACE, (space,)).fetchall()
            meta_rows = con.execute(_SQL_META_TAGS).fetchall()
            trial_rows = con.execute(_SQL_FINISHED_TRIALS, (space, metric)).fetchall()
        finally:
            con.close()
        search_task: dict[str, str] = {}
        search_order: dict[str, tuple[int, str]] = {}
        for search_id, task, start_ms in searches:
            if task != exclude_task:
                search_task[search_id] = task
                search_order[search_id] = (start_ms or 0, search_id)
        meta_by_search: dict[str, dict[str, str]] = {}
        for run_id, key, value in meta_rows:
            if run_id in search_task:
                meta_by_search.setdefault(run_id, {})[key] = value
        rows = []
        for search_id, trial_id, number, genotype, value, is_nan, artifact_uri, fidelity in trial_rows:
            if search_id not in search_task or is_nan:
                continue
            if full_fidelity_only and not c.is_full_fidelity(fidelity):
                continue
            try:
                n = int(number)
            except (TypeError, ValueError):
                n = 0
            if genotype is None:
                genotype = self._artifact_text_of(trial_id, artifact_uri, c.GENOTYPE_ARTIFACT) or ""
            rows.append((search_order[search_id], n, search_task[search_id], trial_id, genotype, float(value),
                         c.fidelity_record(fidelity)))
        rows.sort(key=lambda r: (r[0], r[1]))
        return _group(rows, search_task, search_order, meta_by_search)

    def _histories_client(
        self, space: str, metric: str, exclude_task: str | None, full_fidelity_only: bool = True
    ) -> dict[str, TaskHistory]:
        experiment_ids = self._experiment_ids()
        if not experiment_ids:
            return {}
        searches = [
            r
            for r in self._search_runs(experiment_ids, f"tags.`{c.TAG_KIND}` = '{c.KIND_SEARCH}'")
            if r.data.tags.get(c.TAG_SPACE) == space
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
            meta_by_search[search_id] = {
                k: v for k, v in run.data.tags.items() if k.startswith(c.TAG_META_PREFIX)
            }
            finished = f" and tags.`{c.TAG_STATE}` = '{FINISHED}'"
            for trial in self._child_runs(run.info.experiment_id, search_id, finished):
                value = trial.data.metrics.get(metric)
                if value is None or not c.is_number(value):
                    continue
                fidelity = trial.data.tags.get(c.TAG_FIDELITY)
                if full_fidelity_only and not c.is_full_fidelity(fidelity):
                    continue
                genotype = trial.data.tags.get(c.TAG_GENOTYPE)
                if genotype is None:
                    genotype = self._artifact_text(trial, c.GENOTYPE_ARTIFACT) or ""
                rows.append((search_order[search_id], _number(trial), task, trial.info.run_id, genotype, value,
                             c.fidelity_record(fidelity)))
        rows.sort(key=lambda r: (r[0], r[1]))
        return _group(rows, search_task, search_order, meta_by_search)


# -- SQL on MLflow's tracking schema (tables runs, tags, latest_metrics, experiments) ------
_SQL_SEARCHES_IN_SPACE = f"""
SELECT r.run_uuid, e.name, r.start_time
FROM runs r
JOIN experiments e ON e.experiment_id = r.experiment_id AND e.lifecycle_stage = 'active'
JOIN tags k ON k.key = '{c.TAG_KIND}' AND k.run_uuid = r.run_uuid AND k.value = '{c.KIND_SEARCH}'
JOIN tags s ON s.key = '{c.TAG_SPACE}' AND s.run_uuid = r.run_uuid AND s.value = ?
WHERE r.lifecycle_stage = 'active'
"""

_SQL_META_TAGS = f"""
SELECT run_uuid, key, value FROM tags
WHERE key >= '{c.TAG_META_PREFIX}' AND key < '{c.TAG_META_PREFIX[:-1]}/'
"""

_SQL_FINISHED_TRIALS = f"""
WITH searches AS (
    SELECT k.run_uuid AS id FROM tags k
    JOIN tags s ON s.key = '{c.TAG_SPACE}' AND s.run_uuid = k.run_uuid AND s.value = ?
    WHERE k.key = '{c.TAG_KIND}' AND k.value = '{c.KIND_SEARCH}'
)
SELECT p.value, p.run_uuid, n.value, g.value, m.value, m.is_nan, r.artifact_uri, f.value
FROM tags p
JOIN searches ON searches.id = p.value
JOIN runs r ON r.run_uuid = p.run_uuid AND r.lifecycle_stage = 'active'
JOIN tags k ON k.key = '{c.TAG_KIND}' AND k.run_uuid = p.run_uuid AND k.value = '{c.KIND_TRIAL}'
JOIN tags st ON st.key = '{c.TAG_STATE}' AND st.run_uuid = p.run_uuid AND st.value = '{FINISHED}'
JOIN latest_metrics m ON m.key = ? AND m.run_uuid = p.run_uuid
LEFT JOIN tags n ON n.key = '{c.TAG_NUMBER}' AND n.run_uuid = p.run_uuid
LEFT JOIN tags g ON g.key = '{c.TAG_GENOTYPE}' AND g.run_uuid = p.run_uuid
LEFT JOIN tags f ON f.key = '{c.TAG_FIDELITY}' AND f.run_uuid = p.run_uuid
WHERE p.key = '{PARENT_RUN_TAG}'
"""

_SQL_TRIAL_COUNTS = f"""
SELECT p.value, COUNT(*)
FROM tags p
JOIN runs r ON r.run_uuid = p.run_uuid AND r.lifecycle_stage = 'active'
JOIN tags k ON k.key = '{c.TAG_KIND}' AND k.run_uuid = p.run_uuid AND k.value = '{c.KIND_TRIAL}'
WHERE p.key = '{PARENT_RUN_TAG}'
GROUP BY p.value
"""

_SQL_TRIAL_STATE = f"""
SELECT k.value, st.value, r.lifecycle_stage
FROM runs r
LEFT JOIN tags k ON k.key = '{c.TAG_KIND}' AND k.run_uuid = r.run_uuid
LEFT JOIN tags st ON st.key = '{c.TAG_STATE}' AND st.run_uuid = r.run_uuid
WHERE r.run_uuid = ?
"""

_SQL_MAX_NUMBER = f"""
SELECT MAX(CAST(n.value AS INTEGER))
FROM tags p
JOIN tags n ON n.key = '{c.TAG_NUMBER}' AND n.run_uuid = p.run_uuid
WHERE p.key = '{PARENT_RUN_TAG}' AND p.value = ?
"""


def _group(
    rows: list[tuple[tuple[int, str], int, str, str, str, float, dict[str, Any]]],
    search_task: Mapping[str, str],
    search_order: Mapping[str, tuple[int, str]],
    meta_by_search: Mapping[str, Mapping[str, str]],
) -> dict[str, TaskHistory]:
    """Sorted ``(order, number, task, trial id, genotype, value, fidelity)`` rows into task histories."""
    grouped: dict[str, tuple[list[str], list[float], list[str], list[dict[str, Any]]]] = {}
    for _, _, task, trial_id, genotype, value, fidelity in rows:
        genotypes, values, ids, fids = grouped.setdefault(task, ([], [], [], []))
        genotypes.append(genotype)
        values.append(value)
        ids.append(trial_id)
        fids.append(fidelity)
    meta: dict[str, dict[str, float]] = {}
    for search_id in sorted(search_task, key=lambda s: search_order[s]):  # newest search wins
        meta.setdefault(search_task[search_id], {}).update(c.meta_from_tags(meta_by_search.get(search_id, {})))
    return {
        task: TaskHistory(
            task=task,
            genotype_jsons=genotypes,
            values=np.asarray(values, dtype=np.float64),
            meta_features=meta.get(task, {}),
            trial_ids=ids,
            fidelities=fids,
        )
        for task, (genotypes, values, ids, fids) in grouped.items()
    }


def _number(run: Run) -> int:
    try:
        return int(run.data.tags.get(c.TAG_NUMBER, "0"))
    except ValueError:
        return 0


def _local_folder(artifact_uri: str | None) -> str | None:
    """The local folder of a ``file:`` (or scheme-less) artifact URI, else None."""
    if not artifact_uri:
        return None
    parsed = urllib.parse.urlparse(artifact_uri)
    if parsed.scheme == "file":
        return urllib.request.url2pathname(parsed.path)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return artifact_uri
    return None


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


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message, at most 300 characters."""
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0]
    return line if len(line) <= 300 else line[:297] + "..."
