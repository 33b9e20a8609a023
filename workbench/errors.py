"""The project's own error types.

User mistakes raise :class:`UserError` (or a subclass) with what was expected and what was
received; the CLI turns them into one clear line and exit code 2.
"""

from __future__ import annotations

# the root of the hierarchy lives with the store, which imports nothing from workbench
from metastore.errors import NaswError, NotFound, StoreError, UserError

__all__ = [
    "DataError",
    "InvalidGenotype",
    "NaswError",
    "NotFound",
    "StoreError",
    "TaskError",
    "TrialFailed",
    "UserError",
]


class InvalidGenotype(UserError):
    """A genotype does not belong to its search space."""


class TaskError(UserError):
    """A task file is missing or malformed."""


class DataError(UserError):
    """A user's dataset (CSV, NumPy arrays, image folder) is missing, unreadable or malformed.

    The message names the file and the problem.
    """


class TrialFailed(NaswError):
    """A trial could not be evaluated; ``reason`` says why (diverged, out of memory, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
