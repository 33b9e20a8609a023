"""What the strategies over a space's decisions (eda, qlearning, smac, tpe) share: each runs from
the CLI on a trained and a tabular task, and a warm-started search resumed in parts proposes what
the same search run whole proposes."""

from __future__ import annotations

import json

import pytest
from helpers import nasw, tiny_toml


@pytest.mark.parametrize("name, tabular_budget", [("eda", 12), ("qlearning", 12), ("smac", 10), ("tpe", 14)])
def test_runs_from_the_cli_on_a_trained_and_a_tabular_task(name, tabular_budget, workdir, capsys):
    (workdir / "tiny.toml").write_text(tiny_toml())
    for task, budget in (("tiny.toml", 3), ("nbgraph-cora", tabular_budget)):
        args = ["search", "--task", task, "--strategy", name, "--budget", budget, "--json", "--store", "memory://"]
        code, out, err = nasw(args, capsys)
        assert code == 0, err
        assert json.loads(out)["n_trials"] == budget


#: What each strategy takes from a warm start (checked before the search runs).
WARM = {
    "eda": lambda s: bool(s.prior),  # the sources' best shape the first distribution
    "qlearning": lambda s: bool(s.warm),
    "tpe": lambda s: bool(s.prior) and bool(s._source_rows),
}


@pytest.mark.parametrize("name", sorted(WARM))
def test_warm_start_and_resume_replay_the_same_search(name):
    from metastore import open_store
    from workbench.search import new_search, resume_search
    from workbench.task import load_task

    def store_with_source(label):
        store = open_store(f"memory://{name}-{label}")
        new_search(store, load_task("nbgraph-photo"), "random", 12, seed=0).run()
        return store

    whole = store_with_source("whole")
    full = new_search(whole, load_task("nbgraph-cora"), name, 9, seed=1, warm_start="auto")
    assert WARM[name](full.strategy)
    full_id = full.run().search_id
    parts = store_with_source("parts")
    first = new_search(parts, load_task("nbgraph-cora"), name, 5, seed=1, warm_start="auto").run()
    resume_search(parts, first.search_id, budget=9).run()
    keys = [t.genotype_key for t in whole.trials(full_id)]
    assert [t.genotype_key for t in parts.trials(first.search_id)] == keys
