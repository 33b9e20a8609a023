"""Helpers shared by the test files: run ``nasw`` in this process, make tiny tasks, run a search
with the synthetic evaluator.

``tests/conftest.py`` loads this file as the module ``helpers``, so a test module imports them with
``from helpers import nasw, tiny_toml``.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

# -- the command line ------------------------------------------------------------------------------


def nasw(args: Sequence[Any], capsys=None, *, cwd: str | os.PathLike[str] | None = None) -> tuple[int, str, str]:
    """Run ``nasw ARGS`` in this process; return (exit code, stdout, stderr).

    With pytest's ``capsys`` the output is read from its capture (and includes anything the test
    printed earlier and has not read yet); the command must end with ``SystemExit``, as ``main``
    always does. Without it, stdout and stderr are redirected for this one call (usable where no
    ``capsys`` exists, e.g. in a module-scoped fixture), in ``cwd`` if given.
    """
    from workbench.cli import main

    argv = [str(a) for a in args]
    if capsys is not None:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        out = capsys.readouterr()
        return exc.value.code, out.out, out.err
    out_buf, err_buf = io.StringIO(), io.StringIO()
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out_buf), contextlib.redirect_stderr(err_buf):
            try:
                main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            else:  # pragma: no cover - main always exits
                code = 0
    finally:
        if cwd is not None:
            os.chdir(old)
    return code, out_buf.getvalue(), err_buf.getvalue()


# -- tiny tasks ------------------------------------------------------------------------------------
#: The tiny chain space: at most 2 layers, one kernel size, two widths (seconds per trial on a CPU).
TINY_SPACE: dict[str, Any] = {"kind": "chain", "max_layers": 2, "kernels": [3], "widths": [4, 8], "dense_widths": [16]}
#: One epoch in large batches.
TINY_TRAINING: dict[str, Any] = {"epochs": 1, "batch_size": 128}
_DEFAULT_SPLIT: dict[str, Any] = {"seed": 0}


def tiny_doc(
    name: str = "tiny-digits",
    description: str | None = "digits, 1 epoch, tiny chain nets (tests)",
    *,
    kind: str | None = "trained",
    loader: str = "digits",
    split: Mapping[str, Any] | None = _DEFAULT_SPLIT,
    space: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    **sections: Mapping[str, Any],
) -> dict[str, Any]:
    """A tiny trained task as a task-file document (the dict a TOML task file parses to).

    ``space`` and ``training`` are merged over :data:`TINY_SPACE` and :data:`TINY_TRAINING`;
    ``description``, ``kind`` or ``split`` set to None leave that entry out; further keyword
    arguments add sections after ``[training]`` (``fidelity={...}``, ``meta_features={...}``).
    """
    doc: dict[str, Any] = {"name": name}
    if description is not None:
        doc["description"] = description
    if kind is not None:
        doc["kind"] = kind
    doc["dataset"] = {"loader": loader}
    if split is not None:
        doc["split"] = dict(split)
    doc["space"] = {**TINY_SPACE, **(space or {})}
    doc["training"] = {**TINY_TRAINING, **(training or {})}
    doc.update({key: dict(value) for key, value in sections.items()})
    return doc


def task_toml(doc: Mapping[str, Any]) -> str:
    """A task-file document as TOML text: top-level values first, then one table per section."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"no TOML for {v!r}")

    lines = [""]
    lines += [f"{k} = {value(v)}" for k, v in doc.items() if not isinstance(v, Mapping)]
    for section, table in doc.items():
        if isinstance(table, Mapping):
            lines.append(f"[{section}]")
            lines += [f"{k} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def tiny_toml(*args: Any, **kwargs: Any) -> str:
    """:func:`tiny_doc` as the text of a task file."""
    return task_toml(tiny_doc(*args, **kwargs))


def tiny_task(*args: Any, **kwargs: Any):
    """:func:`tiny_doc` parsed into a :class:`~workbench.task.Task`."""
    from workbench.task import parse_task_dict

    return parse_task_dict(tiny_doc(*args, **kwargs))


# -- searches with the synthetic evaluator (instant) -----------------------------------------------


def synthetic_search(
    store,
    doc: Mapping[str, Any],
    scheduler: str | None,
    budget: float,
    *,
    strategy: str = "random",
    strategy_options: Mapping[str, Any] | None = None,
    **search_options: Any,
):
    """A started search of the task document ``doc`` with :class:`SyntheticEvaluator` (full
    fidelity = the task's ``[training] epochs``) under ``scheduler`` (or none), ``budget`` full
    trainings; strategy and search seed 0. ``search_options`` go to :class:`~workbench.search.Search`."""
    from workbench.evaluate.fidelity import fidelity_space
    from workbench.evaluate.schedulers import make_scheduler
    from workbench.evaluate.synthetic import SyntheticEvaluator
    from workbench.search import Search
    from workbench.space.registry import make_space
    from workbench.strategy.registry import make_strategy
    from workbench.task import parse_task_dict

    full_epochs = doc["training"]["epochs"]
    task = parse_task_dict(dict(doc))
    space = make_space(**doc["space"])
    fs = fidelity_space(task.fidelity, full_epochs)
    sched = make_scheduler(scheduler, fs, budget) if scheduler else None
    search = Search(
        store,
        task,
        make_strategy(strategy, space, seed=0, **(strategy_options or {})),
        SyntheticEvaluator(full_epochs=full_epochs),
        space,
        max(1, int(budget)),
        seed=0,
        scheduler=sched,
        fidelity_space=fs,
        **search_options,
    )
    search.start()
    return search


# -- stores ----------------------------------------------------------------------------------------


def weights_file(store, trial_id: str) -> Path:
    """The local file holding an MLflow-store trial's weights artifact."""
    from metastore.mlflow_setup import local_folder as _local_folder

    return Path(_local_folder(store._trial_run(trial_id).info.artifact_uri)) / "weights" / "model.pt"


def drive(strategy, objective, n):
    """Ask ``strategy`` for one genotype at a time and tell it ``objective``'s value, ``n`` times;
    return the observations."""
    from workbench.strategy.base import Observation

    out = []
    for _ in range(n):
        (p,) = strategy.ask(1)
        o = Observation(p.genotype, objective(p.genotype))
        strategy.tell([o])
        out.append(o)
    return out
