"""The CUDA path: morphed children keep their function on the GPU and fine-tune there."""

from __future__ import annotations

import pytest
import torch

from workbench.data.base import load_splits
from workbench.evaluate.trainer import TrainConfig, TrainedEvaluator
from workbench.morph.lineage import morph_child
from workbench.space.chain import ChainSpace
from workbench.space.edits import MorphismStep

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_morph_on_gpu_trained_parent_then_fine_tune_on_gpu():
    space = ChainSpace(max_layers=4, kernels=[3, 5], widths=[16, 32], dense_widths=[64])
    g = space.make([{"op": "conv", "kernel": 3, "width": 16, "act": "relu"}, {"op": "maxpool"}])
    splits = load_splits("digits")
    ev = TrainedEvaluator(splits, TrainConfig(epochs=3, device="cuda", finetune_epochs=1))
    parent = ev.evaluate(g, seed=0)
    steps = [
        MorphismStep.make("widen", (0,), width=32),
        MorphismStep.make("deepen", (1,), layer="conv", width=32, kernel=3),
    ]
    child_g, state = morph_child(g, parent.state_dict, steps, splits.input_shape, splits.n_classes)
    dev = torch.device("cuda")
    p_net, c_net = ev.build(g, 0), ev.build(child_g, 0)
    p_net.load_state_dict(parent.state_dict)
    c_net.load_state_dict(state)
    x = torch.from_numpy(splits.x_val).to(dev)
    with torch.no_grad():
        a = p_net.to(dev, memory_format=torch.channels_last).eval()(x)
        b = c_net.to(dev, memory_format=torch.channels_last).eval()(x)
    assert float((a - b).abs().max()) <= 1e-2 * max(1.0, float(a.abs().max()))  # TF32 convolutions
    assert bool((a.argmax(1) == b.argmax(1)).float().mean() > 0.99)
    child = ev.evaluate(child_g, seed=1, init_state=state)
    assert child.metrics["epochs"] == 1 and not child.notes
    assert child.metrics["val_accuracy"] >= parent.metrics["val_accuracy"] - 0.05


def test_gpu_check_script_passes():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([]) == 0
