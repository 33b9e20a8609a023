"""Faults during training: each ends its trial failed with the reason, and the search goes on.

Every search test checks that the search spent its whole budget, that the faulty trial is failed
with a readable reason (in the store, in ``nasw show``), and that every trial recorded as ended
was never changed afterwards (:meth:`Watch.assert_intact`).
"""

from __future__ import annotations

import json
import sys
import time

import pytest
import torch
from helpers import nasw

from metastore import open_store
from workbench.errors import TrialFailed

from .conftest import TINY_TOML, tiny_task


def by_number(store, search_id):
    return {t.number: t for t in store.trials(search_id)}


def check_search(store, result, budget, failed_numbers, reason_part):
    """The budget was spent; exactly ``failed_numbers`` failed, each with ``reason_part``."""
    trials = by_number(store, result.search_id)
    assert result.n_trials == budget and len(trials) == budget
    assert {n for n, t in trials.items() if t.state == "failed"} == set(failed_numbers), {
        n: t.reason for n, t in trials.items()
    }
    for n in failed_numbers:
        assert reason_part in (trials[n].reason or ""), trials[n].reason
    for n, t in trials.items():
        if n not in failed_numbers:
            assert t.state == "finished" and 0.0 <= t.metrics["val_accuracy"] <= 1.0
    best = result.best_trial
    assert best is not None and best.state == "finished" and best.number not in failed_numbers
    assert store.search(result.search_id).summary["n_failed"] == len(failed_numbers)
    return trials


def show_lists_failed(store_uri, search_id, numbers, capsys):
    code, out, _ = nasw(["show", search_id, "--store", store_uri, "--format", "json"], capsys)
    assert code == 0
    shown = {t["number"]: t for t in json.loads(out)["trials"]}
    for n in numbers:
        assert shown[n]["state"] == "failed" and shown[n]["reason"]
    code, out, _ = nasw(["show", search_id, "--store", store_uri], capsys)
    assert code == 0 and "failed" in out


class ForwardFault(torch.nn.Module):
    """Wraps a network; ``fault(call)`` runs before each forward (raise, sleep, loop, ...)."""

    def __init__(self, inner: torch.nn.Module, fault) -> None:
        super().__init__()
        self.inner = inner
        self.fault = fault
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fault(self.calls, self.inner(x))


# -- NaN / inf losses and exploding gradients -----------------------------------------------------
def test_exploding_gradients_fail_the_trial_and_the_search_goes_on(memory_uri, run_search, trial_hook, capsys):
    store = open_store(memory_uri)
    watch_box = {}

    def explode(model, attempt):
        for p in model.parameters():
            p.register_hook(lambda g: g * float("inf"))
        return model

    trial_hook(lambda: watch_box["w"], {1}, explode)
    from workbench.search import new_search

    from .conftest import Watch

    watch = watch_box["w"] = Watch(store=store)
    search = new_search(store, tiny_task(), "random", 4, 0, progress=watch)
    result = search.run()
    check_search(store, result, 4, {1}, "diverged: gradient norm is")
    watch.assert_intact()
    assert not any(
        o.genotype.key == store.trials(result.search_id)[1].genotype_key and o.ok for o in search.strategy.history
    )
    show_lists_failed(memory_uri, result.search_id, [1], capsys)


def test_nan_loss_fails_the_trial(memory_uri, trial_hook):
    from workbench.search import new_search

    from .conftest import Watch

    store = open_store(memory_uri)
    watch = Watch(store=store)
    trial_hook(lambda: watch, {0, 2}, lambda m, a: ForwardFault(m, lambda call, y: y * float("nan")))
    search = new_search(store, tiny_task(), "evolution", 4, 1, progress=watch)
    result = search.run()
    check_search(store, result, 4, {0, 2}, "diverged: training loss is nan")
    watch.assert_intact()


# -- out of memory ---------------------------------------------------------------------------------
def oom_on_first_call(call, y):
    if call == 1:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
    return y


def spy_batch_sizes(monkeypatch):
    from workbench.evaluate import trainer

    seen = []
    original = trainer.TrainedEvaluator.train

    def train(self, model, cfg, **kw):
        seen.append(cfg.batch_size)
        return original(self, model, cfg, **kw)

    monkeypatch.setattr(trainer.TrainedEvaluator, "train", train)
    return seen


