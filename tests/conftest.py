"""Shared fixtures: small spaces of every kind, a fresh store, offline settings."""

from __future__ import annotations

import os

import numpy as np
import pytest

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
