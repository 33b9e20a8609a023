"""Supernet training (SPOS, DARTS first and second order, GDAS), its checkpoints, the settings'
checks, derivation from op weights, and the one-shot estimator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.errors import UserError
from workbench.evaluate.trainer import TrainedEvaluator, accuracy
from workbench.nn.cell import build_cell
from workbench.nn.supernet import subnet_state
from workbench.oneshot.derive import derive, op_weights, ranked
from workbench.oneshot.estimator import OneShotEstimator
from workbench.oneshot.settings import EstimatorSettings, SupernetSettings
from workbench.oneshot.train import SupernetTrainer
from workbench.space.cell import CELL_OPS, EDGES
from workbench.space.relaxation import OpWeights


def trainer(splits, config, space, method, seed=0, **options):
    options.setdefault("epochs", config.epochs)  # single-path methods default to 4x the task's epochs
    return SupernetTrainer(splits, config, space.macro, SupernetSettings.read(method, options), seed=seed)


@pytest.mark.parametrize("method, options", [("darts", {}), ("darts", {"order": 2}), ("gdas", {"tau_max": 5.0})])
def test_op_weights_are_a_distribution_per_edge_and_derive_a_valid_cell(
    tiny_splits, tiny_config, tiny_space, method, options
):
    seen = []
    res = trainer(tiny_splits, tiny_config, tiny_space, method, **options).run(
        on_epoch=lambda e, m, w, ckpt: seen.append((e, dict(m), w))
    )
    assert [e for e, _, _ in seen] == [0, 1]
    for *_, w in seen + [(None, {}, res.op_weights)]:
        probs = w.array()
        assert probs.shape == (len(EDGES), len(CELL_OPS))
        assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0)
    assert all(0.0 <= m["val_accuracy"] <= 1.0 and np.isfinite(m["train_loss"]) for _, m, _ in seen)
    g = derive(tiny_space, res.op_weights)
    tiny_space.validate(g)
    assert "none" not in tiny_space.ops_of(g)
    assert next(ranked(tiny_space, res.op_weights)) == g
    assert len(res.history) == 2 and res.history[-1] == res.op_weights


def test_second_order_differs_from_first_order(tiny_splits, tiny_config, tiny_space):
    first = trainer(tiny_splits, tiny_config, tiny_space, "darts").run().op_weights
    second = trainer(tiny_splits, tiny_config, tiny_space, "darts", order=2).run().op_weights
    assert first != second


def test_resumed_training_equals_the_uninterrupted_one(tiny_splits, tiny_config, tiny_space):
    """A checkpoint after epoch 1, loaded with weights_only=True, continues exactly (CPU)."""
    import io

    straight = trainer(tiny_splits, tiny_config, tiny_space, "gdas").run()
    saved = {}

    def keep(epoch, metrics, weights, checkpoint):
        if epoch == 0:
            buf = io.BytesIO()
            torch.save(checkpoint(), buf)
            saved["state"] = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer(tiny_splits, tiny_config, tiny_space, "gdas").run(on_epoch=keep)
    resumed = trainer(tiny_splits, tiny_config, tiny_space, "gdas").run(resume=saved["state"])
    assert resumed.resumed_from == 1 and resumed.epochs == 2
    assert resumed.op_weights == straight.op_weights
    a, b = straight.supernet.state_dict(), resumed.supernet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.curve == straight.curve


def test_checkpoint_of_other_settings_is_refused(tiny_splits, tiny_config, tiny_space):
    state = {}
    trainer(tiny_splits, tiny_config, tiny_space, "spos").run(on_epoch=lambda e, m, w, c: state.update(c()))
    other = trainer(tiny_splits, tiny_config, tiny_space, "spos", w_lr=0.5)
    assert "settings differ" in other.compatible(state)
    with pytest.raises(UserError, match="cannot resume"):
        other.run(resume=state)
    assert "malformed" in other.compatible({"version": 1})


@pytest.mark.parametrize(
    "method, options, match",
    [
        ("darts", {"epochs": 0}, "epochs must be an integer in 1..1000"),
        ("darts", {"epochs": 10**9}, "epochs must be an integer"),
        ("darts", {"epochs": "many"}, "epochs must be an integer"),
        ("darts", {"alpha_lr": float("nan")}, "alpha_lr must be a finite number"),
        ("darts", {"w_lr": -1.0}, "w_lr must be"),
        ("gdas", {"tau_min": 5.0, "tau_max": 1.0}, "tau_min"),
        ("darts", {"warmup_epochs": 3, "epochs": 3}, "warmup_epochs"),
        ("darts", {"nope": 1}, "unknown supernet setting"),
        ("enas", {}, "method must be one of"),
    ],
)
def test_bad_settings_are_user_errors(method, options, match):
    with pytest.raises(UserError, match=match):
        SupernetSettings.read(method, options)


def test_order_two_is_darts_only(tiny_splits, tiny_config, tiny_space):
    with pytest.raises(UserError, match="order=2 is a DARTS setting"):
        trainer(tiny_splits, tiny_config, tiny_space, "gdas", order=2)


def test_estimator_settings():
    s = EstimatorSettings.read({"retrain_top": 2, "supernet_epochs": 3, "bn_recalibrate": False})
    assert (s.retrain_top, s.supernet.epochs, s.bn_recalibrate) == (2, 3, False)
    for bad in ({"retrain_top": -1}, {"bn_batches": 0}, {"bn_recalibrate": "maybe"}, {"population": 3}):
        with pytest.raises(UserError):
            EstimatorSettings.read(bad)


def test_op_weights_ranking_and_derivation():
    logits = np.zeros((len(EDGES), len(CELL_OPS)))
    logits[:, 0] = 5.0  # none dominates everywhere: DARTS still derives a cell without none
    logits[0, CELL_OPS.index("conv3x3")] = 2.0
    w = op_weights(torch.tensor(logits))
    ops = w.derive()
    assert "none" not in ops and ops[0] == "conv3x3"
    cells = list(w.ranked())
    assert cells[0] == ops and len(cells) == 4 ** len(EDGES) and len(set(cells)) == len(cells)
    assert w.derive(exclude=()) == ("none",) * len(EDGES)
    with pytest.raises(UserError):
        OpWeights(EDGES, CELL_OPS, ((0.5, 0.5, 0.0, 0.0, 0.1),) * len(EDGES))
    with pytest.raises(UserError):
        op_weights(torch.zeros(3, 3))


@pytest.mark.parametrize("bn", [False, True])
def test_estimate_is_the_standalone_network_with_inherited_weights(tiny_splits, tiny_config, tiny_space, bn):
    """Without recalibration the estimate is the accuracy of the stand-alone network carrying the
    supernet's weights; with it, the shared statistics are left exactly as they were."""
    res = trainer(tiny_splits, tiny_config, tiny_space, "spos").run()
    ev = TrainedEvaluator(tiny_splits, tiny_config)
    est = OneShotEstimator(ev, bn_recalibrate=bn, bn_batches=2)
    est.attach(res.supernet)
    before = {k: v.clone() for k, v in res.supernet.state_dict().items()}
    rng = np.random.default_rng(0)
    for _ in range(4):
        g = tiny_space.sample(rng)
        r = est.evaluate(g)
        assert r.state_dict is None and "test_accuracy" not in r.metrics
        assert 0.0 <= r.metrics["val_accuracy"] <= 1.0 and r.metrics["params"] > 0
        if not bn:
            net = build_cell(g, tiny_splits.input_shape, tiny_splits.n_classes)
            net.load_state_dict(subnet_state(res.supernet.state_dict(), tiny_space.ops_of(g)))
            x, y = torch.from_numpy(tiny_splits.x_val), torch.from_numpy(tiny_splits.y_val)
            assert r.metrics["val_accuracy"] == pytest.approx(accuracy(net, x, y))
    after = res.supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fair_sampling_trains_every_op_of_every_edge_each_step(tiny_splits, tiny_config, tiny_space):
    """FairNAS-style SPOS: after one step, every op module of every edge has a gradient."""
    t = trainer(tiny_splits, tiny_config, tiny_space, "spos", fair=True, epochs=1)
    t._fresh()
    x, y = t.x_tr[:32], t.y_tr[:32]
    t._weight_step(x, y, 1.0)
    for name, p in t.net.named_parameters():
        if ".ops." in name:
            assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    with pytest.raises(UserError, match="fair must be true or false"):
        SupernetSettings.read("spos", {"fair": "yes"})


def test_defaults_follow_the_task(tiny_config):
    """Single-path methods get 4x the task's epochs, DARTS its epochs; a quarter is warm-up."""
    spos, darts, gdas = (SupernetSettings.read(m).resolved(tiny_config) for m in ("spos", "darts", "gdas"))
    assert (spos.epochs, darts.epochs, gdas.epochs) == (8, 2, 8)
    assert (spos.warmup_epochs, darts.warmup_epochs, gdas.warmup_epochs) == (0, 0, 2)
    assert (spos.w_lr, spos.batch_size) == (tiny_config.lr, tiny_config.batch_size)
