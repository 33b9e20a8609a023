"""Ray: trials on the workers of a Ray cluster (``--executor ray [--address HOST:PORT]``)."""

from __future__ import annotations

from metastore import Metastore
from workbench.errors import StoreError, UserError
from workbench.execute.base import Executor
from workbench.execute.trial import TrialJob, TrialOutcome
from workbench.execute.worker import run_job


class RayExecutor(Executor):
    """One Ray task per trial (one CPU each; one GPU each where the cluster has GPUs).

    Args:
        store: The search's store (used to fail trials whose worker died).
        store_uri: URI the workers open: every worker must reach it (an ``mlflow server`` for
            several machines; a SQLite path works on one machine).
        task_json: The task as JSON.
        workers: Trials at once.
        address: An existing cluster's address; None starts a local Ray instance.
        device: Training device for the workers.
    """

    def __init__(
        self,
        store: Metastore,
        store_uri: str,
        task_json: str,
        workers: int,
        address: str | None = None,
        device: str | None = None,
        save_weights: bool = True,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'nasw[ray]'") from None
        self._ray = ray
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False, include_dashboard=False, logging_level="WARNING")
                else:
                    ray.init(
                        num_cpus=max(workers, 1), log_to_driver=False, include_dashboard=False, logging_level="WARNING"
                    )
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UserError(f"cannot connect to Ray at {address or 'a local instance'}: {exc}") from None
        gpus = float(ray.cluster_resources().get("GPU", 0))
        self.capacity = int(workers)
        self._remote = ray.remote(num_cpus=1, num_gpus=1 if gpus >= 1 else 0, max_retries=0)(run_job)
        self._store = store
        self._args = (store_uri, task_json, device)
        self._save = save_weights
        self._refs: dict = {}

    def submit(self, job: TrialJob) -> None:
        self._refs[self._remote.remote(*self._args, job, self._save)] = job

    def wait(self) -> list[TrialOutcome]:
        ready, _ = self._ray.wait(list(self._refs), num_returns=1)
        out = []
        for ref in ready:
            job = self._refs.pop(ref)
            try:
                out.append(self._ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - a dead worker fails its trial
                reason = f"ray worker failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[
                    :500
                ]
                try:
                    self._store.finish_trial(job.trial_id, state="failed", reason=reason)
                except StoreError:
                    pass
                out.append(TrialOutcome(job.trial_id, job.number, "failed", reason=reason))
        return out

    @property
    def running(self) -> int:
        return len(self._refs)

    def shutdown(self) -> None:
        for ref in list(self._refs):
            self._ray.cancel(ref, force=True)
        self._refs.clear()
