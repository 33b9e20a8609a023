"""One-shot searches end to end: DARTS / GDAS through the strategy's relaxation hook, every strategy
with --estimator oneshot, what lands in the store, resume of an interrupted supernet training, bad input."""

from __future__ import annotations

import json

import pytest
from helpers import nasw, tiny_toml

from metastore import open_store
from metastore.schema import (
    OP_WEIGHTS_ARTIFACT,
    OP_WEIGHTS_PLOT,
    TAG_DERIVED,
    TAG_ESTIMATOR,
    TAG_FIDELITY,
    TAG_RESUMED_FROM,
    TAG_SUPERNET,
    fidelity_record,
)


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One MLflow store for the module (creating a store's tables takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('oneshot-store') / 'runs.db'}"


def _store(workdir):
    """A store for searches that must fail before they start (nothing is written)."""
    return "memory://oneshot-bad-input"


def _search(args, capsys, uri):
    code, out, err = nasw(["search", *map(str, args), "--store", uri, "--json", "--quiet"], capsys)
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _artifacts(store, run_id):
    from pathlib import Path

    from metastore.mlflow_setup import local_folder

    return Path(local_folder(store._trial_run(run_id).info.artifact_uri))


def test_darts_search_trains_op_weights_once_and_retrains_the_derived_cell(tiny_cell_task, uri, capsys):
    result = _search(
        ["--task", tiny_cell_task, "--strategy", "darts", "--budget", 2, "--option", "epochs=2"], capsys, uri
    )
    store = open_store(uri)
    trials = store.trials(result["search_id"])
    (sup,) = [t for t in trials if t.tags.get(TAG_SUPERNET)]
    loop = [t for t in trials if not t.tags.get(TAG_SUPERNET)]
    assert sup.tags[TAG_SUPERNET] == "darts" and sup.state == "finished" and result["n_trials"] == 2
    assert [t.genotype_json for t in loop][0] == sup.tags[TAG_DERIVED]  # the derived cell first, then the runner-up
    assert all(t.state == "finished" and "test_accuracy" in t.metrics and not t.parent_trial for t in loop)
    assert fidelity_record(sup.tags[TAG_FIDELITY])["full"] is False
    # op weights per edge per epoch, each edge's a distribution
    per_op = {op: store.metric_history(sup.trial_id, f"op_weight.0to1.{op}") for op in ("none", "skip", "conv1x1")}
    per_op.update({op: store.metric_history(sup.trial_id, f"op_weight.0to1.{op}") for op in ("conv3x3", "avgpool3x3")})
    assert all(len(points) == 2 for points in per_op.values())
    for epoch in (0, 1):
        assert sum(dict(points)[epoch] for points in per_op.values()) == pytest.approx(1.0)
    assert {step for step, _ in store.metric_history(sup.trial_id, "supernet_val_accuracy")} == {0, 1}
    state = store.load_weights(sup.trial_id)  # weights_only=True
    assert state["epoch"] == 2 and tuple(state["alpha"].shape) == (6, 5) and "supernet" in state
    folder = _artifacts(store, sup.trial_id)
    assert (folder / OP_WEIGHTS_PLOT).is_file()
    record = json.loads((folder / OP_WEIGHTS_ARTIFACT).read_text())
    assert len(record["epochs"]) == 2 and set(record["final"]) == {"1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"}
    summary = store.search(result["search_id"]).summary
    assert summary["supernet_seconds"] > 0 and summary["n_trials"] == 2
    code, out, _ = nasw(["show", result["search_id"][:8], "--store", uri], capsys)
    assert code == 0 and "supernet" in out


def test_estimator_scores_every_proposal_and_retrains_the_best(tiny_cell_task, uri, capsys):
    args = ["--task", tiny_cell_task, "--strategy", "random", "--estimator", "oneshot", "--budget", 5]
    args += ["--option", "supernet_epochs=1", "--option", "retrain_top=2", "--option", "bn_batches=1"]
    result = _search(args, capsys, uri)
    store = open_store(uri)
    trials = store.trials(result["search_id"])
    estimates = [t for t in trials if t.tags.get(TAG_ESTIMATOR)]
    retrained = [t for t in trials if t.parent_trial]
    assert len([t for t in trials if t.tags.get(TAG_SUPERNET) == "spos"]) == 1
    assert len(estimates) == 5 and all(t.tags[TAG_ESTIMATOR] == "oneshot+bn" for t in estimates)
    assert all(fidelity_record(t.tags[TAG_FIDELITY])["full"] is False for t in estimates)
    assert all("test_accuracy" not in t.metrics for t in estimates)
    best_two = sorted(estimates, key=lambda t: (-t.metrics["val_accuracy"], t.number))[:2]
    assert [t.parent_trial for t in retrained] == [t.trial_id for t in best_two]
    assert all(not t.tags.get(TAG_ESTIMATOR) and "test_accuracy" in t.metrics for t in retrained)
    assert [t.genotype_key for t in retrained] == [t.genotype_key for t in best_two]
    assert result["best"]["trial_id"] in {t.trial_id for t in retrained}  # a retrained trial, not an estimate
    summary = store.search(result["search_id"]).summary
    assert (summary["n_estimates"], summary["n_retrained"]) == (5, 2)
    spec = store.search(result["search_id"]).spec
    assert spec["oneshot"] == {
        "estimator": "oneshot",
        "options": {"bn_batches": 1, "retrain_top": 2, "supernet_epochs": 1},
    }
    assert spec["strategy_options"] == {}
    code, out, _ = nasw(["compare", result["search_id"][:8], "--store", uri], capsys)
    assert code == 0


class _StopAtSupernetEpoch:
    """A progress display that interrupts (as Ctrl-C) after the supernet's epoch ``stop``."""

    def __init__(self, stop: int) -> None:
        self.stop = stop

    def search_started(self, *a) -> None: ...

    def trial_started(self, *a) -> None: ...

    def trial_finished(self, *a) -> None: ...

    def epoch(self, number, epoch, metrics) -> None:
        if number < 0 and epoch == self.stop:
            raise KeyboardInterrupt


@pytest.mark.parametrize("strategy", ["gdas"])
def test_interrupted_supernet_resumes_from_its_last_epoch(strategy, tiny_cell_task):
    from workbench.search import new_search, resume_search
    from workbench.task import load_task

    task = load_task(str(tiny_cell_task))
    store = open_store("memory://oneshot-resume")
    opts = {"epochs": 3}
    straight = new_search(store, task, strategy, 1, seed=3, strategy_options=opts)
    straight.run()
    cut = new_search(store, task, strategy, 1, seed=3, strategy_options=opts, progress=_StopAtSupernetEpoch(1))
    with pytest.raises(KeyboardInterrupt):
        cut.run()
    assert store.search(cut.search_id).state == "killed"
    (first,) = store.trials(cut.search_id)
    assert first.state == "failed" and store.load_weights(first.trial_id)["epoch"] == 2
    resumed = resume_search(store, cut.search_id)
    assert resumed.records == []  # the supernet run is no trial of the loop
    resumed.run()
    runs = [t for t in store.trials(cut.search_id) if t.tags.get(TAG_SUPERNET)]
    assert len(runs) == 2 and runs[1].tags[TAG_RESUMED_FROM] == first.trial_id
    assert {s for s, _ in store.metric_history(runs[1].trial_id, "supernet_train_loss")} == {2}  # epoch 3 alone
    assert resumed.strategy.weights == straight.strategy.weights  # exactly the uninterrupted op weights
    assert [r.genotype_key for r in resumed.records] == [r.genotype_key for r in straight.records]
    again = resume_search(store, cut.search_id, budget=2)  # a finished supernet is restored, not retrained
    again.run()
    assert len([t for t in store.trials(cut.search_id) if t.tags.get(TAG_SUPERNET)]) == 2
    assert again.strategy.weights == straight.strategy.weights and len(again.records) == 2


def test_resumed_estimator_search_scores_more_and_retrains_each_best_estimate_once(tiny_cell_task):
    from workbench.search import new_search, resume_search
    from workbench.search.oneshot import is_estimate
    from workbench.task import load_task

    store = open_store("memory://oneshot-estimator-resume")
    task = load_task(str(tiny_cell_task))
    opts = {"supernet_epochs": 1, "retrain_top": 2, "bn_batches": 1}
    first = new_search(store, task, "random", 3, seed=1, strategy_options=opts, estimator="oneshot")
    first.run()
    again = resume_search(store, first.search_id, budget=5)
    again.run()
    trials = store.trials(first.search_id)
    estimates = [t for t in trials if is_estimate(t)]
    retrained = [t for t in trials if t.parent_trial]
    assert len([t for t in trials if t.tags.get(TAG_SUPERNET)]) == 1  # restored, not trained again
    assert len(estimates) == 5  # --budget counts estimates, not the retrained trials
    best_two = sorted(estimates, key=lambda t: (-t.metrics["val_accuracy"], t.number))[:2]
    assert {t.trial_id for t in best_two} <= {t.parent_trial for t in retrained}
    assert len({t.parent_trial for t in retrained}) == len(retrained)  # none retrained twice


@pytest.mark.parametrize(
    "args, match",
    [
        (["--strategy", "darts"], "needs a space with a weight-sharing supernet"),
        (["--strategy", "evolution", "--estimator", "oneshot"], "needs a space with a weight-sharing supernet"),
    ],
)
def test_one_shot_on_a_space_without_supernet_is_one_error_line(args, match, workdir, capsys):
    (workdir / "chain.toml").write_text(tiny_toml())
    code, out, err = nasw(["search", "--task", "chain.toml", *args, "--store", _store(workdir)], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and match in err


@pytest.mark.parametrize(
    "args, match",
    [
        (["--strategy", "darts", "--option", "epochs=100000"], "epochs must be an integer in 1..1000"),
        (["--strategy", "gdas", "--option", "epochs=0"], "epochs must be an integer in 1..1000"),
        (["--strategy", "darts", "--option", "alpha_lr=-1"], "alpha_lr must be"),
        (["--strategy", "darts", "--estimator", "oneshot"], "use one or the other"),
        (["--strategy", "random", "--estimator", "oneshot", "--option", "retrain_top=-2"], "retrain_top"),
        (["--strategy", "random", "--estimator", "oneshot", "--scheduler", "sh"], "does not combine"),
        (["--strategy", "random", "--estimator", "bogus"], "bogus"),
    ],
)
def test_bad_one_shot_input_is_one_error_line(args, match, tiny_cell_task, workdir, capsys):
    code, out, err = nasw(["search", "--task", tiny_cell_task, *args, "--store", _store(workdir)], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and match in err, err


def test_darts_on_a_tabular_task_is_one_error_line(workdir, capsys):
    code, out, err = nasw(
        ["search", "--task", "nbgraph-cora", "--strategy", "darts", "--store", _store(workdir)], capsys
    )
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert "supernet" in err


@pytest.mark.slow
def test_sigkill_during_darts_then_resume_continues_from_the_last_saved_epoch(tiny_cell_task, workdir):
    """``kill -9`` while the supernet trains; ``nasw resume`` continues from its checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    uri = f"sqlite:///{workdir / 'kill.db'}"
    env = {**os.environ, "NASW_STORE": uri}
    cmd = [sys.executable, "-m", "workbench.cli"]
    args = ["--task", str(tiny_cell_task), "--strategy", "darts", "--budget", "1", "--option", "epochs=40", "--quiet"]
    proc = subprocess.Popen(
        [*cmd, "search", *args], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    store, run, deadline = None, None, time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(1.0)
        try:
            store = open_store(uri, mode="read")
            (search,) = store.searches()
            (run,) = [t for t in store.trials(search.search_id) if t.tags.get(TAG_SUPERNET)]
            if len({s for s, _ in store.metric_history(run.trial_id, "supernet_train_loss")}) >= 3:
                break
        except (ValueError, Exception):  # noqa: BLE001 - not created yet
            continue
    if proc.poll() is not None:
        _, err = proc.communicate()
        tail = err.decode()[-2000:]
        raise AssertionError(f"the search ended (exit {proc.returncode}) before it could be killed: {tail}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = store.load_weights(run.trial_id)["epoch"]
    assert saved >= 3
    done = subprocess.run(
        [*cmd, "resume", search.search_id, "--json", "--quiet"], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    runs = [t for t in store.trials(search.search_id) if t.tags.get(TAG_SUPERNET)]
    assert [t.state for t in runs] == ["failed", "finished"] and runs[1].tags[TAG_RESUMED_FROM] == run.trial_id
    steps = {s for s, _ in store.metric_history(runs[1].trial_id, "supernet_train_loss")}
    assert min(steps) >= saved and max(steps) == 39  # continued from a saved epoch, not from scratch
    assert json.loads(done.stdout)["n_trials"] == 1
