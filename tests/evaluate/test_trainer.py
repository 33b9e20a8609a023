"""Trainer: learns, is seeded, records curves, fails diverging trials with a reason."""

from __future__ import annotations

import pytest

from workbench.data.base import load_splits
from workbench.errors import TrialFailed
from workbench.evaluate.trainer import TrainConfig, TrainedEvaluator
from workbench.space.chain import ChainSpace

SPACE = ChainSpace(max_layers=3, kernels=[3], widths=[16], dense_widths=[32])
G = SPACE.make([{"op": "conv", "kernel": 3, "width": 16, "act": "relu"}, {"op": "maxpool"}])


def test_trains_digits_and_records_every_epoch():
    ev = TrainedEvaluator(load_splits("digits"), TrainConfig(epochs=4, batch_size=64, lr=3e-3))
    seen = []
    r = ev.evaluate(G, seed=0, on_epoch=lambda e, m: seen.append((e, m["val_accuracy"])))
    assert [e for e, _ in seen] == [0, 1, 2, 3]
    assert len(r.curve) == 4 and r.metrics["val_accuracy"] == r.curve[-1]["val_accuracy"]
    assert r.metrics["test_accuracy"] > 0.8
    assert r.metrics["params"] > 0 and r.state_dict


def test_same_seed_same_result():
    ev = TrainedEvaluator(load_splits("digits"), TrainConfig(epochs=2))
    a, b = ev.evaluate(G, seed=3), ev.evaluate(G, seed=3)
    assert a.metrics["val_accuracy"] == b.metrics["val_accuracy"]
    assert a.curve == b.curve


def test_diverging_trial_fails_with_reason():
    ev = TrainedEvaluator(load_splits("digits"), TrainConfig(epochs=3, lr=1e12, grad_clip=1e30))
    with pytest.raises(TrialFailed, match="diverged"):
        ev.evaluate(SPACE.make([{"op": "dense", "width": 32, "act": "relu"}]), seed=0)


def test_inherited_weights_that_do_not_fit_train_from_scratch_with_a_note():
    ev = TrainedEvaluator(load_splits("digits"), TrainConfig(epochs=1))
    r = ev.evaluate(G, seed=0, init_state={"bogus": __import__("torch").zeros(1)})
    assert "weights" in r.notes
