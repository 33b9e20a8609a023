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
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass

from metastore.errors import StoreError


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
