"""Hill climbing and morphism-mutating evolution: children name their parent trial and steps."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import UserError
from workbench.space.chain import ChainSpace
from workbench.space.dag import DagSpace
from workbench.space.morphs import apply_steps
from workbench.space.registry import make_space
from workbench.strategy.base import Observation
from workbench.strategy.evolution import RegularizedEvolution
from workbench.strategy.hillclimb import HillClimb, default_initial, size_of
from workbench.strategy.registry import make_strategy


def score(g) -> float:
    return (int(g.key[:6], 16) % 1000) / 1000.0


def drive(s, n, with_ids=True):
    props = []
    for i in range(n):
        (p,) = s.ask(1)
        props.append(p)
        s.tell([Observation(p.genotype, score(p.genotype), trial_id=f"t{i}" if with_ids else None)])
    return props


@pytest.mark.parametrize(
    "space", [ChainSpace(max_layers=5, widths=[8, 16, 32], dense_widths=[16, 32]), DagSpace(max_nodes=5)]
)
def test_children_of_the_incumbent_through_morphisms(space):
    s = make_strategy("hillclimb", space, seed=0, initial=1)
    assert isinstance(s, HillClimb)
    props = drive(s, 12)
    first = props[0]
    assert first.parent_trial is None and not first.morphisms
    morphed = [p for p in props[1:] if p.morphisms]
    assert len(morphed) >= 8
    by_id = {f"t{i}": p.genotype for i, p in enumerate(props)}
    for p in morphed:
        assert p.parent_trial in by_id
        assert 1 <= len(p.morphisms) <= 3
        assert apply_steps(by_id[p.parent_trial], p.morphisms) == p.genotype
        space.validate(p.genotype)


def test_parent_is_the_incumbent_unless_it_cannot_grow():
    from workbench.space.morphs import random_morphisms

    space = ChainSpace(max_layers=5, widths=[8, 16, 32], dense_widths=[16, 32])
    s = HillClimb(space, seed=1, parents=2, initial=1)
    for i in range(16):
        (p,) = s.ask(1)
        if p.parent_trial is not None:
            ranked = sorted(s.successes, key=lambda o: o.value, reverse=True)
            assert p.parent_trial in [o.trial_id for o in ranked[:2]]
            if p.parent_trial != s.incumbent.trial_id:
                rng = np.random.default_rng(0)
                assert all(
                    (r := random_morphisms(s.incumbent.genotype, rng, 1, space=space)) is None
                    or not s.is_new(r[0], set())
                    for _ in range(20)
                )
        s.tell([Observation(p.genotype, score(p.genotype), trial_id=f"t{i}")])


def test_without_trial_ids_children_name_no_parent():
    s = HillClimb(ChainSpace(), seed=0)
    assert all(p.parent_trial is None and not p.morphisms for p in drive(s, 6, with_ids=False))


def test_spaces_without_morphisms_fall_back_to_mutation():
    space = make_space("cell")
    s = HillClimb(space, seed=0)
    props = drive(s, 6)
    assert all(not p.morphisms and p.parent_trial is None for p in props)
    assert len({p.genotype.key for p in props}) == 6


def test_small_start_and_start_genotype_from_another_task():
    space = ChainSpace(max_layers=5, widths=[8, 16, 32], dense_widths=[16, 32])
    (p,) = HillClimb(space, seed=3).ask(1)
    rng = np.random.default_rng(0)
    typical = np.median([size_of(space.sample(rng))[0] for _ in range(50)])
    assert size_of(p.genotype)[0] <= typical
    g = space.make([{"op": "conv", "kernel": 3, "width": 8, "act": "relu"}])
    s = HillClimb(space, seed=0, start_genotype=g.to_json(), start_trial="other-task-trial")
    (p,) = s.ask(1)
    assert p.genotype == g and p.parent_trial == "other-task-trial" and not p.morphisms
    with pytest.raises(UserError, match="start_genotype"):
        HillClimb(space, start_genotype='{"space": "chain-v1", "spec": {"layers": []}}')
    with pytest.raises(UserError):
        HillClimb(space, max_steps=0)


def test_input_shape_leaves_out_widen_sites_that_break_the_layout():
    space = ChainSpace(max_layers=2, kernels=[3], widths=[64, 128], dense_widths=[16], activations=["tanh"])
    g = space.make([{"op": "conv", "kernel": 3, "width": 64, "act": "tanh"}])
    s = HillClimb(space, seed=0, input_shape=(1, 40), ops=["widen"], start_genotype=g.to_json())
    (p,) = s.ask(1)
    s.tell([Observation(p.genotype, 0.5, trial_id="t0")])
    (child,) = s.ask(1)
    assert not child.morphisms  # the only widen site (64 -> 128 on 1 x 40) would change the layout


def test_evolution_with_morph_names_the_tournament_winner():
    space = ChainSpace(max_layers=5, widths=[8, 16, 32], dense_widths=[16, 32])
    s = RegularizedEvolution(space, seed=0, population=4, sample_size=2, morph=True, morph_steps=2)
    props = drive(s, 16)
    by_id = {f"t{i}": p.genotype for i, p in enumerate(props)}
    morphed = [p for p in props if p.morphisms]
    assert len(morphed) >= 4  # random members with tanh / gelu layers and full widths have few sites
    for p in morphed:
        assert apply_steps(by_id[p.parent_trial], p.morphisms) == p.genotype
    plain = RegularizedEvolution(space, seed=0, population=4, sample_size=2)
    assert all(not p.morphisms for p in drive(plain, 10))
    with pytest.raises(UserError):
        RegularizedEvolution(space, morph=True, morph_steps=0)


def test_multiply_adds_count_convolutions_and_dense_layers():
    from workbench.nn.cost import multiply_adds

    space = ChainSpace(max_layers=4, kernels=[3, 5], widths=[8, 16], dense_widths=[32])
    small = space.make([{"op": "conv", "kernel": 3, "width": 8, "act": "relu"}])
    wide = space.make([{"op": "conv", "kernel": 3, "width": 16, "act": "relu"}])
    long_kernel = space.make([{"op": "conv", "kernel": 5, "width": 8, "act": "relu"}])
    a = multiply_adds(small, (1, 40), 10)
    # 1-D input of length 40 ('same' conv: 40 x 8 outputs of 3 inputs each), then the head
    assert a >= 40 * 8 * 3
    assert multiply_adds(wide, (1, 40), 10) > a and multiply_adds(long_kernel, (1, 40), 10) > a
    assert multiply_adds(small, (1, 40), 10) == a  # deterministic


def test_the_cheapest_of_the_candidate_children_is_proposed():
    from workbench.nn.cost import multiply_adds

    space = ChainSpace(max_layers=6, kernels=[3, 5, 7], widths=[16, 32, 64], dense_widths=[32, 64])
    costs = {}
    for children in (1, 6):
        s = HillClimb(
            space, seed=3, input_shape=(1, 40), children=children, initial=1, cost=lambda g: multiply_adds(g, (1, 40))
        )
        props = drive(s, 10)
        costs[children] = sum(multiply_adds(p.genotype, (1, 40)) for p in props[1:])
        assert all(p.parent_trial for p in props[1:])
    assert costs[6] < costs[1]
    with pytest.raises(UserError, match="children"):
        HillClimb(space, children=0)


def test_children_keep_inheriting_from_the_best_trial_that_can_still_grow():
    from workbench.space.morphs import morph_sites

    space = ChainSpace(max_layers=3, kernels=[3, 5], widths=[8, 16], dense_widths=[16])
    s = HillClimb(space, seed=2, initial=1)
    for i in range(30):
        (p,) = s.ask(1)
        growable = [
            o for o in sorted(s.successes, key=lambda o: o.value, reverse=True) if morph_sites(o.genotype, space=space)
        ]
        if s.successes and growable:
            assert p.parent_trial is not None and p.morphisms  # not a from-scratch mutant
            assert p.parent_trial in [o.trial_id for o in growable]
        s.tell([Observation(p.genotype, score(p.genotype), trial_id=f"t{i}")])


def test_initial_random_trials_then_the_climb_and_a_margin_grows_the_cheapest_near_best():
    from workbench.nn.cost import multiply_adds
    from workbench.space.morphs import morph_sites

    space = ChainSpace(max_layers=5, kernels=[3, 5], widths=[8, 16, 32], dense_widths=[16, 32])
    s = HillClimb(
        space,
        seed=4,
        input_shape=(1, 40),
        initial=4,
        margin=1.0,  # every trial is "near best"
        cost=lambda g: multiply_adds(g, (1, 40)),
    )
    props = drive(s, 12)
    assert all(p.parent_trial is None for p in props[:4]) and all(p.parent_trial for p in props[4:])
    cost = {f"t{i}": multiply_adds(p.genotype, (1, 40)) for i, p in enumerate(props)}
    for i in range(4, 12):
        growable = [f"t{j}" for j in range(i) if morph_sites(props[j].genotype, space=space, input_shape=(1, 40))]
        assert props[i].parent_trial in growable
    # the first climb step grows the cheapest of the (all near-best) random trials
    assert props[4].parent_trial == min((f"t{j}" for j in range(4)), key=cost.get)
    for bad in ({"initial": 0}, {"margin": -0.1}):
        with pytest.raises(UserError):
            HillClimb(space, **bad)


def test_by_default_the_climb_grows_the_best_of_5_random_trials_unless_given_a_start():
    space = ChainSpace(max_layers=5, kernels=[3, 5], widths=[8, 16, 32], dense_widths=[16, 32])
    props = drive(HillClimb(space, seed=0), 8)
    assert all(p.parent_trial is None and not p.morphisms for p in props[:5])
    assert all(p.morphisms for p in props[5:])
    best_of_5 = max(range(5), key=lambda i: score(props[i].genotype))
    assert props[5].parent_trial == f"t{best_of_5}"  # no cost given: the margin does not apply
    g = space.make([{"op": "conv", "kernel": 3, "width": 8, "act": "relu"}])
    s = HillClimb(space, seed=0, start_genotype=g.to_json())
    props = drive(s, 3)
    assert props[0].genotype == g and props[1].parent_trial == "t0"  # no random trials: the climb starts at g
    assert all(p.morphisms for p in props[1:])


def test_the_default_random_start_is_half_the_budget_and_at_least_5():
    assert [default_initial(b) for b in (None, 1, 8, 10, 11, 30, 100.0)] == [5, 5, 5, 5, 5, 15, 50]
