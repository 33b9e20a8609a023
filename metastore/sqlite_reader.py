"""The read-only fast path of the MLflow store: nasw's records read straight from MLflow's SQLite file.

MLflow's search API builds full run objects and takes seconds for thousands of runs, so for SQLite
stores :class:`~metastore.mlflow_store.MlflowStore` reads what it needs most often here, with
:mod:`sqlite3` on a read-only connection (10,000 trials in 0.2 to 0.5 s): the task histories
(:meth:`SqliteReader.histories`), the trial counts of searches, the largest trial number of a
search (trial numbering), and a trial's state (the "still running?" check before logging metrics).

This module depends on MLflow's tracking-database layout (the SQLAlchemy store of MLflow 2 and 3),
and on nothing else of MLflow; it never writes nasw's records. The one write it may cause is
SQLite's own recovery: a writer killed inside a transaction (SIGKILL, power loss) leaves a *hot
journal* that must be rolled back before anyone can read, and a read-only connection cannot do
that (``attempt to write a readonly database``); :func:`connect_read_only` then lets a read-write
connection roll it back, once, and reads on (:func:`recover_hot_journal`). Tables and columns read:

    * ``runs``: ``run_uuid``, ``experiment_id``, ``start_time`` (ms), ``lifecycle_stage``
      (``active`` / ``deleted``), ``artifact_uri``;
    * ``experiments``: ``experiment_id``, ``name`` (the task), ``lifecycle_stage``;
    * ``tags``: ``run_uuid``, ``key``, ``value`` (nasw's tags of :mod:`metastore.schema` and
      MLflow's ``mlflow.parentRunId``);
    * ``latest_metrics``: ``run_uuid``, ``key``, ``value``, ``is_nan``.

Any :class:`sqlite3.Error` (a database whose layout is not as expected, a locked or missing file)
propagates; the store then falls back to the MLflow client, which reads the same records slowly.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from metastore import _common as c
from metastore import schema
from metastore.records import FINISHED, TaskHistory

#: Reads a trial's genotype from its ``genotype.json`` artifact: ``(trial id, artifact URI) -> text``.
GenotypeReader = Callable[[str, str], str]


def recover_hot_journal(db_path: str) -> None:
    """Roll back what a killed writer left half-done: a read-write connection's first read
    replays the hot journal (SQLite does this itself; nothing of nasw's is written)."""
    con = sqlite3.connect(db_path, timeout=30.0)
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchall()
    finally:
        con.close()


def connect_read_only(db_path: str) -> sqlite3.Connection:
    """A read-only connection to ``db_path`` (the file is never created), after rolling back a
    killed writer's hot journal where the file is writable (:func:`recover_hot_journal`).

    Raises:
        sqlite3.Error: The file cannot be read.
    """
    uri = "file:" + urllib.parse.quote(db_path) + "?mode=ro"
    con = sqlite3.connect(uri, uri=True, timeout=30.0)
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchall()
    except sqlite3.OperationalError as exc:
        con.close()
        if "readonly" not in str(exc) or not os.access(db_path, os.W_OK):
            raise
        recover_hot_journal(db_path)
        con = sqlite3.connect(uri, uri=True, timeout=30.0)
    return con


class SqliteReader:
    """Read-only queries on one MLflow SQLite tracking database (see the module docstring).

    Args:
        db_path: Absolute path of the database file.
    """

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path

    def connect(self) -> sqlite3.Connection:
        """A read-only connection (the file is never created; see :func:`connect_read_only`)."""
        return connect_read_only(self.db_path)

    def rows(self, query: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only query."""
        con = self.connect()
        try:
            return con.execute(query, tuple(args)).fetchall()
        finally:
            con.close()

    def trial_counts(self) -> dict[str, int]:
        """Search id -> number of its (active) trials, for every search that has trials."""
        return {sid: int(n) for sid, n in self.rows(_SQL_TRIAL_COUNTS)}

    def max_number(self, search_id: str) -> int:
        """The largest trial number stored for a search (-1 when it has none)."""
        rows = self.rows(_SQL_MAX_NUMBER, (search_id,))
        return -1 if not rows or rows[0][0] is None else int(rows[0][0])

    def trial_state(self, run_id: str) -> tuple[str | None, str | None, str] | None:
        """``(nasw.kind, nasw.state, lifecycle stage)`` of a run, or None when there is no such run."""
        rows = self.rows(_SQL_TRIAL_STATE, (run_id,))
        return rows[0] if rows else None

    def histories(
        self,
        space: str,
        metric: str,
        exclude_task: str | None,
        full_fidelity_only: bool,
        genotype_of: GenotypeReader,
    ) -> dict[str, TaskHistory]:
        """What :meth:`metastore.base.Metastore.histories` returns, read in three queries.

        ``genotype_of`` reads the genotypes too long for their tag (only in ``genotype.json``).
        """
        con = self.connect()
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
            if full_fidelity_only and not schema.is_full_fidelity(fidelity):
                continue
            try:
                n = int(number)
            except (TypeError, ValueError):
                n = 0
            if genotype is None:
                genotype = genotype_of(trial_id, artifact_uri)
            rows.append(
                (
                    search_order[search_id],
                    n,
                    search_task[search_id],
                    trial_id,
                    genotype,
                    float(value),
                    schema.fidelity_record(fidelity),
                )
            )
        rows.sort(key=lambda r: (r[0], r[1]))
        return c.group_histories(rows, search_task, search_order, meta_by_search)


# -- SQL on MLflow's tracking schema (tables runs, tags, latest_metrics, experiments) ------
_SQL_SEARCHES_IN_SPACE = f"""
SELECT r.run_uuid, e.name, r.start_time
FROM runs r
JOIN experiments e ON e.experiment_id = r.experiment_id AND e.lifecycle_stage = 'active'
JOIN tags k ON k.key = '{schema.TAG_KIND}' AND k.run_uuid = r.run_uuid AND k.value = '{schema.KIND_SEARCH}'
JOIN tags s ON s.key = '{schema.TAG_SPACE}' AND s.run_uuid = r.run_uuid AND s.value = ?
WHERE r.lifecycle_stage = 'active'
"""

_SQL_META_TAGS = f"""
SELECT run_uuid, key, value FROM tags
WHERE key >= '{schema.TAG_META_PREFIX}' AND key < '{schema.TAG_META_PREFIX[:-1]}/'
"""

_SQL_FINISHED_TRIALS = f"""
WITH searches AS (
    SELECT k.run_uuid AS id FROM tags k
    JOIN tags s ON s.key = '{schema.TAG_SPACE}' AND s.run_uuid = k.run_uuid AND s.value = ?
    WHERE k.key = '{schema.TAG_KIND}' AND k.value = '{schema.KIND_SEARCH}'
)
SELECT p.value, p.run_uuid, n.value, g.value, m.value, m.is_nan, r.artifact_uri, f.value
FROM tags p
JOIN searches ON searches.id = p.value
JOIN runs r ON r.run_uuid = p.run_uuid AND r.lifecycle_stage = 'active'
JOIN tags k ON k.key = '{schema.TAG_KIND}' AND k.run_uuid = p.run_uuid AND k.value = '{schema.KIND_TRIAL}'
JOIN tags st ON st.key = '{schema.TAG_STATE}' AND st.run_uuid = p.run_uuid AND st.value = '{FINISHED}'
JOIN latest_metrics m ON m.key = ? AND m.run_uuid = p.run_uuid
LEFT JOIN tags n ON n.key = '{schema.TAG_NUMBER}' AND n.run_uuid = p.run_uuid
LEFT JOIN tags g ON g.key = '{schema.TAG_GENOTYPE}' AND g.run_uuid = p.run_uuid
LEFT JOIN tags f ON f.key = '{schema.TAG_FIDELITY}' AND f.run_uuid = p.run_uuid
WHERE p.key = '{schema.MLFLOW_PARENT_RUN_TAG}'
"""

_SQL_TRIAL_COUNTS = f"""
SELECT p.value, COUNT(*)
FROM tags p
JOIN runs r ON r.run_uuid = p.run_uuid AND r.lifecycle_stage = 'active'
JOIN tags k ON k.key = '{schema.TAG_KIND}' AND k.run_uuid = p.run_uuid AND k.value = '{schema.KIND_TRIAL}'
WHERE p.key = '{schema.MLFLOW_PARENT_RUN_TAG}'
GROUP BY p.value
"""

_SQL_TRIAL_STATE = f"""
SELECT k.value, st.value, r.lifecycle_stage
FROM runs r
LEFT JOIN tags k ON k.key = '{schema.TAG_KIND}' AND k.run_uuid = r.run_uuid
LEFT JOIN tags st ON st.key = '{schema.TAG_STATE}' AND st.run_uuid = r.run_uuid
WHERE r.run_uuid = ?
"""

_SQL_MAX_NUMBER = f"""
SELECT MAX(CAST(n.value AS INTEGER))
FROM tags p
JOIN tags n ON n.key = '{schema.TAG_NUMBER}' AND n.run_uuid = p.run_uuid
WHERE p.key = '{schema.MLFLOW_PARENT_RUN_TAG}' AND p.value = ?
"""
