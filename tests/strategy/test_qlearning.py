"""``qlearning``: MetaQNN-style Q-learning over the token codec (the interface suite covers the contract)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import drive

from workbench.errors import UserError
from workbench.space.cell import CellSpace
from workbench.space.registry import make_space
from workbench.strategy.base import WarmSource, WarmStart
from workbench.strategy.qlearning import QLearning, rank_quantile
from workbench.strategy.registry import make_strategy

CELL = CellSpace()
GRADE = {"none": 0, "skip": 1, "avgpool3x3": 2, "conv1x1": 3, "conv3x3": 4}


def grades(g) -> float:
    return float(sum(GRADE[op] for op in CELL.ops_of(g)))


def test_rank_quantile():
    xs = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert rank_quantile(1.0, xs) == 0.0 and rank_quantile(5.0, xs) == 1.0 and rank_quantile(3.0, xs) == 0.5
    assert rank_quantile(7.0, np.array([7.0])) == 0.5


def test_epsilon_schedule():
    s = QLearning(CELL, random_start=10, epsilon_start=0.5, epsilon_end=0.1, decay=20)
    assert s.epsilon(0) == s.epsilon(9) == 1.0
    assert s.epsilon(10) == 0.5 and s.epsilon(20) == pytest.approx(0.3) and s.epsilon(30) == pytest.approx(0.1)
    assert s.epsilon(99) == s.epsilon(30)
    assert QLearning(CELL, decay=0, epsilon_end=0.2).epsilon(50) == 0.2


@pytest.mark.parametrize("state", ["prefix", "last"])
def test_greedy_proposals_improve_on_the_random_start(state):
    """After its random start the controller's proposals are better than random ones."""
    gains = []
    for seed in range(6):
        obs = drive(make_strategy("qlearning", CELL, seed=seed, state=state), grades, 80)
        values = [o.value for o in obs]
        gains.append(np.mean(values[-20:]) - np.mean(values[:10]))
    assert np.mean(gains) > 2.0  # grades of random cells: mean 12, sd 3.5


def test_table_is_a_function_of_the_tells_in_any_batching():
    a = QLearning(CELL, seed=3)
    obs = drive(a, grades, 20)
    b = QLearning(CELL, seed=3)
    b.tell(obs[:7])
    b.tell(obs[7:])
    assert a.q.keys() == b.q.keys() and all(np.array_equal(a.q[k], b.q[k]) for k in a.q)


def test_warm_start_prefills_the_table_and_skips_the_random_start():
    best = CELL.make(["conv3x3"] * 6)
    others = [CELL.sample(np.random.default_rng(i)) for i in range(10)]
    source = WarmSource("other", (best, *others), np.array([1.0] + [0.1 * i for i in range(10)]))
    opts = QLearning.warm_start_options(WarmStart((source,), (best,)), {})
    s = QLearning(CELL, seed=0, **opts)
    assert s.warm and s.q and s.epsilon(0) == s.epsilon_start
    greedy = s.codec.decode(s._rollout(np.random.default_rng(0), 0.0))
    assert greedy.key == best.key  # the table's greedy architecture is the source's best
    assert not QLearning(CELL, seed=0).q


def test_a_joint_space_over_dags_gets_distinct_proposals():
    space = make_space("joint", base={"kind": "dag", "max_nodes": 3})
    s = QLearning(space, seed=0, random_start=2)
    obs = drive(s, lambda g: float(len(g.spec) % 11), 8)
    assert len({o.genotype.key for o in obs}) == 8


@pytest.mark.parametrize(
    "bad",
    [
        {"alpha": 0.0},
        {"gamma": 1.5},
        {"epsilon_start": 0.1, "epsilon_end": 0.5},
        {"decay": -1},
        {"replay": -2},
        {"state": "layer"},
    ],
)
def test_bad_options_are_user_errors(bad):
    with pytest.raises(UserError):
        make_strategy("qlearning", CELL, **bad)
