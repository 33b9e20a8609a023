"""Bayesian optimisation (``bo``): model, acquisition, batches, multi-objective, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import drive
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import UserError
from workbench.strategy.base import Observation
from workbench.strategy.pareto import hypervolume_2d, pareto_front
from workbench.strategy.registry import make_strategy

pytest.importorskip("botorch")

from workbench.strategy.bo.acquisition import log_ei, reference_point  # noqa: E402
from workbench.strategy.bo.model import (  # noqa: E402
    FitSettings,
    GPModel,
    KernelLayout,
    _Objective,
    fit_hyperparameters,
)
from workbench.strategy.bo.strategy import BayesianOptimization, transform_targets  # noqa: E402


def _data(n: int = 30, d: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.integers(0, 2, (n, d)).astype(float))
    y = torch.as_tensor(np.sin(x.numpy() @ rng.normal(size=d)) + 0.05 * rng.normal(size=n))
    return x, (y - y.mean()) / y.std()


# -- the model ----------------------------------------------------------------------------


def test_analytic_gradient_matches_autograd():
    x, y = _data()
    layout = KernelLayout.from_blocks([[[0, 1, 2], [3, 4, 5, 6]], [[7, 8, 9, 10, 11]]])
    obj = _Objective(x, y, layout, FitSettings())
    theta = np.array([0.3, -0.2, 0.5, -0.5, -1.0, -2.0, 0.1])
    value, grad = obj(theta)
    t = torch.tensor(theta, requires_grad=True)
    ref = obj.value(t)
    (ref_grad,) = torch.autograd.grad(ref, t)
    assert value == pytest.approx(float(ref.detach()), rel=1e-10)
    np.testing.assert_allclose(grad, ref_grad.numpy(), rtol=1e-6, atol=1e-8)


def test_fit_is_deterministic_and_improves_on_the_start():
    x, y = _data(40)
    layout = KernelLayout.from_blocks([[list(range(12))]])
    a = fit_hyperparameters(x, y, layout)
    b = fit_hyperparameters(x, y, layout)
    assert a.lengthscales.tolist() == b.lengthscales.tolist() and a.noise == b.noise and a.mean == b.mean
    obj = _Objective(x, y, layout, FitSettings())
    start = obj(np.array([math.log(math.sqrt(12)), 0.0, math.log(0.05), 0.0]))[0]
    assert a.nll < start


def test_fast_posterior_equals_botorch_single_task_gp():
    from botorch.acquisition.analytic import LogExpectedImprovement

    x, y = _data(25)
    layout = KernelLayout.from_blocks([[[0, 1, 2, 3, 4, 5], [6, 7]], [[8, 9, 10, 11]]])
    gp = GPModel.fit(x, y, layout)
    xt = torch.as_tensor(np.random.default_rng(1).integers(0, 2, (17, 12)).astype(float))
    mean, var = gp.predict(xt)
    model = gp.single_task_gp()
    with torch.no_grad():
        post = model.posterior(xt)
    np.testing.assert_allclose(mean.numpy(), post.mean[:, 0].numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(var.numpy(), post.variance[:, 0].numpy(), rtol=1e-5, atol=1e-8)
    best = float(y.max())
    with torch.no_grad():
        ref = LogExpectedImprovement(model, best_f=best)(xt.unsqueeze(1))
    np.testing.assert_allclose(log_ei(gp, xt, best).numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)


def test_transform_targets():
    y = np.array([0.1, 0.8, 0.81, 0.79, 0.8])
    for kind in ("power", "rank", "standardize"):
        z = transform_targets(y, kind)
        assert z.mean() == pytest.approx(0.0, abs=1e-12) and z.std() == pytest.approx(1.0)
        assert np.argmax(z) == 2 and np.argmin(z) == 0
    z = transform_targets(y, "rank")
    assert z[1] == z[4]  # ties share a rank
    assert transform_targets(np.array([3.0]), "standardize").tolist() == [0.0]


# -- the strategy -------------------------------------------------------------------------


def _nb_objective(dataset: str = "cora"):
    from workbench.evaluate.tabular import table_arrays
    from workbench.space.nbgraph import NBGraphSpace

    space = NBGraphSpace(dataset)
    arrays = table_arrays(dataset)
    return space, arrays


def test_options_are_checked(chain_space):
    with pytest.raises(UserError, match="transform"):
        make_strategy("bo", chain_space, transform="log")
    with pytest.raises(UserError, match="encoding"):
        make_strategy("bo", chain_space, encoding="path")
    with pytest.raises(UserError, match="n_init"):
        make_strategy("bo", chain_space, n_init=-1)
    with pytest.raises(UserError, match="objectives"):
        make_strategy("bo", chain_space, objectives=["a", "a"])


def test_planted_optimum_found_faster_than_random():
    """On a smooth objective over the chain space (closeness of the one-hot encoding to a
    planted genotype), BO ends closer to the optimum than random search, over several seeds."""
    from workbench.space.chain import ChainSpace

    space = ChainSpace(max_layers=4, kernels=[3, 5], widths=[8, 16, 32], dense_widths=[16, 32])
    planted = space.sample(np.random.default_rng(123))
    target = space.encode([planted])[0]

    def f(g):
        return -float(((space.encode([g])[0] - target) ** 2).sum())

    finals = {}
    for name in ("random", "bo"):
        bests = []
        for seed in range(4):
            obs = drive(make_strategy(name, space, seed=seed), f, 24)
            bests.append(max(o.value for o in obs))
        finals[name] = float(np.mean(bests))
    assert finals["bo"] > finals["random"]


def test_batch_asks_with_pending_are_distinct():
    space, arrays = _nb_objective()
    s = make_strategy("bo", space, seed=0, n_init=4)
    drive(s, lambda g: float(arrays.val_accuracy[space.index_of(g)]), 8)
    first = [p.genotype for p in s.ask(3)]
    second = [p.genotype for p in s.ask(4, pending=first)]
    keys = [g.key for g in first + second]
    assert len(set(keys)) == 7
    assert not set(keys) & {o.genotype.key for o in s.history}
    # one proposal with pending points goes through qLogNEI and still avoids them
    (p,) = s.ask(1, pending=first + second)
    assert p.genotype.key not in set(keys)


def test_batch_on_a_sampled_pool(chain_space):
    s = make_strategy("bo", chain_space, seed=3, n_init=3)
    drive(s, lambda g: float(len(g.value["layers"])), 6)
    pend = [p.genotype for p in s.ask(2)]
    props = [p.genotype for p in s.ask(3, pending=pend)]
    assert len({g.key for g in props + pend}) == 5
    for g in props:
        chain_space.validate(g)


def test_local_search_of_the_acquisition_on_a_sampled_pool(chain_space):
    """``local_rounds``: the sampled candidates plus mutations of the best by LogEI, never a
    told or pending genotype, at least as good an acquisition as without, deterministic."""
    from workbench.strategy.bo.acquisition import top_log_ei

    def f(g):
        return float(len(g.value["layers"]))

    plain = make_strategy("bo", chain_space, seed=5, n_init=3)
    local = make_strategy("bo", chain_space, seed=5, n_init=3, local_rounds=3, local_top=4, local_children=5)
    for s in (plain, local):
        drive(s, f, 6)
    best = {}
    for name, s in (("plain", plain), ("local", local)):
        models, used, ys = s._models()
        gs, x = s.sampled_candidates(models, used, ys, set(), np.random.default_rng(0))
        assert len({g.key for g in gs}) == len(gs) and not {g.key for g in gs} & s._seen
        best[name] = (len(gs), float(top_log_ei(models[0], x, float(ys[:, 0].max()), 1)[1][0]))
    assert best["local"][0] > best["plain"][0] and best["local"][1] >= best["plain"][1]
    pend = [p.genotype for p in local.ask(2)]
    props = [p.genotype for p in local.ask(2, pending=pend)]
    assert len({g.key for g in props + pend}) == 4
    for g in props:
        chain_space.validate(g)
    again = make_strategy("bo", chain_space, seed=5, n_init=3, local_rounds=3, local_top=4, local_children=5)
    again.tell(local.history)
    assert [p.genotype.key for p in again.ask(2, pending=pend)] == [g.key for g in props]


def test_failed_observations_are_left_out_of_the_model():
    space, arrays = _nb_objective()
    s = make_strategy("bo", space, seed=1, n_init=4)
    obs = []
    for i in range(10):
        (p,) = s.ask(1)
        value = None if i % 3 == 2 else float(arrays.val_accuracy[space.index_of(p.genotype)])
        o = Observation(p.genotype, value)
        s.tell([o])
        obs.append(o)
    models, used, _ = s._models()
    assert len(used) == sum(o.ok for o in obs) == models[0].x.shape[0]
    keys = {o.genotype.key for o in obs}
    props = s.ask(5)
    assert not {p.genotype.key for p in props} & keys


def test_same_seed_same_proposals_and_replay_on_the_full_pool():
    space, arrays = _nb_objective()

    def f(g):
        return float(arrays.val_accuracy[space.index_of(g)])

    original = make_strategy("bo", space, seed=11, n_init=3)
    a = drive(original, f, 9)
    b = drive(make_strategy("bo", space, seed=11, n_init=3), f, 9)
    assert [o.genotype for o in a] == [o.genotype for o in b]
    expected = [p.genotype for p in original.ask(2)]
    fresh = make_strategy("bo", space, seed=11, n_init=3)
    fresh.tell(a)
    assert [p.genotype for p in fresh.ask(2)] == expected


def test_prior_genotypes_come_first(chain_space):
    prior = [chain_space.sample(np.random.default_rng(i)) for i in range(2)]
    s = make_strategy("bo", chain_space, seed=0, prior=prior)
    assert [p.genotype for p in s.ask(2)] == prior


def test_joint_space_proposals_carry_hyperparameters():
    from workbench.space.joint import JointSpace

    space = JointSpace(base={"kind": "chain", "max_layers": 3, "kernels": [3], "widths": [8, 16], "dense_widths": [16]})
    s = make_strategy("bo", space, seed=2, n_init=3)

    def f(g):
        hp = JointSpace.hyperparameters(g)
        return -abs(math.log10(hp["lr"]) + 2.0)  # best lr = 1e-2

    drive(s, f, 8)
    layout = s._layout()
    assert layout.n_blocks == 1 and layout.n_groups == 1 + 4  # architecture + one per hyperparameter
    for p in s.ask(2):
        space.validate(p.genotype)


# -- multi-objective ----------------------------------------------------------------------


def test_multi_objective_front_and_proposals():
    space, arrays = _nb_objective()

    def objectives(g):
        i = space.index_of(g)
        return {"val_accuracy": float(arrays.val_accuracy[i]), "latency": float(arrays.latency[i])}

    # a reference point that ignores degenerate architectures (bottom 10%) and slow ones
    reference = [float(np.quantile(arrays.val_accuracy, 0.1)), float(np.quantile(arrays.latency, 0.9))]
    hv = {}
    for name, seeds in (("random", range(8)), ("bo", range(3))):  # random is cheap: average more
        vols = []
        for seed in seeds:
            opts = {"objectives": ["val_accuracy", "-latency"], "n_init": 5, "shortlist": 128, "mc_samples": 32}
            s = make_strategy(name, space, seed=seed, **(opts if name == "bo" else {}))
            for _ in range(20):
                (p,) = s.ask(1)
                m = objectives(p.genotype)
                s.tell([Observation(p.genotype, m["val_accuracy"], objectives=m)])
            pts = np.array([[o.objectives["val_accuracy"], o.objectives["latency"]] for o in s.history])
            vols.append(hypervolume_2d(pts, reference, ["max", "min"]))
            if name == "bo":
                front = s.pareto_front()
                idx = pareto_front(pts, ["max", "min"])
                assert {o.genotype.key for o in front} == {s.history[i].genotype.key for i in idx}
                props = s.ask(3)
                assert len({p.genotype.key for p in props}) == 3
                assert not {p.genotype.key for p in props} & {o.genotype.key for o in s.history}
        hv[name] = float(np.mean(vols))
    assert hv["bo"] > hv["random"]


def test_multi_objective_skips_incomplete_observations(chain_space):
    s = make_strategy("bo", chain_space, seed=4, objectives="acc,-size", n_init=2)
    for i in range(6):
        (p,) = s.ask(1)
        size = float(len(p.genotype.value["layers"]))
        objectives = {"acc": 1.0 / size + 0.1 * i, "size": size} if i != 3 else {"acc": 0.5}
        s.tell([Observation(p.genotype, 0.0, objectives=objectives)])
    _, used, ys = s._models()
    assert len(used) == 5 and ys.shape == (5, 2)
    assert all("size" in o.objectives for o in s.pareto_front())
    (p,) = s.ask(1)
    chain_space.validate(p.genotype)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5)), min_size=1, max_size=30))
def test_reference_point_is_dominated_by_every_observation(points):
    y = torch.as_tensor(np.array(points, dtype=float))
    ref = reference_point(y)
    assert bool((y > ref).all())
    front = pareto_front(y.numpy())
    assert len(front) >= 1
    for i in range(len(points)):
        dominated = any(
            np.all(y.numpy()[j] >= y.numpy()[i]) and np.any(y.numpy()[j] > y.numpy()[i]) for j in range(len(points))
        )
        assert dominated == (i not in set(front.tolist()))


def test_strategy_class_is_registered():
    from workbench.strategy.registry import strategy_names

    assert "bo" in strategy_names()
    assert BayesianOptimization.name == "bo"


def test_pruned_top_log_ei_equals_a_full_scan():
    from workbench.strategy.bo.acquisition import top_log_ei

    x, y = _data(40, d=10, seed=3)
    layout = KernelLayout.from_blocks([[list(range(10))]])
    gp = GPModel.fit(x, y, layout)
    grid = torch.as_tensor(np.array([[(i >> b) & 1 for b in range(10)] for i in range(1024)], dtype=float))
    full = log_ei(gp, grid, float(y.max()))
    for k in (1, 5, 50):
        rows, values = top_log_ei(gp, grid, float(y.max()), k, chunk=16)
        expected = torch.argsort(-full, stable=True)[:k]
        assert rows.tolist() == expected.tolist()
        np.testing.assert_allclose(values.numpy(), full[expected].numpy(), rtol=1e-9)
