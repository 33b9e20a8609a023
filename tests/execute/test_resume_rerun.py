"""Interrupted trials do not count against the budget: ``nasw resume`` re-runs their architectures
(issue 21, item 10), and Ctrl-C or ``kill -TERM`` leave the search ``killed`` with the running
trial marked interrupted."""

from __future__ import annotations

import os
import signal

import pytest

from metastore import open_store
from metastore.schema import TAG_RERUN_OF
from workbench.search.assemble import new_search, resume_search
from workbench.search.records import is_interrupted
from workbench.task import load_task

TASK = "nbgraph-cora"  # a table lookup: trials are instant


@pytest.fixture
def store(tmp_path):
    return open_store(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")


def _finished(store, search_id):
    return [t for t in store.trials(search_id) if t.state == "finished"]


def test_a_trial_left_running_by_a_killed_process_is_rerun_and_the_budget_counts_finished_trials(store):
    search = new_search(store, load_task(TASK), "random", 4, seed=3)
    for number in range(2):
        proposal = search.strategy.ask(1)[0]
        search.record(search.execute(search.start_trial(proposal, number)), proposal.genotype)
    lost = search.strategy.ask(1)[0]
    job = search.start_trial(lost, 2)  # never executed: the process was killed (kill -9) here
    search_id = search.search_id
    assert store.trial(job.trial_id).state == "running"

    resumed = resume_search(store, search_id)
    result = resumed.run()

    trials = store.trials(search_id)
    assert len(_finished(store, search_id)) == 4 == result.n_trials
    (interrupted,) = [t for t in trials if is_interrupted(t)]
    assert interrupted.trial_id == job.trial_id
    (rerun,) = [t for t in trials if t.tags.get(TAG_RERUN_OF) == job.trial_id]
    assert rerun.state == "finished" and rerun.genotype_key == lost.genotype.key
    assert rerun.number == 3  # the first trial after the resume
    summary = store.search(search_id).summary
    assert summary["n_trials"] == 4 and summary["n_failed"] == 0 and summary["n_interrupted"] == 1
    assert store.search(search_id).state == "finished"


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_mid_trial_then_resume_ends_with_exactly_the_budget(store, how):
    budget = 5
    search = new_search(store, load_task(TASK), "evolution", budget, seed=1, strategy_options={"population": 3})
    execute = search.execute
    seen = []

    def stop_at_third(job, on_epoch=None):
        seen.append(job.genotype_json)
        if len(seen) == 3:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)  # turned into Terminated by the search loop
            raise KeyboardInterrupt
        return execute(job, on_epoch)

    search.execute = stop_at_third
    with pytest.raises(KeyboardInterrupt):
        search.run()
    search_id = search.search_id
    assert store.search(search_id).state == "killed"
    (stopped,) = [t for t in store.trials(search_id) if t.state != "finished"]
    assert is_interrupted(stopped), stopped.reason
    if how == "sigterm":
        assert "SIGTERM" in stopped.reason

    result = resume_search(store, search_id).run()

    trials = store.trials(search_id)
    assert len(_finished(store, search_id)) == budget == result.n_trials
    assert len(trials) == budget + 1
    (rerun,) = [t for t in trials if t.tags.get(TAG_RERUN_OF) == stopped.trial_id]
    assert rerun.genotype_json == seen[2] and rerun.state == "finished"
    assert store.search(search_id).state == "finished"


def test_a_rerun_interrupted_again_is_rerun_once_more_and_never_twice(store):
    search = new_search(store, load_task(TASK), "random", 3, seed=5)
    lost = search.strategy.ask(1)[0]
    first = search.start_trial(lost, 0)
    store.finish_search(search.search_id, state="killed")

    again = resume_search(store, search.search_id)
    job = again.start_trial(*_next_rerun(again), rerun_of=first.trial_id)  # the re-run, killed as well
    store.finish_search(search.search_id, state="killed")
    del job

    resume_search(store, search.search_id).run()
    trials = store.trials(search.search_id)
    reruns = [t.tags.get(TAG_RERUN_OF) for t in trials if t.tags.get(TAG_RERUN_OF)]
    assert len(reruns) == len(set(reruns)) == 2  # the first trial once, its re-run once
    assert len(_finished(store, search.search_id)) == 3
    assert sum(t.genotype_key == lost.genotype.key and t.state == "finished" for t in trials) >= 1


def _next_rerun(search):
    """The proposal and number the resumed ``search`` would start next (its first re-run)."""
    from workbench.search.records import rerun_proposal

    rec = search._reruns.pop(0)
    return rerun_proposal(rec, search.space), len(search.records)


def test_an_interrupted_trial_whose_genotype_does_not_validate_is_not_rerun(store):
    search = new_search(store, load_task(TASK), "random", 2, seed=7)
    bad = store.start_trial(search.search_id, '{"space": "nbgraph-v1", "spec": {"ops": ["no-such-op"]}}', "bad")
    result = resume_search(store, search.search_id).run()
    trials = store.trials(search.search_id)
    assert not [t for t in trials if t.tags.get(TAG_RERUN_OF) == bad]
    assert len(_finished(store, search.search_id)) == 2 == result.n_trials
