"""Warm starts: source selection, trust by meta-features and ranking, strategies seeded, resume."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import UserError
from workbench.space.nbgraph import NBGraphSpace
from workbench.strategy.base import WarmSource
from workbench.transfer.sources import (
    choose_sources,
    meta_similarity,
    parse_warm_start,
    ranking_agreement,
    warm_candidates,
    weigh_sources,
)

SPACE = NBGraphSpace("cora")


def test_parse_warm_start():
    assert parse_warm_start(None) == ("none", [])
    assert parse_warm_start("auto") == ("auto", [])
    assert parse_warm_start("a, b") == ("tasks", ["a", "b"])
    with pytest.raises(UserError):
        parse_warm_start(",")


def test_ranking_agreement_and_meta_similarity():
    x = np.arange(10.0)
    assert ranking_agreement(x, x) == 1.0
    assert ranking_agreement(-x, x) == 0.0
    assert meta_similarity({"n": 100.0}, {"n": 100.0}) == 1.0
    assert meta_similarity({"n": 100.0}, {"n": 10_000.0}) < meta_similarity({"n": 100.0}, {"n": 200.0})


def _source(task: str, values_of, n: int = 60, seed: int = 0) -> WarmSource:
    rng = np.random.default_rng(seed)
    pool = SPACE.pool()
    idx = rng.choice(len(pool), n, replace=False)
    gs = tuple(pool[i] for i in idx)
    return WarmSource(task, gs, np.array([values_of(i) for i in idx]), meta_features={"nodes": 1000.0})


def test_a_source_that_ranks_the_target_backwards_gets_no_weight():
    from workbench.evaluate.tabular import table_arrays

    vals = table_arrays("cora").val_accuracy
    good = _source("good", lambda i: vals[i], n=150, seed=1)
    bad = _source("bad", lambda i: -vals[i], seed=2)
    rng = np.random.default_rng(3)
    pool = SPACE.pool()
    idx = rng.choice(len(pool), 20, replace=False)
    w = weigh_sources([good, bad], SPACE, {"nodes": 1000.0}, [pool[i] for i in idx], vals[idx])
    assert w.how == {"good": "ranking", "bad": "ranking"}
    assert w.weights["bad"] == 0.0 and w.weights["good"] > 0.0
    first = warm_candidates([good, bad], w.weights, 3)
    assert first[0] == good.best(1)[0] and all(g in good.genotypes for g in first)


def test_named_sources_must_exist():
    s = _source("photo", lambda i: float(i))
    assert choose_sources("tasks", ["photo"], [s], "cora") == [s]
    assert choose_sources("auto", [], [s], "photo") == []
    with pytest.raises(UserError, match="no usable history"):
        choose_sources("tasks", ["arxiv"], [s], "cora")


def test_warm_started_evolution_evaluates_the_sources_best_first_and_resumes_exactly(tmp_path):
    from metastore import open_store
    from workbench.search import new_search, resume_search
    from workbench.task import load_task

    store = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    new_search(store, load_task("nbgraph-computers"), "random", 30, seed=0).run()
    lines = []
    target = new_search(store, load_task("nbgraph-arxiv"), "evolution", 6, seed=0, warm_start="auto", echo=lines.append)
    assert "nbgraph-computers" in lines[0]
    src = store.histories("nbgraph-v1", "val_accuracy")["nbgraph-computers"]
    best_src = src.genotype_jsons[int(np.argmax(src.values))]
    target.run()
    trials = store.trials(target.search_id)
    assert trials[0].genotype_json == best_src
    rec = store.search(target.search_id)
    assert rec.spec["warm_start"]["sources"].keys() == {"nbgraph-computers"}
    assert "source_weights" in rec.tags
    resumed = resume_search(store, target.search_id, budget=8)
    assert resumed.warm is not None and [g.to_json() for g in resumed.warm.prior] == rec.spec["warm_start"]["prior"]
    resumed.run()
    assert len(store.trials(target.search_id)) == 8


def test_auto_with_too_little_history_starts_cold_and_says_why():
    from types import SimpleNamespace

    from workbench.strategy.bo.strategy import BayesianOptimization
    from workbench.transfer.plan import MIN_SOURCE_TRIALS, plan_warm_start

    pool = SPACE.pool()
    few = SimpleNamespace(
        genotype_jsons=[pool[i].to_json() for i in range(MIN_SOURCE_TRIALS - 1)],
        values=[0.5] * (MIN_SOURCE_TRIALS - 1),
        meta_features={},
    )
    plan = plan_warm_start("auto", {"photo": few}, SPACE, "cora", {}, BayesianOptimization, {})
    assert plan is not None and plan.sources == []
    assert f"{MIN_SOURCE_TRIALS} or more finished" in plan.describe() and "starting cold" in plan.describe()
    enough = SimpleNamespace(
        genotype_jsons=[pool[i].to_json() for i in range(MIN_SOURCE_TRIALS)],
        values=np.linspace(0.4, 0.6, MIN_SOURCE_TRIALS),
        meta_features={},
    )
    plan = plan_warm_start("auto", {"photo": enough}, SPACE, "cora", {}, BayesianOptimization, {})
    assert [s.task for s in plan.sources] == ["photo"]


def test_a_warm_started_climb_grows_the_sources_best_at_once_and_a_cold_one_starts_with_half_its_budget(tmp_path):
    from metastore import open_store
    from workbench.search import new_search
    from workbench.task import load_task

    store = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    new_search(store, load_task("nbgraph-computers"), "random", 30, seed=0).run()
    warm = new_search(store, load_task("nbgraph-arxiv"), "hillclimb", 30, seed=0, warm_start="auto")
    assert warm.strategy.start is not None and warm.strategy.initial == 1  # no random trials first
    assert "initial" not in store.search(warm.search_id).spec["strategy_options"]
    cold = new_search(store, load_task("nbgraph-arxiv"), "hillclimb", 30, seed=0, warm_start="none")
    assert cold.strategy.start is None and cold.strategy.initial == 15


@pytest.mark.parametrize("transfer", ["rgpe", "design"])
def test_a_warm_search_records_where_each_trial_came_from_and_says_how_much_the_sources_were_used(transfer):
    from metastore import open_store
    from metastore.schema import TAG_ORIGIN
    from workbench.search import new_search, resume_search
    from workbench.task import load_task

    store = open_store(f"memory://origins-{transfer}")
    new_search(store, load_task("nbgraph-computers"), "random", 12, seed=0).run()
    search = new_search(
        store, load_task("nbgraph-photo"), "bo", 7, seed=0, warm_start="auto", strategy_options={"transfer": transfer}
    )
    result = search.run()
    origins = [t.tags.get(TAG_ORIGIN) for t in store.trials(result.search_id)]
    if transfer == "design":  # the sources' best first, then cold BO
        assert origins[0] == "prior" and "transfer" not in origins
    else:  # the sources' zero-shot lead (2 picks), then cold BO's random design
        assert origins[:6] == ["transfer"] * 2 + ["random"] * 4
    summary = store.search(result.search_id).summary
    assert summary["warm_trials_from_prior"] + summary["warm_trials_from_transfer"] == sum(
        o in ("prior", "transfer") for o in origins
    )
    line = search.source_use()
    assert "came from the sources" in line and "nbgraph-computers" in line
    resumed = resume_search(store, result.search_id, budget=9)  # origins read back from the store
    resumed.run()
    assert resumed.summary()["warm_trials_from_prior"] == summary["warm_trials_from_prior"] + sum(
        t.tags.get(TAG_ORIGIN) == "prior" for t in store.trials(result.search_id)[7:]
    )
