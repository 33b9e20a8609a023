"""Per-epoch metrics reach the store in batches, and every epoch a trial got is recorded,
whether it finishes or fails."""

from __future__ import annotations

import numpy as np
import pytest

from metastore import open_store
from workbench.evaluate.base import EvalResult
from workbench.execute import trial as trial_mod
from workbench.execute.trial import TrialJob, execute_trial
from workbench.space.registry import make_space


class CountingStore:
    """Wraps a store and counts the metric writes."""

    def __init__(self, inner):
        self.inner, self.writes = inner, 0

    def log_metrics(self, *a, **k):
        self.writes += 1
        return self.inner.log_metrics(*a, **k)

    def log_metric_steps(self, *a, **k):
        self.writes += 1
        return self.inner.log_metric_steps(*a, **k)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class EpochsEvaluator:
    """Reports ``epochs`` epochs, then finishes or raises."""

    def __init__(self, epochs: int, fail_after: int | None = None):
        self.epochs, self.fail_after = epochs, fail_after

    def evaluate(self, genotype, seed=0, init_state=None, on_epoch=None, **_):
        for e in range(self.epochs):
            if self.fail_after is not None and e == self.fail_after:
                raise RuntimeError("diverged")
            on_epoch(e, {"val_accuracy": 0.1 * e, "loss": 1.0 / (e + 1)})
        return EvalResult(metrics={"val_accuracy": 0.1 * (self.epochs - 1)})


def _job(store, space):
    sid = store.start_search("t", strategy="random", space=space.name, seed=0, objective="val_accuracy")
    g = space.sample(np.random.default_rng(0))
    return TrialJob(sid, store.start_trial(sid, g.to_json(), g.key), 0, g.to_json(), 0, "val_accuracy")


@pytest.mark.parametrize("fail_after", [None, 7])
def test_every_epoch_is_recorded_in_few_writes(tmp_path, fail_after):
    inner = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    store = CountingStore(inner)
    space = make_space("chain", max_layers=2)
    job = _job(inner, space)
    out = execute_trial(store, EpochsEvaluator(30, fail_after), space, job, save_weights=False)
    got = 30 if fail_after is None else fail_after
    assert out.state == ("finished" if fail_after is None else "failed")
    assert store.writes == 1  # fast epochs: one batch at the end
    assert sorted(s for s, _ in inner.metric_history(job.trial_id, "loss")) == list(range(got))


def test_slow_epochs_are_written_while_training(monkeypatch):
    monkeypatch.setattr(trial_mod, "FLUSH_SECONDS", 0.0)
    inner = open_store("memory://")
    store = CountingStore(inner)
    space = make_space("chain", max_layers=2)
    job = _job(inner, space)
    seen = []

    class Watching(EpochsEvaluator):
        def evaluate(self, genotype, seed=0, init_state=None, on_epoch=None, **_):
            def cb(e, m):
                on_epoch(e, m)
                seen.append(len(inner.metric_history(job.trial_id, "loss")))

            return super().evaluate(genotype, seed, init_state, cb)

    execute_trial(store, Watching(4), space, job, save_weights=False)
    assert seen == [1, 2, 3, 4]  # each epoch visible as soon as it is flushed
