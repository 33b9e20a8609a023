"""The cell supernet: a sampled sub-network computes exactly what the stand-alone network of that
cell computes with the same weights; mixtures and hard samples; the weight-name mapping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.errors import UserError
from workbench.nn.cell import build_cell
from workbench.nn.supernet import (
    Mixture,
    build_supernet,
    has_supernet,
    path_param_count,
    subnet_state,
    supernet_name,
)
from workbench.space.cell import CELL_OPS, EDGES, CellSpace


def _randomized(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """BatchNorm statistics and affine weights away from their defaults (a non-trivial test)."""
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
    return net


@pytest.mark.parametrize(
    "macro, shape",
    [
        ({"stages": 2, "cells_per_stage": 1, "width": 8}, (1, 8, 8)),
        ({"stages": 2, "cells_per_stage": 2, "width": 4}, (2, 9, 7)),
        ({"stages": 3, "cells_per_stage": 1, "width": 4}, (3, 20)),
    ],
)
def test_every_sampled_subnetwork_equals_its_standalone_network(macro, shape):
    """Property: for random cells (none-heavy ones included), the supernet's path and the
    stand-alone network loaded with the mapped weights (strict) agree to 1e-5, in eval and train mode."""
    space = CellSpace(**macro)
    torch.manual_seed(0)
    net = _randomized(build_supernet(space.macro, shape, 5))
    x = torch.randn(6, *shape)
    rng = np.random.default_rng(1)
    cells = [space.sample(rng) for _ in range(25)]
    cells += [space.make(["none"] * 6), space.make(["skip"] * 6), space.make(["conv3x3"] * 6)]
    for g in cells:
        ops = space.ops_of(g)
        alone = build_cell(g, shape, 5)
        alone.load_state_dict(subnet_state(net.state_dict(), ops), strict=True)
        for train in (False, True):
            net.train(train)
            alone.train(train)
            with torch.no_grad():
                a, b = net(x, ops), alone(x)
            assert torch.allclose(a, b, atol=1e-5, rtol=0), (space.describe(g), train, float((a - b).abs().max()))
        assert path_param_count(net, ops) == sum(p.numel() for p in alone.parameters())


def test_weight_names_map_both_ways():
    space = CellSpace(stages=2, width=4)
    net = build_supernet(space.macro, (1, 8, 8), 3)
    g = space.make(["conv3x3", "skip", "conv1x1", "avgpool3x3", "none", "conv3x3"])
    alone = build_cell(g, (1, 8, 8), 3)
    for name in alone.state_dict():
        parts = name.split(".")
        if len(parts) > 3 and parts[2] == "edges":
            edge = parts[3]
            op = dict(zip(EDGES, space.ops_of(g)))[edge]
            assert supernet_name(name, edge, op) in net.state_dict()
        else:
            assert name in net.state_dict()


def test_mixture_of_one_hot_weights_is_the_path_without_none():
    """A one-hot mixture on an all-live cell computes the path (same ops, weights 1)."""
    space = CellSpace(stages=1, width=4)
    torch.manual_seed(0)
    net = build_supernet(space.macro, (1, 6, 6), 3).eval()
    ops = ("conv3x3", "skip", "conv1x1", "avgpool3x3", "conv1x1", "skip")
    w = torch.zeros(len(EDGES), len(CELL_OPS))
    for e, op in enumerate(ops):
        w[e, CELL_OPS.index(op)] = 1.0
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        assert torch.allclose(net(x, Mixture(w)), net(x, ops), atol=1e-5)
        index = tuple(CELL_OPS.index(op) for op in ops)
        assert torch.allclose(net(x, Mixture(w, index)), net(x, ops), atol=1e-5)


def test_hard_mixture_passes_gradients_to_every_logit():
    space = CellSpace(stages=1, width=4)
    net = build_supernet(space.macro, (1, 6, 6), 3)
    alpha = torch.zeros(len(EDGES), len(CELL_OPS), requires_grad=True)
    soft = torch.softmax(alpha, dim=-1)
    index = tuple([CELL_OPS.index("conv3x3")] * len(EDGES))
    hard = torch.zeros_like(soft)
    hard[torch.arange(len(EDGES)), list(index)] = 1.0
    out = net(torch.randn(4, 1, 6, 6), Mixture(hard - soft.detach() + soft, index))
    out.square().mean().backward()
    assert alpha.grad is not None and bool((alpha.grad != 0).all())


def test_bad_input_is_a_user_error():
    assert has_supernet("cell-v1") and not has_supernet("chain-v1")
    with pytest.raises(UserError):
        build_supernet({"stages": 0}, (1, 8, 8), 3)
    with pytest.raises(UserError):
        build_supernet(None, (1, 2, 3, 4), 3)
    with pytest.raises(UserError):
        build_supernet(None, (1, 8, 8), 0)
