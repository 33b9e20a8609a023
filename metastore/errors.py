"""The root of nasw's error hierarchy: the errors the metastore raises.

:mod:`workbench.errors` re-exports these and defines the rest of the hierarchy on top, so an
``except UserError`` anywhere catches the store's :class:`NotFound` too. The metastore imports
nothing from ``workbench``.
"""

from __future__ import annotations


class NaswError(Exception):
    """Base class of every error the workbench raises on purpose."""


class UserError(NaswError):
    """Bad input from a user: a task file, a CLI argument, a dataset, a genotype."""


class StoreError(NaswError):
    """The metastore cannot be read or written."""


class NoStore(StoreError):
    """There is no store where a command that only reads (or continues) one looked for it."""


class NotFound(UserError):
    """A search, trial or task named by the user does not exist (or a prefix is ambiguous)."""


__all__ = ["NaswError", "NoStore", "NotFound", "StoreError", "UserError"]
