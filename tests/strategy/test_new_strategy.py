"""A newcomer's strategy: one module and one registration, run end to end by the search."""

from __future__ import annotations

import textwrap

import pytest

from workbench.errors import UserError

MODULE = '''
"""Greedy mutation: mutate the best architecture so far (the sources' best first, warm)."""

from collections.abc import Mapping
from typing import Any

from workbench.strategy.base import Proposal, Strategy, WarmStart


class GreedyMutation(Strategy):
    name = "greedy"

    def __init__(self, space, seed=0, prior=()):
        super().__init__(space, seed)
        self.prior = list(prior)

    @classmethod
    def warm_prior_size(cls, options: Mapping[str, Any]) -> int:
        return 2

    @classmethod
    def warm_start_options(cls, warm: WarmStart, options: Mapping[str, Any]) -> dict[str, Any]:
        return {"prior": list(warm.prior)}

    def ask(self, n=1, *, pending=()):
        rng = self.rng_for(pending)
        taken = {g.key for g in pending}
        out = []
        for g in self.prior:
            if len(out) < n and self.is_new(g, taken):
                out.append(Proposal(g))
                taken.add(g.key)
        while len(out) < n:
            best = self.incumbent
            g = self.space.mutate(best.genotype, rng) if best is not None else self.fresh_sample(rng, taken)
            if not self.is_new(g, taken):
                g = self.fresh_sample(rng, taken)
            out.append(Proposal(g))
            taken.add(g.key)
        return out
'''


@pytest.fixture
def greedy(tmp_path, monkeypatch):
    from workbench.strategy import registry

    (tmp_path / "greedy_strategy.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry._STRATEGIES, "greedy", "greedy_strategy:GreedyMutation")
    return "greedy"


def test_a_registered_strategy_runs_cold_warm_and_resumed(greedy):
    from metastore import open_store
    from workbench.search import new_search, resume_search
    from workbench.strategy.registry import strategy_names
    from workbench.task import load_task

    assert greedy in strategy_names()
    store = open_store("memory://new-strategy")
    source = new_search(store, load_task("nbgraph-photo"), "random", 6, seed=0)
    source.run()
    search = new_search(store, load_task("nbgraph-cora"), greedy, 4, seed=1, warm_start="auto")
    assert search.warm is not None and len(search.warm.prior) == 2  # its warm_prior_size hook
    first = [g.key for g in search.strategy.prior]
    result = search.run()
    trials = store.trials(result.search_id)
    assert result.n_trials == 4 and [t.genotype_key for t in trials[:2]] == first
    resumed = resume_search(store, result.search_id, budget=6)
    assert [g.key for g in resumed.strategy.prior] == first  # the recorded prior, rebuilt
    resumed.run()
    assert len(store.trials(result.search_id)) == 6


def test_register_checks_its_target():
    from workbench.strategy.registry import register

    with pytest.raises(UserError, match="module:Class"):
        register("broken", "no_colon_here")
