"""Shared fixtures: small spaces of every kind, a fresh store, offline settings."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest


def _load_helpers() -> None:
    """``tests/helpers.py`` (the CLI runner, tiny tasks, ...) as the module ``helpers``, so that test
    modules say ``from helpers import ...``. Loaded by path: with ``tests/`` on ``sys.path`` its
    folders (``tests/metastore``, ...) would shadow the packages of the same name."""
    path = Path(__file__).resolve().with_name("helpers.py")
    if getattr(sys.modules.get("helpers"), "__file__", None) == str(path):
        return
    spec = importlib.util.spec_from_file_location("helpers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["helpers"] = module
    spec.loader.exec_module(module)


_load_helpers()

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def _torch_threads() -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


_torch_threads()

# space kind -> settings used by the interface suites (each registered space is tested).
SPACE_SETTINGS = {
    "chain": {"max_layers": 4, "kernels": [3, 5], "widths": [8, 16], "dense_widths": [16, 32]},
    "dag": {},
    "cell": {},
    "nbgraph": {"dataset": "cora"},
    "joint": {"base": {"kind": "chain", "max_layers": 3, "kernels": [3], "widths": [8, 16], "dense_widths": [16]}},
}


def available_space_kinds() -> list[str]:
    from workbench.space.registry import space_kinds

    return [k for k in SPACE_SETTINGS if k in space_kinds()]


@pytest.fixture(params=available_space_kinds())
def any_space(request):
    from workbench.space.registry import make_space

    return make_space(request.param, **SPACE_SETTINGS[request.param])


@pytest.fixture
def chain_space():
    from workbench.space.chain import ChainSpace

    return ChainSpace(**SPACE_SETTINGS["chain"])


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """``tmp_path`` as the current folder, without ``NASW_STORE`` or ``NASW_TASKS`` from the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NASW_STORE", raising=False)
    monkeypatch.delenv("NASW_TASKS", raising=False)
    return tmp_path
