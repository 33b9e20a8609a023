"""``tpe``: nasw's own tree-structured Parzen estimator (the interface suite covers the contract)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import drive

from workbench.errors import UserError
from workbench.space.cell import CellSpace
from workbench.space.decisions import Decision
from workbench.space.registry import make_space
from workbench.strategy.base import Observation, WarmSource, WarmStart
from workbench.strategy.registry import make_strategy
from workbench.strategy.tpe import Parzen, TreeParzen, n_good

CELL = CellSpace()
GRADE = {"none": 0, "skip": 1, "avgpool3x3": 2, "conv1x1": 3, "conv3x3": 4}


def grades(g) -> float:
    return float(sum(GRADE[op] for op in CELL.ops_of(g)))


def test_good_group_size_follows_optuna():
    assert [n_good(n, 0.1, 25) for n in (1, 9, 10, 11, 100, 400)] == [1, 1, 1, 2, 10, 25]


def test_categorical_density_is_smoothed_frequencies():
    d = Decision("op", ("a", "b", "c", "d"))
    p = Parzen.fit(d, [0, 0, 2], [1.0, 1.0, 1.0], prior_weight=1.0)
    assert np.allclose(p.probs, np.array([2.25, 0.25, 1.25, 0.25]) / 4)
    assert p.log_pdf(0) == pytest.approx(math.log(2.25 / 4))
    draws = [p.sample(d, np.random.default_rng(i)) for i in range(400)]
    assert 0.45 < draws.count(0) / 400 < 0.68


def test_continuous_density_is_a_normalised_truncated_mixture():
    d = Decision("lr", low=1e-4, high=1e-1)
    p = Parzen.fit(d, [1e-3, 2e-3, 5e-2], [1.0, 1.0, 1.0], prior_weight=1.0)
    xs = np.linspace(math.log(1e-4), math.log(1e-1), 4001)
    dens = np.array([math.exp(p.log_pdf(math.exp(x))) for x in xs])
    assert np.trapezoid(dens, xs) == pytest.approx(1.0, abs=0.01)  # a density in log space
    assert p.log_pdf(1.5e-3) > p.log_pdf(1e-2)
    rng = np.random.default_rng(0)
    assert all(1e-4 <= p.sample(d, rng) <= 1e-1 for _ in range(300))
    fixed = Parzen.fit(Decision("wd", low=1e-3, high=1e-3), [1e-3], [1.0], 1.0)
    assert fixed.sample(d, rng) == pytest.approx(1e-3) and fixed.log_pdf(1e-3) == 0.0


def test_tpe_beats_random_on_a_smooth_objective():
    finals = {}
    for name in ("random", "tpe"):
        finals[name] = np.mean(
            [max(o.value for o in drive(make_strategy(name, CELL, seed=s), grades, 40)) for s in range(6)]
        )
    assert finals["tpe"] > finals["random"] + 1


def test_inactive_decisions_are_left_out_of_their_densities(monkeypatch):
    """A DAG node's inputs count only where the node exists (TPE's tree)."""
    space = make_space("dag", max_nodes=4)
    s = TreeParzen(space, seed=0, n_init=4)
    drive(s, lambda g: float(len(g.value["nodes"])), 12)
    fitted: dict[str, int] = {}
    real_fit = Parzen.fit

    def counting_fit(decision, values, weights, prior_weight):
        fitted[decision.name] = fitted.get(decision.name, 0) + len(values)
        return real_fit(decision, values, weights, prior_weight)

    monkeypatch.setattr(Parzen, "fit", staticmethod(counting_fit))
    s._densities = None
    s.densities()
    view = space.decision_view()
    for name in ("node4.in3", "node2.merge", "node1.op"):
        i = [d.name for d in view.decisions].index(name)
        active = sum(view.values(o.genotype)[i] is not None for o in s.history)
        assert fitted[name] == active
    assert 0 < fitted["node4.in3"] < fitted["node1.op"] == 12
    (p,) = s.ask(1)
    space.validate(p.genotype)


def test_warm_start_adds_sources_to_the_densities_and_skips_the_random_design():
    best = [CELL.make(["conv3x3"] * 6), CELL.make(["conv3x3"] * 5 + ["conv1x1"])]
    rest = [CELL.sample(np.random.default_rng(i)) for i in range(30)]
    values = np.array([grades(g) for g in best + rest])
    source = WarmSource("other", tuple(best + rest), values)
    opts = TreeParzen.warm_start_options(WarmStart((source,), tuple(best)), {})
    s = TreeParzen(CELL, seed=0, **opts)
    first = [p.genotype.key for p in s.ask(2)]
    assert first == [g.key for g in best]  # the initial design
    s.tell([Observation(g, grades(g)) for g in best])
    (p,) = s.ask(1)  # the densities are ready at once, with the sources in them
    assert grades(p.genotype) >= 16
    cold = TreeParzen(CELL, seed=0)
    cold.tell([Observation(g, grades(g)) for g in best])
    warm_good, cold_good = s.densities()[0][0].probs, cold.densities()[0][0].probs
    assert not np.allclose(warm_good, cold_good)


def test_joint_space_hyperparameters_stay_in_range():
    space = make_space("joint", base={"kind": "cell"}, lr=[1e-4, 1e-1])
    s = TreeParzen(space, seed=1, n_init=5)
    obs = drive(s, lambda g: -abs(math.log10(space.hyperparameters(g)["lr"]) + 2.5), 25)
    assert all(1e-4 <= space.hyperparameters(o.genotype)["lr"] <= 1e-1 for o in obs)
    late = np.mean([math.log10(space.hyperparameters(o.genotype)["lr"]) for o in obs[-10:]])
    assert abs(late + 2.5) < 1.0  # drawn towards the optimum at 10**-2.5


@pytest.mark.parametrize(
    "bad", [{"gamma": 0.0}, {"n_candidates": 0}, {"prior_weight": 0.0}, {"max_good": 0}, {"source_weight": -1}]
)
def test_bad_options_are_user_errors(bad):
    with pytest.raises(UserError):
        make_strategy("tpe", CELL, **bad)
