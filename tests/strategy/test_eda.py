"""``eda``: PBIL over the space's decisions (the shared interface suite covers the contract)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import drive

from workbench.errors import UserError
from workbench.space.cell import CellSpace
from workbench.space.registry import make_space
from workbench.strategy.base import WarmSource, WarmStart
from workbench.strategy.eda import EstimationOfDistribution
from workbench.strategy.registry import make_strategy

CELL = CellSpace()
CONV = 3  # index of conv3x3 in CELL_OPS


GRADE = (0, 1, 3, 4, 2)  # per op of CELL_OPS: conv3x3 best, then conv1x1, avgpool, skip, none


def convs(g) -> float:
    """A smooth objective: the sum of the edges' op grades (6 conv3x3 edges are best)."""
    return float(sum(GRADE[v] for v in CELL.decision_view().values(g)))


def test_the_model_moves_towards_the_selected_architectures():
    s = EstimationOfDistribution(CELL, seed=0, population=6, selection=0.5, learning_rate=0.5)
    drive(s, convs, 30)
    probs = s.probabilities()
    assert np.mean([p[CONV] for p in probs]) > 0.4  # uniform: 0.2
    assert all(abs(p.sum() - 1) < 1e-9 for p in probs)
    assert s.entropy() < np.log(5)


def test_umda_is_pbil_with_learning_rate_one():
    """After one generation the marginals are exactly the selected architectures' frequencies."""
    s = EstimationOfDistribution(CELL, seed=1, population=4, selection=0.5, learning_rate=1.0)
    obs = drive(s, convs, 4)
    best = sorted(obs, key=lambda o: -o.value)[:2]
    view = CELL.decision_view()
    for d, p in enumerate(s.probabilities()):
        expected = np.bincount([view.values(o.genotype)[d] for o in best], minlength=5) / 2
        assert np.allclose(p, expected)


def test_eda_beats_random_on_a_smooth_objective():
    finals = {}
    for name in ("random", "eda"):
        finals[name] = np.mean(
            [max(o.value for o in drive(make_strategy(name, CELL, seed=s), convs, 40)) for s in range(8)]
        )
    assert finals["eda"] > finals["random"]


def test_model_is_a_function_of_the_tells_in_any_batching():
    a = EstimationOfDistribution(CELL, seed=2)
    obs = drive(a, convs, 23)
    b = EstimationOfDistribution(CELL, seed=2)
    for i in range(0, len(obs), 7):
        b.tell(obs[i : i + 7])
        b.probabilities()  # cached part-way
    assert all(np.allclose(x, y) for x, y in zip(a.probabilities(), b.probabilities()))
    assert [p.genotype for p in a.ask(3)] == [p.genotype for p in b.ask(3)]


def test_warm_start_shapes_the_initial_distribution():
    view = CELL.decision_view()
    good = [CELL.make(["conv3x3"] * 6), CELL.make(["conv3x3"] * 5 + ["skip"])]
    source = WarmSource("other", tuple(good), np.array([0.9, 0.8]))
    opts = EstimationOfDistribution.warm_start_options(WarmStart((source,), tuple(good)), {})
    assert EstimationOfDistribution.warm_prior_size({"population": 7}) == 7
    s = EstimationOfDistribution(CELL, seed=0, prior_weight=0.5, **opts)
    p0 = s.initial_probabilities()
    # half uniform (0.2 each), half the prior's frequencies: conv3x3 on 5 edges of both, one of the 6th
    assert np.allclose([p[CONV] for p in p0], [0.6] * 5 + [0.35]) and abs(p0[0][0] - 0.1) < 1e-9
    cold = EstimationOfDistribution(CELL, seed=0)
    draws = [s.sample_model(np.random.default_rng(i)) for i in range(200)]
    cold_draws = [cold.sample_model(np.random.default_rng(i)) for i in range(200)]
    assert np.mean([convs(g) for g in draws]) > np.mean([convs(g) for g in cold_draws]) + 1
    assert len(view.decisions) == len(p0)


def test_continuous_decisions_are_binned_and_stay_in_range():
    space = make_space("joint", base={"kind": "cell"}, lr=[1e-4, 1e-1])
    s = EstimationOfDistribution(space, seed=0, bins=4)
    obs = drive(s, lambda g: -abs(np.log10(space.hyperparameters(g)["lr"]) + 2.5), 20)
    for o in obs:
        assert 1e-4 <= space.hyperparameters(o.genotype)["lr"] <= 1e-1
    lr = [d.name for d in space.decision_view().decisions].index("lr")
    assert len(s.probabilities()[lr]) == 4


@pytest.mark.parametrize(
    "bad",
    [
        {"population": 1},
        {"selection": 0.0},
        {"learning_rate": 1.5},
        {"mutation": -0.1},
        {"bins": 0},
        {"prior_weight": 2},
    ],
)
def test_bad_options_are_user_errors(bad):
    with pytest.raises(UserError):
        make_strategy("eda", CELL, **bad)


@pytest.mark.parametrize("name", ["eda", "tpe"])
def test_a_space_without_decisions_is_searched_at_random(name):
    space = CellSpace()
    space.__dict__["_decision_view"] = None  # as a plugin space without a decision view
    s = make_strategy(name, space, seed=0)
    obs = drive(s, convs, 15)
    assert len({o.genotype.key for o in obs}) == 15
    assert all(p.origin == "random" for p in s.ask(2))
