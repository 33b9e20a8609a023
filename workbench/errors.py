"""The project's own error types.

User mistakes raise :class:`UserError` (or a subclass) with what was expected and what was
received; the CLI turns them into one clear line and exit code 2.
"""

from __future__ import annotations


class NaswError(Exception):
    """Base class of every error the workbench raises on purpose."""


class UserError(NaswError):
    """Bad input from a user: a task file, a CLI argument, a dataset, a genotype."""


class InvalidGenotype(UserError):
    """A genotype does not belong to its search space."""


class TaskError(UserError):
    """A task file is missing or malformed."""


class DataError(UserError):
    """A user's dataset (CSV, NumPy arrays, image folder) is missing, unreadable or malformed.

    The message names the file and the problem.
    """


class StoreError(NaswError):
    """The metastore cannot be read or written."""


class NotFound(UserError):
    """A search, trial or task named by the user does not exist (or a prefix is ambiguous)."""


class TrialFailed(NaswError):
    """A trial could not be evaluated; ``reason`` says why (diverged, out of memory, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
