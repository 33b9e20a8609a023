"""Executors: where trials run (in process, a local process pool, Ray)."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod

from workbench.errors import UserError
from workbench.execute.trial import TrialJob, TrialOutcome


class Executor(ABC):
    """Runs started trials, several at once where it can.

    Contract:
        * ``submit`` never blocks for long; ``wait`` blocks until at least one submitted trial
          has ended and returns the outcomes of all that ended (never the same one twice).
        * A trial whose worker dies is returned as failed with the reason (the executor marks it
          failed in the store when the worker could not).
        * ``capacity`` is the number of trials that may run at once.
    """

    capacity: int = 1

    @abstractmethod
    def submit(self, job: TrialJob) -> None:
        """Start running ``job``."""

    @abstractmethod
    def wait(self) -> list[TrialOutcome]:
        """Block until one or more submitted trials end; return their outcomes."""

    @property
    @abstractmethod
    def running(self) -> int:
        """Trials submitted and not yet returned by ``wait``."""

    def shutdown(self) -> None:
        """Release workers (idempotent)."""

    def cancel(self) -> None:
        """Stop the trials still running at once (the search was interrupted and fails them
        itself), then release the workers; by default :meth:`shutdown`."""
        self.shutdown()


_EXECUTORS = {
    "inprocess": "workbench.execute.inprocess:InProcessExecutor",
    "pool": "workbench.execute.pool:PoolExecutor",
    "ray": "workbench.execute.ray_executor:RayExecutor",
}


def executor_names() -> list[str]:
    """Names accepted by ``--executor``."""
    return sorted(_EXECUTORS)


def executor_class(name: str) -> type[Executor]:
    """The executor class registered under ``name``."""
    if name not in _EXECUTORS:
        raise UserError(f"unknown executor {name!r}; expected one of {executor_names()}")
    module, cls = _EXECUTORS[name].split(":")
    return getattr(importlib.import_module(module), cls)