def test_out_of_memory_retries_once_at_half_batch_size(memory_uri, trial_hook, monkeypatch):
    from workbench.search import new_search

    from .conftest import Watch

    store = open_store(memory_uri)
    watch = Watch(store=store)
    trial_hook(lambda: watch, {1}, lambda m, attempt: ForwardFault(m, oom_on_first_call) if attempt == 1 else m)
    batches = spy_batch_sizes(monkeypatch)
    result = new_search(store, tiny_task(), "random", 3, 0, progress=watch).run()
    trials = check_search(store, result, 3, set(), "")
    assert batches == [128, 128, 64, 128]  # trial 1 ran twice, the second time at half size
    note = trials[1].tags["nasw.note.oom"]
    assert "out of memory at batch size 128" in note and "retried at batch size 64" in note
    assert "nasw.note.oom" not in trials[0].tags and "nasw.note.oom" not in trials[2].tags
    watch.assert_intact()


def test_out_of_memory_twice_fails_the_trial(memory_uri, trial_hook, monkeypatch):
    from workbench.search import new_search

    from .conftest import Watch

    store = open_store(memory_uri)
    watch = Watch(store=store)
    trial_hook(lambda: watch, {0}, lambda m, attempt: ForwardFault(m, oom_on_first_call))
    batches = spy_batch_sizes(monkeypatch)
    result = new_search(store, tiny_task(), "random", 3, 0, progress=watch).run()
    check_search(store, result, 3, {0}, "out of memory at batch size 128 and again at 64")
    assert batches == [128, 64, 128, 128]
    watch.assert_intact()


def test_out_of_memory_with_a_batch_that_cannot_be_halved_fails_at_once():
    from workbench.evaluate.factory import evaluator_for, space_for

    task = tiny_task(batch_size=3)
    ev = evaluator_for(task)
    g = space_for(task).sample(__import__("numpy").random.default_rng(0))
    original = ev.build
    ev.build = lambda *a, **k: ForwardFault(original(*a, **k), oom_on_first_call)
    with pytest.raises(TrialFailed, match="batch size 3 cannot be halved"):
        ev.evaluate(g, seed=0)


def test_a_cpu_allocation_failure_counts_as_out_of_memory():
    from workbench.evaluate.trainer import is_out_of_memory

    assert is_out_of_memory(
        RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")
    )
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


# -- hangs past the time limit ---------------------------------------------------------------------
def test_a_trial_slow_inside_an_epoch_times_out_between_batches(memory_uri, trial_hook):
    """The trainer checks ``max_seconds`` after every batch: the first epoch never ends here."""
    from workbench.search import new_search

    from .conftest import Watch

    store = open_store(memory_uri)
    watch = Watch(store=store)

    def slow(call, y):
        time.sleep(1.5)
        return y

    trial_hook(lambda: watch, {1}, lambda m, a: ForwardFault(m, slow))
    t0 = time.monotonic()
    result = new_search(store, tiny_task(max_seconds=4, batch_size=64), "random", 3, 0, progress=watch).run()
    trials = check_search(store, result, 3, {1}, "timed out: over 4 s ([training] max_seconds) at epoch 0, batch")
    assert time.monotonic() - t0 < 60
    assert not store.metric_history(trials[1].trial_id, "val_accuracy")  # it never finished an epoch
    watch.assert_intact()


@pytest.mark.skipif(sys.platform == "win32", reason="the watchdog needs signal.setitimer")
@pytest.mark.parametrize("where", ["forward", "data"])
def test_a_trial_stuck_in_python_code_is_stopped_by_the_watchdog(memory_uri, trial_hook, monkeypatch, where):
    """A forward pass (or a data fetch) that never returns to the batch loop: the SIGALRM
    watchdog of ``execute_trial`` stops it at ``max_seconds`` plus grace."""
    from workbench.evaluate import trainer
    from workbench.execute import limits
    from workbench.search import new_search

    from .conftest import Watch

    monkeypatch.setattr(limits, "GRACE_MIN_SECONDS", 0.5)
    store = open_store(memory_uri)
    watch = Watch(store=store)
    give_up = time.monotonic() + 120  # a safety net for the test itself

    def spin(*_):
        while time.monotonic() < give_up:  # pure Python busy loop: no batch boundary, no epoch end
            pass
        raise AssertionError("the watchdog did not fire")

    if where == "forward":
        trial_hook(lambda: watch, {1}, lambda m, a: ForwardFault(m, lambda call, y: spin()))
    else:
        original = trainer.TrainedEvaluator._data

        def data(self, *args, **kwargs):
            if watch.current == 1:
                spin()
            return original(self, *args, **kwargs)

        monkeypatch.setattr(trainer.TrainedEvaluator, "_data", data)
    t0 = time.monotonic()
    result = new_search(store, tiny_task(max_seconds=5.0), "random", 3, 0, progress=watch).run()
    elapsed = time.monotonic() - t0
    check_search(store, result, 3, {1}, "timed out: trial 1 was still running after the hard limit of 7.5 s")
    assert elapsed < 60
    watch.assert_intact()
    import signal

    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0  # nothing left armed


