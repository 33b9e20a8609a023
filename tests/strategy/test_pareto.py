"""Pareto dominance helpers and multi-objective (NSGA-II) evolution."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from workbench.errors import UserError
from workbench.strategy.base import Observation
from workbench.strategy.pareto import (
    Objective,
    crowding_distance,
    dominates,
    hypervolume_2d,
    nondominated_sort,
    objective_matrix,
    pareto_front,
    parse_objectives,
)
from workbench.strategy.registry import make_strategy


def _brute_dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a >= b) and np.any(a > b))


# small integer values make ties and duplicate points common
points_st = st.integers(1, 3).flatmap(
    lambda m: arrays(np.float64, st.tuples(st.integers(0, 25), st.just(m)), elements=st.integers(-3, 3).map(float))
)


@settings(max_examples=150, deadline=None)
@given(points_st)
def test_front_members_undominated_and_the_rest_dominated(pts):
    front = set(pareto_front(pts).tolist())
    for i in range(len(pts)):
        dominated = any(_brute_dominates(pts[j], pts[i]) for j in range(len(pts)))
        assert dominated == (i not in front)
    # a non-member is dominated by a member (the front covers everything)
    for i in set(range(len(pts))) - front:
        assert any(_brute_dominates(pts[j], pts[i]) for j in front)


@settings(max_examples=150, deadline=None)
@given(points_st)
def test_nondominated_sort_ranks_are_layered_fronts(pts):
    ranks = nondominated_sort(pts)
    assert len(ranks) == len(pts)
    if not len(pts):
        return
    assert set(np.flatnonzero(ranks == 0).tolist()) == set(pareto_front(pts).tolist())
    assert set(ranks.tolist()) == set(range(int(ranks.max()) + 1))
    for i in range(len(pts)):
        # nothing of the same or a worse rank dominates i ...
        for j in range(len(pts)):
            if ranks[j] >= ranks[i]:
                assert not _brute_dominates(pts[j], pts[i])
        # ... and something of the rank just above does
        if ranks[i] > 0:
            assert any(_brute_dominates(pts[j], pts[i]) for j in np.flatnonzero(ranks == ranks[i] - 1))


@settings(max_examples=60, deadline=None)
@given(points_st)
def test_directions_flip_signs(pts):
    m = pts.shape[1]
    directions = ["min" if c % 2 else "max" for c in range(m)]
    signs = np.array([-1.0 if c % 2 else 1.0 for c in range(m)])
    assert pareto_front(pts, directions).tolist() == pareto_front(pts * signs).tolist()
    assert nondominated_sort(pts, directions).tolist() == nondominated_sort(pts * signs).tolist()
    assert pareto_front(pts, [-1 if c % 2 else 1 for c in range(m)]).tolist() == pareto_front(pts * signs).tolist()


def test_small_cases():
    pts = np.array([[1, 5], [2, 4], [3, 3], [2, 2], [1, 5], [0, 0]], dtype=float)
    assert pareto_front(pts).tolist() == [0, 1, 2, 4]  # duplicates both stay
    assert nondominated_sort(pts).tolist() == [0, 0, 0, 1, 0, 2]
    assert pareto_front(pts, ["max", "min"]).tolist() == [2, 3, 5]
    assert dominates([2, 2], [1, 2]) and not dominates([1, 2], [1, 2])
    assert dominates([1, 1], [1, 2], ["max", "min"])
    assert pareto_front(np.zeros((0, 2))).tolist() == []
    assert nondominated_sort(np.zeros((0, 2))).tolist() == []


def test_crowding_distance():
    front = np.array([[0, 4], [1, 3], [2, 2], [4, 0]], dtype=float)
    d = crowding_distance(front)
    assert np.isinf(d[0]) and np.isinf(d[3])
    assert d[1] == pytest.approx((2 - 0) / 4 + (4 - 2) / 4)
    assert d[2] == pytest.approx((4 - 1) / 4 + (3 - 0) / 4)
    assert np.isinf(crowding_distance(front[:2])).all()


def test_hypervolume_2d():
    pts = [[1, 5], [2, 4], [3, 3], [2, 2]]
    assert hypervolume_2d(pts, [0, 0]) == pytest.approx(12.0)
    # minimising the second objective: the front is (3, 3) and (2, 2): 3 * 3 + 2 * 1
    assert hypervolume_2d(pts, [0, 6], ["max", "min"]) == pytest.approx(11.0)
    assert hypervolume_2d([], [0, 0]) == 0.0
    assert hypervolume_2d([[-1, -1]], [0, 0]) == 0.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="NaN"):
        pareto_front([[np.nan, 1.0]])
    with pytest.raises(ValueError, match="direction"):
        pareto_front([[1.0, 1.0]], ["max", "up"])
    with pytest.raises(ValueError, match="one direction per objective"):
        pareto_front([[1.0, 1.0]], ["max"])
    with pytest.raises(ValueError, match="n x m"):
        pareto_front([1.0, 2.0])


def test_parse_objectives_and_matrix():
    objs = parse_objectives("val_accuracy, -latency")
    assert objs == [Objective("val_accuracy", 1), Objective("latency", -1)]
    assert [str(o) for o in objs] == ["val_accuracy", "-latency"]
    assert [o.direction for o in objs] == ["max", "min"]
    assert parse_objectives(["+a", "b"]) == [Objective("a"), Objective("b")]
    with pytest.raises(ValueError, match="distinct"):
        parse_objectives(["a", "-a"])
    with pytest.raises(ValueError, match="empty"):
        parse_objectives(["-"])
    values, ok = objective_matrix([{"val_accuracy": 0.9, "latency": 2.0}, {"val_accuracy": 0.8}], objs)
    assert values[0].tolist() == [0.9, -2.0]
    assert ok.tolist() == [True, False]


# -- multi-objective evolution ---------------------------------------------------------------


def _chain_objectives(g) -> dict[str, float]:
    """A trade-off: total convolution width (maximise) against the number of layers (minimise)."""
    layers = g.value["layers"]
    width = sum(layer.get("width", 0) for layer in layers if layer["op"] in ("conv", "sepconv"))
    return {"width": float(width), "layers": float(len(layers))}


def _search(space, seed: int, budget: int = 60, **options) -> list[Observation]:
    s = make_strategy("evolution", space, seed=seed, **options)
    obs = []
    for _ in range(budget):
        (p,) = s.ask(1)
        o = _chain_objectives(p.genotype)
        ob = Observation(p.genotype, o["width"], objectives=o)
        s.tell([ob])
        obs.append(ob)
    return obs


def _hv(obs: list[Observation]) -> float:
    pts = [[o.objectives["width"], o.objectives["layers"]] for o in obs]
    return hypervolume_2d(pts, [0.0, 7.0], ["max", "min"])


def test_multi_objective_evolution_spreads_along_the_front():
    from workbench.space.chain import ChainSpace

    space = ChainSpace()
    mo_hv, so_hv = [], []
    for seed in range(6):
        s = make_strategy("evolution", space, seed=seed, objectives=["width", "-layers"])
        for o in _search(space, seed, objectives=["width", "-layers"]):
            s.tell([o])
        front = s.pareto_front()
        pts = {(o.objectives["width"], o.objectives["layers"]) for o in front}
        assert len(pts) >= 3  # a spread of trade-offs, not one point
        assert len({layers for _, layers in pts}) >= 3
        all_pts = np.array([[o.objectives["width"], o.objectives["layers"]] for o in s.history])
        assert pts == {tuple(all_pts[i]) for i in pareto_front(all_pts, ["max", "min"])}
        mo_hv.append(_hv(s.history))
        so_hv.append(_hv(_search(space, seed)))
    assert np.mean(mo_hv) > np.mean(so_hv)


def test_multi_objective_evolution_replays_and_skips_incomplete(chain_space):
    def drive(s, n):
        obs = []
        for i in range(n):
            (p,) = s.ask(1)
            o = _chain_objectives(p.genotype)
            if i % 4 == 3:
                ob = Observation(p.genotype, None)  # failed: no objectives
            elif i % 4 == 1:
                ob = Observation(p.genotype, 0.5, objectives={"width": o["width"]})  # one missing
            else:
                ob = Observation(p.genotype, o["width"], objectives=o)
            s.tell([ob])
            obs.append(ob)
        return obs

    a = make_strategy("evolution", chain_space, seed=3, objectives="width,-layers", population=6)
    obs = drive(a, 20)
    fresh = make_strategy("evolution", chain_space, seed=3, objectives="width,-layers", population=6)
    fresh.tell(obs)
    assert [p.genotype for p in fresh.ask(3)] == [p.genotype for p in a.ask(3)]
    assert all(o.value is not None and set(o.objectives) == {"width", "layers"} for o in a.pareto_front())


def test_single_objective_and_bad_objectives(chain_space):
    s = make_strategy("evolution", chain_space, seed=0, objectives=["-layers"], population=4)
    for _ in range(12):
        (p,) = s.ask(1)
        o = _chain_objectives(p.genotype)
        s.tell([Observation(p.genotype, o["width"], objectives=o)])
    best = min(o.objectives["layers"] for o in s.history)
    assert {o.objectives["layers"] for o in s.pareto_front()} == {best}
    with pytest.raises(UserError, match="objectives"):
        make_strategy("evolution", chain_space, objectives=["a", "-a"])
