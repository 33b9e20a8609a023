"""Search names, trial names and a search's progress series, in every store (issue 21)."""

from __future__ import annotations

import uuid

import pytest

from metastore import open_store
from metastore.mlflow_store import trial_run_name
from metastore.schema import MLFLOW_RUN_COLOR_TAG, NAME_ID, PROGRESS_BEST, RUN_COLORS, TRIAL_LABEL_CHARS


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        return open_store(f"memory://names-{uuid.uuid4().hex}")
    return open_store(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")


def _search(store, name=None):
    return store.start_search(
        "digits", strategy="evolution", space="chain-v1", seed=2, objective="val_accuracy", name=name
    )


def test_a_search_is_named_with_the_start_of_its_id(store):
    sid = _search(store, f"digits·evolution·population=20·{NAME_ID}")
    assert store.search(sid).name == f"digits·evolution·population=20·{sid[:6]}"
    assert store.resolve_search(sid[:6]) == sid
    assert store.search(_search(store, "my baseline")).name == "my baseline"
    assert store.search(_search(store)).name == "evolution-digits-s2"  # the name before issue 21


def test_progress_steps_are_read_back_and_kept_out_of_the_summary(store):
    sid = _search(store)
    store.log_search_steps(sid, [(0, {PROGRESS_BEST: 0.5}), (1, {PROGRESS_BEST: 0.7})])
    store.log_search_steps(sid, [(2, {PROGRESS_BEST: 0.7})])
    store.finish_search(sid, summary={"best_val_accuracy": 0.7})
    assert store.metric_history(sid, PROGRESS_BEST) == [(0, 0.5), (1, 0.7), (2, 0.7)]
    assert store.search(sid).summary == {"best_val_accuracy": 0.7}


def test_trials_are_named_by_number_and_short_genotype():
    assert trial_run_name(3, "conv5x64 > dense64") == "t03 conv5x64 > dense64"
    assert trial_run_name(12, None) == "trial-12"
    long = trial_run_name(1, "x" * 200)
    assert long.startswith("t01 ") and len(long) == 4 + TRIAL_LABEL_CHARS and long.endswith("…")


def test_searches_of_a_task_get_distinct_colours(tmp_path):
    from mlflow.tracking import MlflowClient

    store = open_store(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    ids = [_search(store) for _ in range(len(RUN_COLORS))]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    colours = [client.get_run(i).data.tags[MLFLOW_RUN_COLOR_TAG] for i in ids]
    assert sorted(colours) == sorted(RUN_COLORS)
