"""Tiny data and settings for the one-shot tests: a slice of digits, width-4 cells."""

from __future__ import annotations

import dataclasses

import pytest


@pytest.fixture(scope="session")
def tiny_splits():
    """160 training, 60 validation, 60 test digits (a few milliseconds per supernet epoch)."""
    from workbench.data.base import load_splits

    s = load_splits("digits")
    return dataclasses.replace(
        s,
        x_train=s.x_train[:160],
        y_train=s.y_train[:160],
        x_val=s.x_val[:60],
        y_val=s.y_val[:60],
        x_test=s.x_test[:60],
        y_test=s.y_test[:60],
    )


@pytest.fixture
def tiny_config():
    from workbench.evaluate.trainer import TrainConfig

    return TrainConfig(epochs=2, batch_size=32, lr=0.01, device="cpu")


@pytest.fixture
def tiny_space():
    from workbench.space.cell import CellSpace

    return CellSpace(stages=2, cells_per_stage=1, width=4)


#: A tiny cell task file: digits, width-4 cells, 1 epoch (tests of the CLI path).
TINY_CELL = """
name = "tiny-cell"
kind = "trained"
[dataset]
loader = "digits"
[split]
seed = 0
[metric]
objective = "val_accuracy"
report = "test_accuracy"
[space]
kind = "cell"
stages = 2
cells_per_stage = 1
width = 4
[training]
epochs = 1
batch_size = 128
"""


@pytest.fixture
def tiny_cell_task(workdir):
    path = workdir / "tiny-cell.toml"
    path.write_text(TINY_CELL)
    return path
