"""Crossover on the genotype's decisions (``SearchSpace.crossover``) and evolution's ``crossover=P``.

Property: for every space, any two members and any generator, the child is a valid genotype in the
space's own spelling ("canonical": what ``sample`` and ``mutate`` write, a fixed point of the
decision view, and for NAS-Bench-Graph the table's canonical member).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import UserError
from workbench.space.decisions import CROSSOVERS
from workbench.space.registry import make_space
from workbench.strategy.base import Observation
from workbench.strategy.registry import make_strategy

# every space kind, with settings that exercise their repairs (tiny chains, DAGs with a minimum,
# joint spaces over each trainable kind, the small proteins table)
SPACES = {
    "chain": make_space("chain"),
    "chain-tiny": make_space("chain", max_layers=2, kernels=[3], widths=[8], dense_widths=[16], max_dense=1),
    "cell": make_space("cell", stages=2, width=8),
    "dag": make_space("dag"),
    "dag-min": make_space("dag", max_nodes=6, min_nodes=3, ops=["conv3", "identity", "maxpool3"]),
    "nbgraph": make_space("nbgraph", dataset="cora"),
    "nbgraph-proteins": make_space("nbgraph", dataset="proteins"),
    "joint-chain": make_space("joint", base={"kind": "chain", "max_layers": 3}),
    "joint-dag": make_space("joint", base={"kind": "dag", "max_nodes": 4}, lr=[1e-3, 1e-3]),
    "joint-cell": make_space("joint", base={"kind": "cell"}, epochs=[3]),
}
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def assert_canonical(space, child):
    """Valid, and written as the space writes its members."""
    space.validate(child)
    view = space.decision_view()
    assert view.build(view.values(child), template=child) == child
    if space.name == "nbgraph-v1":
        assert child == space.genotype_of_key(space.key_of(child))


@pytest.mark.parametrize("name", sorted(SPACES))
@settings(max_examples=60, deadline=None)
@given(seed=seeds, kind=st.sampled_from(CROSSOVERS), mutations=st.integers(0, 3))
def test_every_child_is_valid_and_canonical(name, seed, kind, mutations):
    space = SPACES[name]
    rng = np.random.default_rng(seed)
    a, b = space.sample(rng), space.sample(rng)
    for _ in range(mutations):  # parents away from the sampler's habits, too
        a = space.mutate(a, rng)
    child = space.crossover(a, b, rng, kind)
    assert_canonical(space, child)
    # the child's decisions each come from a parent (where both parents have them active)
    view = space.decision_view()
    va, vb, vc = view.values(a), view.values(b), view.values(child)
    if name == "cell":  # a fixed layout that needs no repair: every edge comes from a parent
        assert all(c in (x, y) for x, y, c in zip(va, vb, vc))
    assert len(vc) == len(va) == len(vb)


@pytest.mark.parametrize("name", sorted(SPACES))
@settings(max_examples=40, deadline=None)
@given(seed=seeds)
def test_any_decision_values_build_a_valid_canonical_member(name, seed):
    """The repair behind crossover: whatever the values (random, or with inactive ``None``s)."""
    space = SPACES[name]
    view = space.decision_view()
    rng = np.random.default_rng(seed)
    values = view.random_values(rng)
    values = [None if rng.random() < 0.2 else v for v in values]
    assert_canonical(space, view.build(values))


@pytest.mark.parametrize("name", sorted(SPACES))
def test_sampled_members_round_trip_through_their_decisions(name):
    space = SPACES[name]
    view = space.decision_view()
    rng = np.random.default_rng(0)
    for _ in range(50):
        g = space.sample(rng)
        assert view.build(view.values(g), template=g).key == g.key
        assert len(view.values(g)) == len(view.decisions)


def test_crossover_of_a_genotype_with_itself_is_itself():
    rng = np.random.default_rng(1)
    for space in SPACES.values():
        g = space.sample(rng)
        assert space.crossover(g, g, rng).key == g.key


def test_unknown_crossover_kind_is_rejected():
    space = SPACES["cell"]
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="crossover kind"):
        space.crossover(space.sample(rng), space.sample(rng), rng, "two-point")


# -- evolution with crossover -------------------------------------------------------------------


def test_evolution_crossover_children_mix_parents_and_replay():
    space = SPACES["cell"]

    def run(seed):
        s = make_strategy("evolution", space, seed=seed, population=6, sample_size=2, crossover=1.0)
        obs = []
        for _ in range(25):
            (p,) = s.ask(1)
            o = Observation(p.genotype, float(sum(v == 3 for v in space.decision_view().values(p.genotype))))
            s.tell([o])
            obs.append(o)
        return s, obs

    s, obs = run(3)
    keys = [o.genotype.key for o in obs]
    assert len(set(keys)) == len(keys)
    again = make_strategy("evolution", space, seed=3, population=6, sample_size=2, crossover=1.0)
    again.tell(obs)
    assert [p.genotype for p in again.ask(2)] == [p.genotype for p in s.ask(2)]


def test_evolution_without_crossover_is_unchanged_by_the_option():
    space = SPACES["chain"]
    a = make_strategy("evolution", space, seed=4)
    b = make_strategy("evolution", space, seed=4, crossover=0.0)
    for _ in range(20):
        (pa,), (pb,) = a.ask(1), b.ask(1)
        assert pa.genotype == pb.genotype
        value = float(len(pa.genotype.spec) % 7)
        a.tell([Observation(pa.genotype, value)])
        b.tell([Observation(pb.genotype, value)])


@pytest.mark.parametrize("bad", [{"crossover": -0.1}, {"crossover": 1.5}, {"crossover_kind": "two-point"}])
def test_bad_crossover_options_are_user_errors(bad):
    with pytest.raises(UserError):
        make_strategy("evolution", SPACES["cell"], **bad)
