"""Fidelities: the value object and its cost model, cheaper networks and data, and how every
trial records the fidelity it was measured at (MLflow params and tags, histories)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import synthetic_search

from metastore.schema import TAG_FIDELITY as FIDELITY_TAG
from workbench.data.base import load_splits
from workbench.errors import TaskError, UserError
from workbench.evaluate.base import StopTraining, supports_fidelity
from workbench.evaluate.fidelity import Fidelity, FidelitySpace, continued, fidelity_space
from workbench.evaluate.tabular import TabularEvaluator
from workbench.evaluate.trainer import TrainConfig, TrainedEvaluator, resize_inputs, subset_indices
from workbench.nn.build import build_model
from workbench.space.chain import ChainSpace
from workbench.space.registry import make_space

SPACE = ChainSpace(max_layers=3, kernels=[3], widths=[16], dense_widths=[32])
G = SPACE.make([{"op": "conv", "kernel": 3, "width": 16, "act": "relu"}, {"op": "dense", "width": 32, "act": "relu"}])


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- the value object and the cost model --------------------------------------------------------
def test_cost_model_scales_with_every_knob():
    full = Fidelity(epochs=27)
    assert full.cost(27, dims=2) == pytest.approx(1.0)
    assert Fidelity(epochs=9).cost(27, 2) == pytest.approx(1 / 3)
    assert Fidelity(epochs=27, data_fraction=0.25).cost(27, 2) == pytest.approx(0.25)
    assert Fidelity(epochs=27, resolution=0.5).cost(27, 2) == pytest.approx(0.25)  # area
    assert Fidelity(epochs=27, resolution=0.5).cost(27, 1) == pytest.approx(0.5)  # signal length
    assert Fidelity(epochs=27, width_mult=0.5).cost(27, 2) == pytest.approx(0.25)
    assert Fidelity(epochs=27, start_epoch=9).cost(27, 2) == pytest.approx(2 / 3)  # continued: only new epochs


@pytest.mark.parametrize(
    "bad",
    [
        dict(epochs=0),
        dict(data_fraction=0.0),
        dict(data_fraction=1.5),
        dict(resolution=-1),
        dict(width_mult=0),
        dict(epochs=3, start_epoch=3),
    ],
)
def test_bad_fidelities_are_user_errors(bad):
    with pytest.raises(UserError):
        Fidelity(**bad)


def test_json_round_trip_ignores_record_extras():
    f = Fidelity(epochs=3, data_fraction=0.5, resolution=0.5, width_mult=0.75, start_epoch=1)
    assert Fidelity.from_json(f.to_json()) == f
    rec = f.record(full=False, cost=0.1, rung=1)
    assert Fidelity.from_dict(rec) == f and rec["full"] is False and rec["rung"] == 1
    assert f.params()["fidelity.epochs"] == 3


def test_rungs_are_eta_apart_in_cost():
    fs = fidelity_space({"epochs": [1, 27]}, full_epochs=27)
    assert [f.epochs for f in fs.rungs()] == [1, 3, 9, 27]
    assert fs.n_rungs == 4 and fs.is_full(fs.rungs()[-1])
    two = fidelity_space({"epochs": [1, 9], "data_fraction": [1 / 3, 1.0], "eta": 3}, full_epochs=9)
    costs = [two.cost(f) for f in two.rungs()]
    assert costs[-1] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(costs, costs[1:]))
    assert two.n_rungs == 4  # cost ratio 27


def test_default_fidelity_space_and_task_table_errors():
    fs = fidelity_space({}, full_epochs=40)
    assert fs.high == Fidelity(epochs=40) and fs.low.epochs == 1
    for table, msg in [
        ({"epochs": [5, 2]}, "above"),
        ({"data_fraction": [0, 1]}, r"\(0, 1\]"),
        ({"eta": 1}, "eta"),
        ({"speed": 2}, "unknown"),
        ({"epochs": [1, 2, 3]}, "pair"),
        ({"width_mult": "x"}, "numbers"),
    ]:
        with pytest.raises(TaskError, match=msg):
            fidelity_space(table, full_epochs=10, where="t")


def test_continued_only_when_the_network_keeps_its_shape():
    low, high = Fidelity(epochs=3), Fidelity(epochs=9)
    assert continued(high, low).start_epoch == 3
    assert continued(high, Fidelity(epochs=3, width_mult=0.5)).start_epoch == 0
    assert continued(Fidelity(epochs=9, resolution=0.5), Fidelity(epochs=3)).start_epoch == 0


# -- cheaper networks and data ------------------------------------------------------------------
@pytest.mark.parametrize("kind, shape", [("chain", (1, 16, 16)), ("dag", (1, 32)), ("cell", (3, 8, 8))])
def test_width_multiplier_makes_networks_smaller(kind, shape):
    settings = {"chain": {"max_layers": 3, "kernels": [3], "widths": [32], "dense_widths": [64]}}.get(kind, {})
    space = make_space(kind, **settings)
    g = space.sample(np.random.default_rng(0))
    if kind == "chain":
        g = space.make(
            [{"op": "conv", "kernel": 3, "width": 32, "act": "relu"}, {"op": "dense", "width": 64, "act": "relu"}]
        )
    full = n_params(build_model(g, shape, 10))
    assert n_params(build_model(g, shape, 10, width_mult=1.0)) == full
    half = build_model(g, shape, 10, width_mult=0.5)
    assert n_params(half) < 0.6 * full
    assert half(torch.zeros(2, *shape)).shape == (2, 10)


def test_data_fraction_subsets_are_balanced_and_nested():
    y = np.repeat(np.arange(4), [100, 50, 30, 20])
    small, big = subset_indices(y, 0.25), subset_indices(y, 0.5)
    assert len(small) == 50 and len(big) == 100
    assert set(small) <= set(big)
    counts = np.bincount(y[small], minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), [0.5, 0.25, 0.15, 0.1], atol=0.03)
    assert len(subset_indices(y, 1.0)) == 200


def test_resolution_downsamples_signals_and_images():
    assert resize_inputs(torch.ones(5, 1, 40), 0.5).shape == (5, 1, 20)
    assert resize_inputs(torch.ones(5, 3, 28, 28), 0.5).shape == (5, 3, 14, 14)
    x = torch.arange(8.0).reshape(1, 1, 8)
    torch.testing.assert_close(resize_inputs(x, 0.5), torch.tensor([[[0.5, 2.5, 4.5, 6.5]]]))


@pytest.fixture(scope="module")
def digits():
    return load_splits("digits")


def test_trainer_at_lower_fidelities_trains_less(digits):
    ev = TrainedEvaluator(digits, TrainConfig(epochs=4, batch_size=64))
    assert supports_fidelity(ev) and not supports_fidelity(TabularEvaluator("cora"))
    full = ev.evaluate(G, seed=0)
    assert len(full.curve) == 4
    short = ev.evaluate(G, seed=0, fidelity=Fidelity(epochs=2))
    assert len(short.curve) == 2 and short.metrics["epochs"] == 2
    thin = ev.evaluate(G, seed=0, fidelity=Fidelity(epochs=1, width_mult=0.5))
    assert thin.metrics["params"] < full.metrics["params"]
    coarse = ev.evaluate(G, seed=0, fidelity=Fidelity(epochs=1, resolution=0.5))
    assert ev.input_shape_at(Fidelity(resolution=0.5)) == (1, 4, 4)
    assert coarse.metrics["params"] < full.metrics["params"]  # the flattened features shrink
    few = ev.evaluate(G, seed=0, fidelity=Fidelity(epochs=1, data_fraction=0.2))
    assert ev._data(Fidelity(data_fraction=0.2))["y_train"].shape[0] < 0.25 * len(digits.y_train)
    assert np.isfinite(few.metrics["val_accuracy"])
    # cheaper means faster: 1 epoch on a fifth of the data beats 4 epochs on all of it
    assert few.metrics["train_seconds"] < full.metrics["train_seconds"]


def test_promotion_continues_from_weights_for_the_remaining_epochs(digits):
    ev = TrainedEvaluator(digits, TrainConfig(epochs=6, batch_size=64))
    low = ev.evaluate(G, seed=0, fidelity=Fidelity(epochs=2))
    seen: list[int] = []
    up = ev.evaluate(
        G,
        seed=0,
        init_state=low.state_dict,
        fidelity=Fidelity(epochs=6, start_epoch=2),
        on_epoch=lambda e, m: seen.append(e),
    )
    assert seen == [2, 3, 4, 5]
    assert up.metrics["epochs"] == 6 and up.metrics["epochs_trained"] == 4
    # without weights to continue from it trains the whole fidelity from scratch, with a note
    scratch = ev.evaluate(G, seed=0, fidelity=Fidelity(epochs=3, start_epoch=2))
    assert len(scratch.curve) == 3 and "fidelity" in scratch.notes


def test_a_stop_from_the_epoch_callback_ends_training_with_its_metrics(digits):
    ev = TrainedEvaluator(digits, TrainConfig(epochs=5, batch_size=64))

    def stop_at_two(epoch, metrics):
        if epoch == 1:
            raise StopTraining("lc", "test stop", {"lc_predicted_final": 0.5})

    r = ev.evaluate(G, seed=0, on_epoch=stop_at_two)
    assert r.stopped is not None and r.stopped.rule == "lc"
    assert len(r.curve) == 2 and r.metrics["epochs"] == 2
    assert r.metrics["val_accuracy"] == r.curve[-1]["val_accuracy"]


# -- every trial records its fidelity -------------------------------------------------------------
TASK = {
    "name": "synthetic-chain",
    "kind": "trained",
    "dataset": {"loader": "digits"},
    "space": {"kind": "chain", "max_layers": 3, "kernels": [3, 5], "widths": [8, 16], "dense_widths": [16, 32]},
    "training": {"epochs": 9},
    "fidelity": {"epochs": [1, 9]},
}


@pytest.fixture
def mlflow_store(tmp_path):
    from metastore import open_store

    return open_store(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_fidelity_shows_in_mlflow_and_histories_skip_low_fidelity_trials(mlflow_store):
    search = synthetic_search(mlflow_store, TASK, "sh", budget=2)
    result = search.run()
    trials = mlflow_store.trials(result.search_id)
    assert len(trials) == 13  # rungs 9 -> 3 -> 1 (epochs 1, 3, 9)
    for t in trials:
        rec = json.loads(t.tags[FIDELITY_TAG])
        assert t.params["fidelity.epochs"] == str(rec["epochs"])
        assert rec["full"] == (rec["epochs"] == 9)
    full = [t.trial_id for t in trials if json.loads(t.tags[FIDELITY_TAG])["full"]]
    assert len(full) == 1 and result.best_trial.trial_id == full[0]
    hist = mlflow_store.histories("chain-v1", "val_accuracy")
    assert hist["synthetic-chain"].trial_ids == full
    everything = mlflow_store.histories("chain-v1", "val_accuracy", full_fidelity_only=False)["synthetic-chain"]
    assert len(everything.trial_ids) == 13
    assert sorted(f["epochs"] for f in everything.fidelities) == [1] * 9 + [3] * 3 + [9]


def test_memory_store_histories_and_resumed_observations_know_the_fidelity():
    from metastore import open_store
    from workbench.search import observation_of

    store = open_store("memory://")
    search = synthetic_search(store, TASK, "sh", budget=2)
    result = search.run()
    assert len(store.histories("chain-v1", "val_accuracy")["synthetic-chain"].trial_ids) == 1
    obs = [observation_of(t, "val_accuracy", search.space) for t in store.trials(result.search_id)]
    assert sorted(o.fidelity["epochs"] for o in obs) == [1] * 9 + [3] * 3 + [9]
    assert all(o.fidelity["full"] == (o.fidelity["epochs"] == 9) for o in obs)


def test_a_search_without_scheduler_records_full_fidelity():
    from metastore import open_store

    store = open_store("memory://")
    search = synthetic_search(store, TASK, None, budget=3)
    result = search.run()
    trials = store.trials(result.search_id)
    assert len(trials) == 3
    assert all(
        json.loads(t.tags[FIDELITY_TAG]) == {**Fidelity(epochs=9).to_dict(), "full": True, "cost": 1.0, "level": 1.0}
        for t in trials
    )
    assert len(store.histories("chain-v1", "val_accuracy")["synthetic-chain"].trial_ids) == 3


def test_fidelity_space_object_checks_its_ends():
    with pytest.raises(UserError):
        FidelitySpace(Fidelity(epochs=9), Fidelity(epochs=3))
    with pytest.raises(UserError):
        FidelitySpace(Fidelity(epochs=1), Fidelity(epochs=3), eta=1)
