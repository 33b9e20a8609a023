"""Worker-side entry point: rebuild (and cache) store, space and evaluator, then run a trial."""

from __future__ import annotations

import json
import os
from typing import Any

from workbench.execute.trial import TrialJob, TrialOutcome, execute_trial

_CACHE: dict[tuple[str, str, str], Any] = {}


def _context(store_uri: str, task_json: str, device: str | None):
    key = (store_uri, task_json, device or "")
    if key not in _CACHE:
        from metastore import open_store
        from workbench.evaluate.factory import evaluator_for, space_for
        from workbench.task import parse_task_dict

        task = parse_task_dict(json.loads(task_json))
        _CACHE[key] = (open_store(store_uri), space_for(task), evaluator_for(task, device=device))
    return _CACHE[key]


def run_job(store_uri: str, task_json: str, device: str | None, job: TrialJob, save_weights: bool = True) -> TrialOutcome:
    """Run ``job`` in this process against the store at ``store_uri``."""
    store, space, evaluator = _context(store_uri, task_json, device)
    from workbench.loop import inherit_weights

    return execute_trial(store, evaluator, space, job, save_weights=save_weights, inherit=inherit_weights)


def init_worker(threads: int) -> None:
    """Process-pool initializer: share the cores fairly between workers."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import torch

        torch.set_num_threads(max(1, threads))
    except ImportError:  # pragma: no cover
        pass
