"""The ``nasw`` command line: parses, builds objects, calls the search; nothing else.

Heavy modules (torch, mlflow, botorch) are imported inside the commands, so ``nasw --help``
stays fast. User mistakes print one ``error: ...`` line and exit with code 2 (:func:`main`).

Modules: :mod:`~workbench.cli.app` (the group, the entry point, shared helpers), then one per
concept of commands: :mod:`~workbench.cli.running` (``search``, ``resume``),
:mod:`~workbench.cli.browse` (``ls``, ``show``, ``lineage``, ``ui``), :mod:`~workbench.cli.reports`
(``compare``, ``export``, ``report``) and :mod:`~workbench.cli.tasks` (``tasks``, ``task init``, ``strategies``).
"""

from __future__ import annotations

from workbench.cli.app import cli, main
from workbench.cli.browse import lineage_cmd, ls_cmd, show_cmd, ui_cmd
from workbench.cli.reports import compare_cmd, export_cmd, report_cmd
from workbench.cli.running import resume_cmd, search_cmd
from workbench.cli.tasks import strategies_cmd, task_group, task_init_cmd, tasks_cmd

__all__ = [
    "cli",
    "compare_cmd",
    "export_cmd",
    "lineage_cmd",
    "ls_cmd",
    "main",
    "report_cmd",
    "resume_cmd",
    "search_cmd",
    "show_cmd",
    "strategies_cmd",
    "task_group",
    "task_init_cmd",
    "tasks_cmd",
    "ui_cmd",
]
