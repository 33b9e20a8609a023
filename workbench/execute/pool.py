"""A local process pool: ``--workers N`` trials at once on one machine."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os

from metastore import Metastore
from workbench.errors import StoreError
from workbench.execute.base import Executor
from workbench.execute.trial import TrialJob, TrialOutcome
from workbench.execute.worker import init_worker, run_job


class PoolExecutor(Executor):
    """Trials in ``workers`` spawned processes; each opens the store by URI.

    Args:
        store: The search's store (used to fail trials whose worker died).
        store_uri: URI the workers open (must be a persistent store, not ``memory://``).
        task_json: The task as JSON (workers rebuild space and evaluator from it).
        workers: Number of processes.
        device: Training device for the workers.
    """

    def __init__(
        self,
        store: Metastore,
        store_uri: str,
        task_json: str,
        workers: int,
        device: str | None = None,
        save_weights: bool = True,
    ) -> None:
        self.capacity = int(workers)
        self._store = store
        self._args = (store_uri, task_json, device)
        self._save = save_weights
        threads = max(1, (os.cpu_count() or 1) // self.capacity)
        self._pool = cf.ProcessPoolExecutor(
            max_workers=self.capacity, mp_context=mp.get_context("spawn"), initializer=init_worker, initargs=(threads,)
        )
        self._futures: dict[cf.Future, TrialJob] = {}

    def submit(self, job: TrialJob) -> None:
        fut = self._pool.submit(run_job, *self._args, job, self._save)
        self._futures[fut] = job

    def wait(self) -> list[TrialOutcome]:
        done, _ = cf.wait(list(self._futures), return_when=cf.FIRST_COMPLETED)
        out = []
        for fut in done:
            job = self._futures.pop(fut)
            try:
                out.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - a dead worker fails its trial, not the search
                reason = f"worker died: {type(exc).__name__}: {exc}"[:500]
                try:
                    self._store.finish_trial(job.trial_id, state="failed", reason=reason)
                except StoreError:
                    pass
                out.append(TrialOutcome(job.trial_id, job.number, "failed", reason=reason))
        return out

    @property
    def running(self) -> int:
        return len(self._futures)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def cancel(self) -> None:
        """Terminate the workers (SIGTERM) instead of waiting for their trials to end."""
        terminate = getattr(self._pool, "terminate_workers", None)  # Python 3.14+
        if terminate is not None:
            terminate()
            self._futures.clear()
            return
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=10)
        self._futures.clear()
