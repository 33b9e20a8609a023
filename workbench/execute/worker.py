"""Worker-side entry point: rebuild (and cache) store, space and evaluator, then run a trial."""

from __future__ import annotations

import json
import os
from typing import Any

from workbench.errors import StoreError
from workbench.execute.trial import TrialJob, TrialOutcome, execute_trial

_CACHE: dict[tuple[str, str, str], Any] = {}
_STORES: dict[str, Any] = {}


def _store(store_uri: str):
    if store_uri not in _STORES:
        from metastore import open_store

        _STORES[store_uri] = open_store(store_uri)
    return _STORES[store_uri]


def _context(store_uri: str, task_json: str, device: str | None):
    key = (store_uri, task_json, device or "")
    if key not in _CACHE:
        from workbench.evaluate.factory import evaluator_for, space_for
        from workbench.task import parse_task_dict

        store = _store(store_uri)
        task = parse_task_dict(json.loads(task_json))
        _CACHE[key] = (store, space_for(task), evaluator_for(task, device=device))
    return _CACHE[key]


def run_job(
    store_uri: str, task_json: str, device: str | None, job: TrialJob, save_weights: bool = True
) -> TrialOutcome:
    """Run ``job`` in this process against the store at ``store_uri``.

    A task whose data cannot be loaded in this worker (a user's loader that raises here) ends
    the trial failed with the reason; a store that cannot be opened raises ``StoreError``.
    """
    try:
        store, space, evaluator = _context(store_uri, task_json, device)
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - a loader may raise anything: fail this trial, keep the worker
        reason = f"cannot prepare the task in this worker: {type(exc).__name__}: {exc}".splitlines()[0][:500]
        _store(store_uri).finish_trial(job.trial_id, state="failed", reason=reason)
        return TrialOutcome(job.trial_id, job.number, "failed", reason=reason)
    from workbench.execute.inherit import inherit_weights

    return execute_trial(store, evaluator, space, job, save_weights=save_weights, inherit=inherit_weights)


def init_worker(threads: int) -> None:
    """Process-pool initializer: share the cores fairly between workers."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import torch

        torch.set_num_threads(max(1, threads))
    except ImportError:  # pragma: no cover
        pass
