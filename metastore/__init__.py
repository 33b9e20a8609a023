"""The MLflow-backed store of every search and trial (the only place mlflow is imported).

Open one with :func:`open_store`: ``sqlite:///runs/mlflow.db`` (default), ``http://host:5000``
(an ``mlflow server``), a folder path, or ``memory://`` for tests.
"""

from __future__ import annotations

import os

from metastore.base import Metastore
from metastore.records import SearchRecord, TaskHistory, TrialRecord

DEFAULT_STORE = "sqlite:///runs/mlflow.db"
STORE_ENV = "NASW_STORE"

__all__ = [
    "DEFAULT_STORE",
    "STORE_ENV",
    "Metastore",
    "SearchRecord",
    "TaskHistory",
    "TrialRecord",
    "open_store",
    "default_store_uri",
]


def default_store_uri() -> str:
    """``$NASW_STORE`` if set, else ``sqlite:///runs/mlflow.db``."""
    return os.environ.get(STORE_ENV) or DEFAULT_STORE


def open_store(uri: str | None = None, *, mode: str = "create") -> Metastore:
    """Open a metastore by URI (see module docstring).

    Args:
        uri: The store URI (default: :func:`default_store_uri`).
        mode: What the caller will do: ``create`` (record searches; a missing SQLite store is
            created), ``write`` (the store must exist and be writable) or ``read`` (it must
            exist; nothing is created). See :mod:`metastore.mlflow_setup`.

    Raises:
        StoreError: The store cannot be opened for ``mode`` (one line: no store at that path,
            a read-only store, ...).
    """
    uri = uri or default_store_uri()
    if uri.startswith("memory://"):
        from metastore.memory import MemoryStore

        return MemoryStore(uri)
    from metastore.mlflow_store import MlflowStore

    return MlflowStore(uri, mode=mode)
