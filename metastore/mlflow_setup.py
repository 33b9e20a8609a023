"""Opening an MLflow store: what a store URI points to, and the process-wide MLflow settings.

Store URIs:
    * ``sqlite:///runs/mlflow.db``: a SQLite file relative to the current directory (resolved to
      an absolute path when the store is opened; the folder is created).
    * ``sqlite:////abs/path/mlflow.db``: a SQLite file by absolute path.
    * ``http://host:port`` / ``https://...``: an ``mlflow server`` (artifacts as it serves them).
    * ``path/to/folder``: the same as ``sqlite:///path/to/folder/mlflow.db``; a path ending in
      ``.db`` names the SQLite file itself.

For SQLite stores the artifacts live in ``artifacts/<task>/<run id>/artifacts`` next to the
database file. Nothing here imports mlflow.

Opening a SQLite store (:func:`check_sqlite_store`), by what the command means to do with it:

* ``create`` (``nasw search``): a missing store is created (its folder too), under a file lock
  (``<db>.lock``, :func:`creation_lock`) so that processes starting at once on a new store
  neither fail nor create it twice; the store must be writable.
* every mode waits for a creation under way (the same lock, if its file exists): MLflow creates
  its first two tables before the rest, so a store can look ready while it is still being
  migrated, and MLflow, opening it then, would migrate it too (``duplicate column name``).
* ``write`` (``nasw resume``): the store must exist and be writable.
* ``read`` (``ls``, ``show``, ``compare``, ``export``, ``report``, ``lineage``): the store must
  exist; nothing is created, and a read-only file is read as it is.

A store that cannot be used that way is one :class:`StoreError` line, before MLflow is asked
(which would retry opening an unopenable SQLite file for about 100 s, or fail a first write
with a long SQLAlchemy message).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

from metastore.errors import NoStore, StoreError
from metastore.sqlite_reader import connect_read_only


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


def local_folder(artifact_uri: str | None) -> str | None:
    """The local folder of a ``file:`` (or scheme-less) artifact URI, else None."""
    if not artifact_uri:
        return None
    parsed = urllib.parse.urlparse(artifact_uri)
    if parsed.scheme == "file":
        return urllib.request.url2pathname(parsed.path)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return artifact_uri
    return None


#: How a command opens a store (see the module docstring).
MODES = ("create", "write", "read")
#: How long a process waits for another one that is creating the same store.
CREATION_WAIT_S = 120.0


def sqlite_state(db_path: str) -> str:
    """``"missing"`` (no file), ``"empty"`` (an empty file, or a SQLite file without MLflow's
    tables) or ``"ready"``, read without writing anything.

    Raises:
        StoreError: The path is a folder, or a file SQLite cannot read (not a database,
            unreadable).
    """
    if not os.path.lexists(db_path):
        return "missing"
    if os.path.isdir(db_path):
        raise StoreError(f"the store {db_path} is a folder, not a SQLite file")
    try:
        if os.path.getsize(db_path) == 0:
            return "empty"
        con = connect_read_only(db_path)
        try:
            names = {
                row[0]
                for row in con.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('experiments', 'alembic_version')"
                )
            }
        finally:
            con.close()
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot read the store {db_path}: {exc}") from None
    return "ready" if names == {"experiments", "alembic_version"} else "empty"


def write_problem(db_path: str) -> str | None:
    """Why a SQLite store cannot be written (its file, its folder, where SQLite keeps its
    journal, or its artifact folder is not writable), or None when it can."""
    folder = os.path.dirname(db_path)
    artifacts = os.path.join(folder, "artifacts")
    if os.path.exists(db_path) and not os.access(db_path, os.W_OK):
        return "the file is not writable"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {folder} is not writable"
    if os.path.isdir(artifacts) and not os.access(artifacts, os.W_OK | os.X_OK):
        return f"its artifact folder {artifacts} is not writable"
    return None


def check_sqlite_store(db_path: str, mode: str) -> str:
    """Check that a SQLite store can be opened for ``mode`` (see the module docstring); create
    its folder in ``create`` mode. Returns its :func:`sqlite_state`.

    Raises:
        NoStore: No store there (``write``, ``read``).
        StoreError: One line: the store or its folder is not writable (``create``, ``write``),
            or it cannot be read at all.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    state = sqlite_state(db_path)
    if state != "ready" and mode != "create":
        what = "the file does not exist" if state == "missing" else "the file is not an MLflow store (it is empty)"
        raise NoStore(
            f"no store at {db_path}: {what}; check --store or $NASW_STORE "
            "(a store is created by the first `nasw search` that records into it)"
        )
    if mode == "read":
        return state
    if state == "missing":
        try:
            os.makedirs(os.path.dirname(db_path), exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store folder for {db_path}: {exc.strerror or exc}") from None
    problem = write_problem(db_path)
    if problem is not None:
        verb = "cannot create the store" if state != "ready" else "the store is read-only"
        raise StoreError(
            f"{verb} {db_path}: {problem}; nasw search and nasw resume write to the store "
            "(ls, show, compare, export, report and lineage only read it)"
        )
    return state


@contextlib.contextmanager
def creation_lock(db_path: str, wait_s: float = CREATION_WAIT_S, create: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``<db_path>.lock`` (POSIX ``flock``; nothing where there is
    none): MLflow creates and migrates a new database in many statements, and two processes
    doing it at once fail (``table already exists``, ``duplicate column name``).

    Args:
        create: Create the lock file (a process that may create the store). False: only wait
            for a creation under way, and go on unlocked where there is no lock file to open
            (a store created before, or a read-only folder).

    Raises:
        StoreError: The lock file cannot be created, or another process held the lock for
            longer than ``wait_s``.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = db_path + ".lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666) if create else os.open(path, os.O_RDONLY)
    except OSError as exc:
        if not create:
            yield
            return
        raise StoreError(f"cannot create the store {db_path}: {path}: {exc.strerror or exc}") from None
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"another process has been creating the store {db_path} for over {wait_s:.0f} s "
                        f"(it holds {path})"
                    ) from None
                time.sleep(0.05)
            except OSError:  # a file system without flock: go on unlocked
                break
        yield
    finally:
        os.close(fd)  # closing releases the lock
