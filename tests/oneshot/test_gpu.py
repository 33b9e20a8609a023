"""The CUDA path of the one-shot layer: supernet training in bf16 autocast with channels-last
images, the estimator on the GPU, and sub-networks that still match their stand-alone networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.nn.cell import build_cell
from workbench.nn.supernet import subnet_state
from workbench.oneshot.estimator import OneShotEstimator
from workbench.oneshot.settings import SupernetSettings
from workbench.oneshot.train import SupernetTrainer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("method", ["spos", "darts", "gdas"])
def test_supernet_trains_on_cuda(tiny_splits, tiny_space, method):
    from workbench.evaluate.trainer import TrainConfig

    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.01, device="cuda")
    trainer = SupernetTrainer(tiny_splits, cfg, tiny_space.macro, SupernetSettings.read(method), device="cuda")
    res = trainer.run()
    assert next(res.supernet.parameters()).device.type == "cuda"
    assert all(np.isfinite(p["train_loss"]) for p in res.curve)
    if method != "spos":
        assert np.allclose(res.op_weights.array().sum(axis=1), 1.0)
        state = trainer.checkpoint()
        assert all(v.device.type == "cpu" for v in state["supernet"].values())


def test_estimator_and_subnetworks_on_cuda(tiny_splits, tiny_space):
    from workbench.evaluate.trainer import TrainConfig, TrainedEvaluator

    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.01, device="cuda")
    res = SupernetTrainer(tiny_splits, cfg, tiny_space.macro, SupernetSettings.read("spos"), device="cuda").run()
    est = OneShotEstimator(TrainedEvaluator(tiny_splits, cfg), bn_recalibrate=True, bn_batches=2)
    est.attach(res.supernet)
    g = tiny_space.sample(np.random.default_rng(0))
    assert 0.0 <= est.evaluate(g).metrics["val_accuracy"] <= 1.0
    ops = tiny_space.ops_of(g)
    alone = build_cell(g, tiny_splits.input_shape, tiny_splits.n_classes).cuda().eval()
    alone.load_state_dict(subnet_state(res.supernet.state_dict(), ops))
    x = torch.from_numpy(tiny_splits.x_val).cuda()
    with torch.no_grad():
        a, b = res.supernet.eval()(x, ops), alone(x)
    assert float((a - b).abs().max()) <= 1e-2 * max(1.0, float(a.abs().max()))  # TF32 convolutions
