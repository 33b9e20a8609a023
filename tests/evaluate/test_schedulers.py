"""Schedulers: successive halving and Hyperband rung sizes and promotions, ASHA's asynchronous
promotions, budgets, replay on resume, and searches (BO, evolution) under them."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from helpers import nasw, synthetic_search, tiny_toml

from metastore.schema import TAG_FIDELITY as FIDELITY_TAG
from workbench.errors import UserError
from workbench.evaluate.fidelity import fidelity_space
from workbench.evaluate.schedulers import ASHA, Hyperband, SuccessiveHalving, make_scheduler, scheduler_names

FS = fidelity_space({"epochs": [1, 27]}, full_epochs=27)


def drive(sched, capacity: int = 1, seed: int = 0, stop_after: int | None = None):
    """Run a scheduler against a synthetic value per (configuration, epochs); return the log.

    Each row: (trial id, key, decision, value). Trials finish in start order.
    """
    rng = np.random.default_rng(seed)
    quality: dict[str, float] = {}
    running: list = []
    log: list = []
    final_asked = False
    n = 0
    while True:
        while len(running) < capacity and (stop_after is None or n < stop_after):
            d = sched.next()
            if d is None and not running and not final_asked:
                final_asked = True
                d = sched.final_decision()
            if d is None:
                break
            tid = f"t{n}"
            n += 1
            key = sched.entries[d.promote].key if d.promote else f"k{tid}"
            quality.setdefault(key, float(rng.random()))
            sched.started(d, tid, key)
            running.append((tid, key, d))
        if not running:
            return log
        tid, key, d = running.pop(0)
        value = quality[key] * (d.fidelity.epochs / 27) ** 0.1
        sched.finished(tid, value)
        log.append((tid, key, d, value))
        if stop_after is not None and n >= stop_after and not running:
            return log


def per_rung(log, bracket: int | None = None) -> list[int]:
    counts = Counter(d.rung for _, _, d, _ in log if bracket is None or d.bracket == bracket)
    return [counts.get(r, 0) for r in range(max(counts) + 1)] if counts else []


def test_names_and_bad_options():
    assert scheduler_names() == ["asha", "hyperband", "sh"]
    with pytest.raises(UserError, match="unknown scheduler"):
        make_scheduler("bohb", FS, 1)
    with pytest.raises(UserError, match="promote"):
        make_scheduler("sh", FS, 1, promote="sometimes")
    with pytest.raises(UserError, match="bad options"):
        make_scheduler("asha", FS, 1, n_configs=3)


def test_successive_halving_rungs_and_promotions():
    sched = SuccessiveHalving(FS, budget=3.0)  # exactly one bracket: 27 x 1, 9 x 3, 3 x 9, 1 x 27 epochs
    log = drive(sched)
    assert per_rung(log) == [27, 9, 3, 1]
    assert [f.epochs for f in sched.fidelities] == [1, 3, 9, 27]
    by_id = {tid: (key, d, v) for tid, key, d, v in log}
    for rung in (1, 2, 3):
        below = [(v, tid) for tid, (key, d, v) in by_id.items() if d.rung == rung - 1]
        promoted = {by_id[tid][1].promote for tid, (key, d, v) in by_id.items() if d.rung == rung}
        best = {tid for _, tid in sorted(below, reverse=True)[: len(promoted)]}
        assert promoted == best  # the top 1/eta of the rung below
    for key, d, _ in by_id.values():
        if d.promote:  # same genotype, continuing from the lower rung's epochs
            assert key == by_id[d.promote][0]
            assert d.fidelity.start_epoch == by_id[d.promote][1].fidelity.epochs
    costs = sum(d.cost for _, _, d, _ in log)
    assert costs == pytest.approx(3.0)  # 1 + 2/3 + 2/3 + 2/3


def test_successive_halving_waits_for_the_whole_rung():
    sched = SuccessiveHalving(FS, budget=3.0, n_configs=9)
    assert sched.plan(0) == (1, (9, 3, 1))  # fewer configurations start higher
    decisions = [sched.next() for _ in range(9)]
    for i, d in enumerate(decisions):
        sched.started(d, f"t{i}", f"k{i}")
    for i in range(8):
        sched.finished(f"t{i}", float(i))
        assert sched.next() is None or sched.next().bracket == 1  # no promotion before the rung ends
    sched.finished("t8", 0.5)
    d = sched.next()
    assert d.bracket == 0 and d.promote == "t7" and d.rung == 2


def test_budget_limits_brackets():
    log = drive(SuccessiveHalving(FS, budget=8.0))
    assert sorted(Counter(d.bracket for _, _, d, _ in log).items()) == [(0, 40), (1, 40)]
    assert sum(d.cost for _, _, d, _ in log) <= 8.0
    retrain = drive(SuccessiveHalving(FS, budget=4.0, promote="retrain"))
    assert all(d.fidelity.start_epoch == 0 for _, _, d, _ in retrain)
    assert sum(d.cost for _, _, d, _ in retrain) == pytest.approx(4.0)  # 27/27 + 9*3/27 + 3*9/27 + 27/27


def test_hyperband_brackets():
    hb = Hyperband(FS, budget=100.0)
    assert [hb.plan(i) for i in range(5)] == [
        (0, (27, 9, 3, 1)),
        (1, (12, 4, 1)),
        (2, (6, 2)),
        (3, (4,)),
        (0, (27, 9, 3, 1)),
    ]
    log = drive(Hyperband(FS, budget=12.0))
    assert per_rung(log, 0) == [27, 9, 3, 1]
    assert per_rung(log, 1) == [0, 12, 4, 1]
    assert per_rung(log, 2) == [0, 0, 6, 2]
    assert sum(d.cost for _, _, d, _ in log) <= 12.0
    assert {d.bracket for _, _, d, _ in log} == {0, 1, 2}  # the fourth bracket (4 x 27 epochs) does not fit


def test_asha_promotes_the_top_third_without_waiting():
    asha = ASHA(FS, budget=100.0)
    for i in range(2):
        d = asha.next()
        assert d.rung == 0 and d.promote is None
        asha.started(d, f"t{i}", f"k{i}")
        asha.finished(f"t{i}", float(i))
    d = asha.next()
    assert d.rung == 0  # 2 results: nothing to promote yet
    asha.started(d, "t2", "k2")
    asha.finished("t2", 0.5)
    d = asha.next()  # 3 results: the best (t1) goes up, while nothing else has finished
    assert d.rung == 1 and d.promote == "t1" and d.fidelity.epochs == 3 and d.fidelity.start_epoch == 1
    asha.started(d, "t3", "k1")
    assert asha.next().rung == 0  # t1 is promoted once only


def test_asha_within_budget_and_final_promotion():
    log = drive(ASHA(FS, budget=1.0), capacity=2)
    assert sum(d.cost for _, _, d, _ in log[:-1]) <= 1.0
    final = log[-1][2]
    assert final.final and final.rung == 3 and final.fidelity.epochs == 27  # the best goes to full fidelity
    best_low = max((v, tid) for tid, _, d, v in log if d.rung == max(dd.rung for _, _, dd, _ in log[:-1]))
    assert final.promote == best_low[1]


@pytest.mark.parametrize("name", ["sh", "hyperband", "asha"])
def test_replay_rebuilds_the_schedule(name):
    a = make_scheduler(name, FS, 6.0)
    rows = [(tid, key, d.record(a.space), v, True) for tid, key, d, v in drive(a, stop_after=20)]
    b = make_scheduler(name, FS, 6.0)
    b.replay(rows)
    assert b.committed == pytest.approx(a.committed)
    for i in range(5):
        da, db = a.next(), b.next()
        assert da == db
        if da is None:
            break
        a.started(da, f"x{i}", f"kx{i}")
        b.started(db, f"x{i}", f"kx{i}")
        a.finished(f"x{i}", 0.1 * i)
        b.finished(f"x{i}", 0.1 * i)


# -- searches under schedulers (synthetic evaluator: instant) --------------------------------------
TASK = {
    "name": "synthetic-sched",
    "kind": "trained",
    "dataset": {"loader": "digits"},
    "space": {"kind": "chain", "max_layers": 4, "kernels": [3, 5, 7], "widths": [8, 16, 32], "dense_widths": [16, 32]},
    "training": {"epochs": 27},
    "fidelity": {"epochs": [1, 27]},
}


@pytest.mark.parametrize(
    "strategy, options", [("evolution", {"population": 8}), ("bo", {"n_init": 4, "n_samples": 200, "n_mutations": 20})]
)
def test_bo_and_evolution_run_under_successive_halving(strategy, options):
    from metastore import open_store

    store = open_store("memory://")
    search = synthetic_search(store, TASK, "sh", 3.0, strategy=strategy, strategy_options=options)
    result = search.run()
    trials = store.trials(result.search_id)
    assert Counter(json.loads(t.tags[FIDELITY_TAG])["rung"] for t in trials) == {0: 27, 1: 9, 2: 3, 3: 1}
    assert len({t.genotype_key for t in trials if json.loads(t.tags[FIDELITY_TAG])["rung"] == 0}) == 27
    for t in trials:
        rec = json.loads(t.tags[FIDELITY_TAG])
        if rec["rung"] > 0:  # a promotion names the lower-rung trial and continues from it
            assert t.parent_trial == rec["promoted_from"]
    assert result.best_trial is not None and json.loads(result.best_trial.tags[FIDELITY_TAG])["full"]
    assert result.summary["compute_full_equivalents"] == pytest.approx(3.0)
    told = search.strategy.history
    assert len(told) == 40 and {o.fidelity["epochs"] for o in told} == {1, 3, 9, 27}


def test_bo_models_the_highest_fidelity_with_enough_observations():
    from workbench.space.registry import make_space
    from workbench.strategy.base import Observation, highest_fidelity

    space = make_space(**TASK["space"])
    gs = [space.sample(np.random.default_rng(i)) for i in range(12)]
    obs = [Observation(g, 0.1 * i, fidelity={"level": 1 / 27 if i < 8 else 1 / 9}) for i, g in enumerate(gs)]
    assert highest_fidelity(obs, 3) == obs[8:]
    assert highest_fidelity(obs, 5) == obs[:8]
    plain = [Observation(g, 0.5) for g in gs]
    assert highest_fidelity(plain, 3) == plain


def test_resumed_search_continues_its_schedule():
    from metastore import open_store

    store = open_store("memory://")
    first = synthetic_search(store, TASK, "sh", 3.0)
    done = first.run()
    again = synthetic_search(store, TASK, "sh", 6.0)  # a larger budget: one more bracket
    again.replay(done.search_id)
    assert again.scheduler.committed == pytest.approx(3.0)
    result = again.run()
    recs = [json.loads(t.tags[FIDELITY_TAG]) for t in store.trials(result.search_id)]
    assert Counter(r["bracket"] for r in recs) == {0: 40, 1: 40}


TINY = tiny_toml("tiny-asha", None, split=None, training={"epochs": 3, "batch_size": 256}, fidelity={"epochs": [1, 3]})


def test_asha_with_two_pool_workers_completes(tmp_path):
    from metastore import open_store
    from workbench.search import new_search
    from workbench.task import load_task

    (tmp_path / "tiny.toml").write_text(TINY)
    store = open_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    search = new_search(
        store, load_task(str(tmp_path / "tiny.toml")), "random", 1, seed=0, executor="pool", workers=2, scheduler="asha"
    )
    result = search.run()
    trials = store.trials(result.search_id)
    assert all(t.state == "finished" for t in trials)
    recs = [json.loads(t.tags[FIDELITY_TAG]) for t in trials]
    assert sorted(r["epochs"] for r in recs) == [1, 1, 1, 3]  # three new at 1 epoch, the best finished at 3
    top = next(t for t, r in zip(trials, recs) if r["epochs"] == 3)
    assert top.parent_trial and top.metrics["epochs"] == 3 and top.metrics["epochs_trained"] == 2
    assert result.best_trial.trial_id == top.trial_id


def test_a_tabular_task_cannot_be_scheduled():
    from metastore import open_store
    from workbench.search import new_search
    from workbench.task import load_task

    with pytest.raises(UserError, match="lower fidelities"):
        new_search(open_store("memory://"), load_task("nbgraph-cora"), "random", 3, scheduler="sh")


def test_cli_schedules_a_search_and_refuses_a_tabular_task(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, _, err = nasw(["search", "--task", "nbgraph-cora", "--scheduler", "sh", "--store", store, "--quiet"], capsys)
    assert code == 2 and "lower fidelities" in err
    code, out, _ = nasw(
        [
            "search",
            "--task",
            "tiny.toml",
            "--strategy",
            "random",
            "--scheduler",
            "sh",
            "--budget",
            "1",
            "--scheduler-option",
            "n_configs=3",
            "--store",
            store,
            "--json",
        ],
        capsys,
    )
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert result["n_trials"] == 4 and result["best"]["metrics"]["epochs"] == 3  # 3 x 1 epoch, the best to 3


@pytest.mark.parametrize("name, budget", [("sh", 8.0), ("hyperband", 12.0), ("asha", 3.0)])
def test_expected_trials_is_a_dry_run(name, budget):
    sched = make_scheduler(name, FS, budget)
    expected = sched.expected_trials()
    assert not sched.entries  # the dry run works on a copy
    n = len(drive(sched))
    assert expected == n if name != "asha" else abs(expected - n) <= n // 2
