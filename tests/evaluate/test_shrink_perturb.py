"""Shrink and perturb: inherited conv / dense weights are mixed with a fresh init before fine-tuning."""

from __future__ import annotations

import pytest
import torch

from workbench.data.base import load_splits
from workbench.errors import UserError
from workbench.evaluate.shrink_perturb import shrink_perturb
from workbench.evaluate.trainer import TrainConfig, TrainedEvaluator
from workbench.space.chain import ChainSpace
from workbench.task import parse_task_dict

SPACE = ChainSpace(max_layers=3, kernels=[3], widths=[16], dense_widths=[32])
G = SPACE.make([{"op": "conv", "kernel": 3, "width": 16, "act": "relu"}, {"op": "maxpool"}])


def _nets(ev):
    inherited, fresh = ev.build(G, 1), ev.build(G, 2)
    with torch.no_grad():
        for m in inherited.modules():  # distinguishable BatchNorm statistics
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.fill_(0.5)
                m.weight.fill_(2.0)
    return inherited, fresh


def test_mixes_conv_and_dense_weights_and_keeps_normalisation():
    ev = TrainedEvaluator(load_splits("digits"), TrainConfig(epochs=1))
    inherited, fresh = _nets(ev)
    before = {k: v.clone() for k, v in inherited.state_dict().items()}
    fresh_state = fresh.state_dict()
    changed = shrink_perturb(inherited, fresh_state, 0.3, 0.1)
    after = inherited.state_dict()
    mixed = {
        f"{p}.{n}"
        for p, m in inherited.named_modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
        for n, _ in m.named_parameters(recurse=False)
    }
    assert changed == len(mixed) >= 3  # the conv (no bias before BatchNorm) and the head
    for k, v in after.items():
        if k in mixed:
            assert torch.allclose(v, 0.3 * before[k] + 0.1 * fresh_state[k], atol=1e-7), k
        else:
            assert torch.equal(v, before[k]), k  # BatchNorm parameters and statistics untouched


def test_one_and_zero_keep_the_inherited_function():
    ev = TrainedEvaluator(load_splits("digits"), TrainConfig(epochs=1))
    inherited, fresh = _nets(ev)
    before = {k: v.clone() for k, v in inherited.state_dict().items()}
    assert shrink_perturb(inherited, fresh.state_dict(), 1.0, 0.0) == 0
    assert all(torch.equal(v, before[k]) for k, v in inherited.state_dict().items())


def test_fine_tuning_starts_from_the_shrunk_and_perturbed_weights():
    # a learning rate of ~0 leaves the mixed start visible in the trained weights
    cfg = TrainConfig(epochs=1, batch_size=256, finetune_lr=1e-30, weight_decay=0.0)
    ev = TrainedEvaluator(load_splits("digits"), cfg)
    parent = ev.evaluate(G, seed=0)
    child = ev.evaluate(G, seed=5, init_state=parent.state_dict)
    fresh = ev.build(G, 5).state_dict()
    key = next(k for k in parent.state_dict if k.endswith("weight") and parent.state_dict[k].dim() == 4)
    assert torch.allclose(child.state_dict[key], 0.3 * parent.state_dict[key] + 0.1 * fresh[key], atol=1e-6)
    exact = TrainedEvaluator(
        load_splits("digits"), TrainConfig(**{**cfg.to_dict(), "finetune_shrink": 1.0, "finetune_perturb": 0.0})
    )
    kept = exact.evaluate(G, seed=5, init_state=parent.state_dict)
    assert torch.allclose(kept.state_dict[key], parent.state_dict[key], atol=1e-6)


@pytest.mark.parametrize("bad", [{"finetune_shrink": 0}, {"finetune_shrink": 1.5}, {"finetune_perturb": -0.1}])
def test_bad_settings_are_a_clear_task_error(bad):
    with pytest.raises(UserError, match="finetune_"):
        parse_task_dict(
            {
                "name": "t",
                "dataset": {"loader": "digits"},
                "space": {"kind": "chain", "max_layers": 2, "kernels": [3], "widths": [8], "dense_widths": [16]},
                "training": {"epochs": 1, **bad},
            }
        )
