"""Warm-started BO's schedule: which asks use the sources' model, and that useless sources cost
only a few asks against cold BO (its initial design included)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import UserError
from workbench.evaluate.tabular import table_arrays
from workbench.space.nbgraph import NBGraphSpace
from workbench.strategy.backoff import backoff_asks, backoff_turn
from workbench.strategy.base import ORIGIN_TRANSFER, Observation, WarmSource
from workbench.strategy.bo.schedule import fixed_turn
from workbench.strategy.bo.strategy import WARM_KEEP_TURN, WARM_QUANTILE, BayesianOptimization


def _simulate(transfer_value: float, n: int = 100, **rule) -> list[int]:
    """Asks that used the sources when their picks always score ``transfer_value`` and cold
    BO's picks score a slowly rising 0.5."""
    values: list[float] = []
    asks = []
    for i in range(n):
        turn = backoff_turn(values, 5, **rule)
        if turn:
            asks.append(i)
        values.append(transfer_value if turn else 0.5 + 0.001 * i)
    assert backoff_asks(values, 5, **rule) == asks  # the same decisions replayed from the values
    return asks


BO_RULE = {"quantile": WARM_QUANTILE, "lead": 2, "keep_turn": WARM_KEEP_TURN}  # BO's rule and default lead


def test_sources_that_do_not_help_get_ever_fewer_asks():
    assert _simulate(0.0) == [0, 5, 10, 19, 36, 69]  # about log2(budget) asks in all


def test_sources_that_help_get_every_second_ask():
    asks = _simulate(1.0)
    assert asks[:6] == [0, 5, 7, 9, 11, 13] and len(asks) == 49


def test_bos_rule_gives_useless_sources_their_lead_and_then_ever_fewer_asks():
    assert _simulate(0.0, **BO_RULE) == [0, 1, 6, 11, 20, 37, 70]
    assert _simulate(0.0, **{**BO_RULE, "lead": 3}) == [0, 1, 2, 7, 12, 21, 38, 71]


def test_bos_rule_lets_sources_whose_picks_are_new_bests_keep_the_turn():
    asks = _simulate(1.0, **BO_RULE)
    assert asks == [0, 1, *range(6, 100)]  # the lead, cold BO's 4 design asks, then the sources


def test_a_pick_that_is_not_a_new_best_hands_the_turn_back():
    values = [0.9, 0.9, 0.1, 0.2, 0.3, 0.4, 0.95, 0.5]  # ask 7 (0.5) was the sources' and no new best
    assert backoff_asks(values, 5, **BO_RULE) == [0, 1, 6, 7]
    assert not backoff_turn(values, 5, **BO_RULE)  # ask 8 is cold BO's
    assert not backoff_turn([*values, 0.6], 5, **BO_RULE) and backoff_turn([*values, 0.6, 0.6], 5, **BO_RULE)


def test_the_fixed_schedule_is_the_hedge_rule():
    assert [n for n in range(8) if not fixed_turn(n, 2)] == [2, 4, 6]
    assert all(fixed_turn(n, 0) for n in range(8))


@pytest.fixture(scope="module")
def space():
    return NBGraphSpace("photo")


def _sources(space, names=("cs", "arxiv"), n=60):
    pool = space.pool()
    out = []
    for j, name in enumerate(names):
        idx = np.random.default_rng(10 + j).choice(len(pool), n, replace=False)
        out.append(WarmSource(name, tuple(pool[i] for i in idx), table_arrays(name).val_accuracy[idx], 0.5))
    return out


def test_a_warm_search_leads_with_the_sources_consensus_then_keeps_cold_bos_initial_design(space):
    vals = table_arrays("photo").val_accuracy
    warm = BayesianOptimization(space, seed=3, sources=_sources(space))
    cold = BayesianOptimization(space, seed=3)
    origins, warm_gs, cold_gs = [], [], []
    for _ in range(7):
        (w,), (c,) = warm.ask(1), cold.ask(1)
        origins.append(w.origin)
        warm_gs.append(w.genotype)
        cold_gs.append(c.genotype)
        warm.tell([Observation(w.genotype, float(vals[space.index_of(w.genotype)]))])
        cold.tell([Observation(c.genotype, float(vals[space.index_of(c.genotype)]))])
    lead = warm.lead
    assert lead == 2 and origins == [ORIGIN_TRANSFER] * lead + ["random"] * 4 + origins[lead + 4 :]
    proposer = warm._transfer
    members = proposer.context.full_pool.members()
    top = proposer.consensus.order(proposer.pool, np.arange(len(members)))[:lead]
    assert warm_gs[:lead] == [members[i] for i in top]  # what the sources' models agree on most
    assert warm_gs[lead:5] == cold_gs[lead:5]  # the same random draws as a cold search at those asks
    (nxt,) = warm.ask(1)
    assert nxt.origin in (ORIGIN_TRANSFER, "model")
    again = BayesianOptimization(space, seed=3, sources=_sources(space))  # replay: same decision
    again.tell(warm.history)
    assert again.cold_turn() == warm.cold_turn() and again.ask(1)[0] == nxt


def test_cold_bo_labels_its_proposals(space):
    cold = BayesianOptimization(space, seed=0, n_init=2)
    vals = table_arrays("photo").val_accuracy
    origins = []
    for _ in range(3):
        (p,) = cold.ask(1)
        origins.append(p.origin)
        cold.tell([Observation(p.genotype, float(vals[space.index_of(p.genotype)]))])
    assert origins == ["random", "random", "model"] and not cold.cold_turn()


def test_an_unknown_schedule_is_a_clear_error(space):
    with pytest.raises(UserError, match="schedule"):
        BayesianOptimization(space, schedule="sometimes")


@pytest.mark.parametrize("lead", [0, -1, 1.5, True])
def test_a_bad_lead_is_a_clear_error(space, lead):
    with pytest.raises(UserError, match="lead"):
        BayesianOptimization(space, lead=lead)


def test_lead_1_is_one_zero_shot_pick_then_cold_bos_whole_design(space):
    vals = table_arrays("photo").val_accuracy
    warm = BayesianOptimization(space, seed=3, sources=_sources(space), lead=1)
    origins = []
    for _ in range(5):
        (w,) = warm.ask(1)
        origins.append(w.origin)
        warm.tell([Observation(w.genotype, float(vals[space.index_of(w.genotype)]))])
    assert origins == [ORIGIN_TRANSFER] + ["random"] * 4