def test_the_watchdog_leaves_other_timers_alone():
    import signal

    from workbench.execute.limits import hard_limit_for, time_limit

    assert hard_limit_for(object(), None) is None
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    previous = signal.signal(signal.SIGALRM, lambda *a: None)
    try:
        with time_limit(0.05):
            time.sleep(0.2)  # the outer timer is armed: the watchdog does not replace it
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 50
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    with pytest.raises(TrialFailed, match="hard limit of 0.2 s"):
        with time_limit(0.2, what="a sleep"):
            time.sleep(5)
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0


# -- a user's data loader that raises --------------------------------------------------------------
LOADERS = """
from workbench.data.builtin import load_digits

def broken(seed, test, valid, **options):
    raise OSError("the dataset server is down")

def not_splits(seed, test, valid, **options):
    return [1, 2, 3]

def works(seed, test, valid, **options):
    return load_digits(seed=seed, test=test, valid=valid)
"""


@pytest.fixture
def user_loaders(tmp_path, monkeypatch):
    from workbench.data import base

    (tmp_path / "my_loaders.py").write_text(LOADERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("broken", "not_splits", "works"):
        monkeypatch.setitem(base._LOADERS, name, f"my_loaders:{name}")
    base._cached.cache_clear()
    yield tmp_path
    base._cached.cache_clear()


@pytest.mark.parametrize(
    "loader, message",
    [
        ("broken", "dataset loader 'broken' failed: OSError: the dataset server is down"),
        ("not_splits", "dataset loader 'not_splits' returned list, expected Splits"),
    ],
)
def test_a_loader_that_cannot_load_stops_the_search_before_any_trial(user_loaders, capsys, loader, message):
    tmp_path = user_loaders
    (tmp_path / "t.toml").write_text(TINY_TOML.replace('loader = "digits"', f'loader = "{loader}"'))
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    code, out, err = nasw(["search", "--task", tmp_path / "t.toml", "--budget", 3, "--store", uri], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"error: task 'tiny-faults': {message}"]
    assert "Traceback" not in out + err
    assert open_store(uri).searches() == []  # stopped before the search (and any trial) started


def test_a_data_fault_during_a_trial_fails_only_that_trial(memory_uri, monkeypatch):
    """A lazy loader's read that fails in the middle of a search (a file gone from a network
    drive): that trial fails with the reason, the next ones load the data and go on."""
    from workbench.evaluate import trainer
    from workbench.search import new_search

    from .conftest import Watch

    store = open_store(memory_uri)
    watch = Watch(store=store)
    original = trainer.TrainedEvaluator._data

    def data(self, *args, **kwargs):
        if watch.current == 1:
            raise OSError(5, "Input/output error", "/mnt/data/x_train.npy")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(trainer.TrainedEvaluator, "_data", data)
    result = new_search(store, tiny_task(), "random", 3, 0, progress=watch).run()
    check_search(store, result, 3, {1}, "OSError: [Errno 5] Input/output error: '/mnt/data/x_train.npy'")
    watch.assert_intact()


def test_a_loader_that_fails_in_a_pool_worker_fails_that_trial(user_loaders, tmp_path):
    """In a worker process the task is rebuilt from JSON; if its data cannot load there, the
    trial ends failed with the reason (the worker itself keeps serving)."""
    from workbench.data import base
    from workbench.execute import worker
    from workbench.execute.trial import TrialJob

    uri = f"sqlite:///{tmp_path / 'w' / 'mlflow.db'}"
    store = open_store(uri)
    task = tiny_task()
    doc = task.to_dict()
    doc["dataset"] = {"loader": "works"}
    sid = store.start_search("tiny-faults", strategy="random", space="chain-v1", seed=0, objective="val_accuracy")
    from workbench.evaluate.factory import space_for

    g = space_for(task).sample(__import__("numpy").random.default_rng(0))
    job = TrialJob(sid, store.start_trial(sid, g.to_json(), g.key), 0, g.to_json(), 0, "val_accuracy")
    base._LOADERS["works"] = "my_loaders:broken"  # the worker's environment differs
    worker._CACHE.clear()
    try:
        outcome = worker.run_job(uri, json.dumps(doc), "cpu", job)
    finally:
        worker._CACHE.clear()
        worker._STORES.clear()
    assert outcome.state == "failed"
    assert "cannot prepare the task in this worker: DataError" in outcome.reason
    assert "the dataset server is down" in outcome.reason
    rec = open_store(uri).trial(job.trial_id)
    assert rec.state == "failed" and rec.reason == outcome.reason


# -- failed trials are never used as if they had succeeded -----------------------------------------
STRATEGIES = ["random", "evolution", "rl", "bo", "hillclimb"]


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategies_never_take_a_failed_trial_with_good_partial_metrics_as_good(name):
    """A trial that logged ``val_accuracy = 0.999`` at epoch 0 and then diverged: its record
    still holds the metric, but resume tells it as failed, and no strategy treats it as good."""
    import numpy as np

    from metastore import TrialRecord
    from workbench.search import observation_of
    from workbench.space.registry import make_space
    from workbench.strategy.registry import make_strategy, strategy_names

    if name not in strategy_names():
        pytest.skip(f"strategy {name} not registered")
    space = make_space("chain", max_layers=3, kernels=[3], widths=[4, 8], dense_widths=[16])
    rng = np.random.default_rng(0)
    gs = []
    while len(gs) < 6:
        g = space.sample(rng)
        if g.key not in {x.key for x in gs}:
            gs.append(g)
    records = [
        TrialRecord(
            trial_id=f"t{i}",
            search_id="s",
            task="t",
            number=i,
            genotype_json=g.to_json(),
            genotype_key=g.key,
            state="failed" if i % 2 else "finished",
            metrics={"val_accuracy": 0.999, "latency": 1e-9}
            if i % 2
            else {"val_accuracy": 0.5 + 0.01 * i, "latency": 1e-3},
            reason="diverged: training loss is nan at epoch 1" if i % 2 else None,
        )
        for i, g in enumerate(gs)
    ]
    obs = [observation_of(r, "val_accuracy", space) for r in records]
    assert [o.value is None for o in obs] == [bool(i % 2) for i in range(6)]
    failed_keys = {gs[i].key for i in (1, 3, 5)}
    options = {"objectives": ["val_accuracy", "-latency"]} if name in ("evolution",) else {}
    for opts in ({}, options) if options else ({},):
        strategy = make_strategy(name, space, seed=0, **opts)
        strategy.tell(obs)
        assert strategy.incumbent is not None and strategy.incumbent.genotype.key not in failed_keys
        front = getattr(strategy, "pareto_front", None)
        if callable(front):
            assert all(o.genotype.key not in failed_keys for o in front())
        proposal = strategy.ask(1)[0]
        if proposal.parent_trial is not None:
            assert proposal.parent_trial not in {"t1", "t3", "t5"}


def test_search_best_and_show_never_pick_a_failed_trial(memory_uri, capsys):
    """Failed trials whose partial metrics beat every finished one: not the best anywhere."""
    from workbench.search import resume_search

    store = open_store(memory_uri)
    code, out, err = nasw(
        ["search", "--task", "nbgraph-cora", "--budget", 3, "--store", memory_uri, "--json", "--strategy", "random"],
        capsys,
    )
    assert code == 0, err
    sid = json.loads(out)["search_id"]
    g = store.trials(sid)[0]
    bad = store.start_trial(sid, g.genotype_json, g.genotype_key)
    store.log_metrics(bad, {"val_accuracy": 0.999, "test_accuracy": 0.999}, step=0)
    store.finish_trial(bad, state="failed", reason="diverged: training loss is nan at epoch 1")
    search = resume_search(store, sid, budget=5)
    result = search.run()
    assert result.best_trial.trial_id != bad and result.best_trial.metrics["val_accuracy"] < 0.999
    assert store.search(sid).summary["best_val_accuracy"] < 0.999
    code, out, _ = nasw(["show", sid, "--store", memory_uri, "--format", "json"], capsys)
    shown = {t["trial_id"]: t for t in json.loads(out)["trials"]}
    assert shown[bad]["state"] == "failed" and "diverged" in shown[bad]["reason"]
