"""The ask/tell contract, run against every registered strategy on every registered space."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.strategy.base import Observation, Strategy
from workbench.strategy.registry import make_strategy, strategy_names


def objective(g) -> float:
    """A deterministic synthetic objective of a genotype (so tests need no training)."""
    h = int(g.key[:8], 16)
    return (h % 10_000) / 10_000.0


@pytest.fixture(params=strategy_names())
def strategy_name(request):
    return request.param


def drive(strategy: Strategy, n: int, fail_every: int = 0) -> list[Observation]:
    obs = []
    for i in range(n):
        (p,) = strategy.ask(1)
        value = None if fail_every and i % fail_every == fail_every - 1 else objective(p.genotype)
        o = Observation(p.genotype, value)
        strategy.tell([o])
        obs.append(o)
    return obs


def test_ask_returns_valid_distinct_genotypes(strategy_name, any_space):
    s = make_strategy(strategy_name, any_space, seed=1)
    drive(s, 6)
    pending = [p.genotype for p in s.ask(2)]
    props = s.ask(3, pending=pending)
    assert len(props) == 3
    keys = [p.genotype.key for p in props]
    assert len(set(keys)) == 3
    assert not set(keys) & {g.key for g in pending}
    for p in props:
        any_space.validate(p.genotype)


def test_never_reproposes_evaluated(strategy_name, any_space):
    s = make_strategy(strategy_name, any_space, seed=2)
    obs = drive(s, 25)
    keys = [o.genotype.key for o in obs]
    assert len(keys) == len(set(keys))


def test_same_seed_same_proposals(strategy_name, any_space):
    a = drive(make_strategy(strategy_name, any_space, seed=3), 15)
    b = drive(make_strategy(strategy_name, any_space, seed=3), 15)
    assert [o.genotype for o in a] == [o.genotype for o in b]
    c = drive(make_strategy(strategy_name, any_space, seed=4), 15)
    assert [o.genotype for o in a] != [o.genotype for o in c]


def test_replay_reproduces_next_proposal(strategy_name, any_space):
    original = make_strategy(strategy_name, any_space, seed=5)
    obs = drive(original, 14, fail_every=5)
    expected = original.ask(2)
    fresh = make_strategy(strategy_name, any_space, seed=5)
    fresh.tell(obs)
    assert [p.genotype for p in fresh.ask(2)] == [p.genotype for p in expected]


def test_failed_observations_are_never_incumbent(strategy_name, any_space):
    s = make_strategy(strategy_name, any_space, seed=6)
    obs = drive(s, 12, fail_every=2)
    assert any(o.value is None for o in obs)
    assert s.incumbent is not None and s.incumbent.ok
    assert s.incumbent.value == max(o.value for o in obs if o.ok)


def test_all_failures_still_proposes(strategy_name, any_space):
    s = make_strategy(strategy_name, any_space, seed=7)
    drive(s, 12, fail_every=1)
    (p,) = s.ask(1)
    any_space.validate(p.genotype)


def test_unknown_strategy_is_a_user_error(chain_space):
    from workbench.errors import UserError

    with pytest.raises(UserError, match="unknown strategy"):
        make_strategy("nope", chain_space)


def test_evolution_beats_random_on_smooth_objective():
    """Evolution exploits structure: on 'more conv width is better' it ends higher than random."""
    from workbench.space.chain import ChainSpace

    chain_space = ChainSpace()

    def score(g):
        return sum(layer.get("width", 0) for layer in g.value["layers"] if layer["op"] in ("conv", "sepconv"))

    finals = {}
    for name in ("random", "evolution"):
        bests = []
        for seed in range(12):
            s = make_strategy(name, chain_space, seed=seed)
            best = 0
            for _ in range(40):
                (p,) = s.ask(1)
                v = float(score(p.genotype))
                best = max(best, v)
                s.tell([Observation(p.genotype, v)])
            bests.append(best)
        finals[name] = np.mean(bests)
    assert finals["evolution"] > finals["random"]
