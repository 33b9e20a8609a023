"""The Metastore contract, run against every backend (memory and MLflow on SQLite)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from metastore import open_store
from metastore.base import Metastore
from workbench.errors import NotFound, StoreError

SPACE = "chain-v1"


def genotype(i: int, space: str = SPACE) -> str:
    return json.dumps({"space": space, "spec": {"layers": [{"op": "conv", "width": 8 + i}]}})


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty MLflow database (copied per test: creating one takes seconds)."""
    from metastore.mlflow_store import MlflowStore

    folder = tmp_path_factory.mktemp("template")
    MlflowStore(f"sqlite:///{folder}/mlflow.db")
    return folder / "mlflow.db"


@pytest.fixture(params=["memory", "sqlite"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path, empty_db: Path) -> str:
    if request.param == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(empty_db, db)
    return f"sqlite:///{db}"


@pytest.fixture
def store(store_uri: str) -> Metastore:
    return open_store(store_uri)


def is_mlflow(store: Metastore) -> bool:
    return store.uri.startswith("sqlite:")


def client(store: Metastore):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store.uri)


def new_search(store: Metastore, task: str = "digits", space: str = SPACE, seed: int = 0, **kw) -> str:
    return store.start_search(
        task, strategy=kw.pop("strategy", "random"), space=space, seed=seed, objective="val_accuracy", **kw
    )


def finished_trial(store: Metastore, search_id: str, i: int, value: float | None, **kw) -> str:
    trial_id = store.start_trial(search_id, genotype(i), f"key{i}", **kw)
    store.finish_trial(trial_id, state="finished", metrics=None if value is None else {"val_accuracy": value})
    return trial_id


def weights_file(store: Metastore, trial_id: str) -> Path:
    """The local file of an MLflow trial's weights artifact."""
    uri = client(store).get_run(trial_id).info.artifact_uri
    return Path(urllib.request.url2pathname(urllib.parse.urlparse(uri).path)) / "weights" / "model.pt"


class Evil:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# -- searches ------------------------------------------------------------------------------
def test_search_lifecycle(store: Metastore) -> None:
    spec = {"budget": 30, "train": {"epochs": 5, "lr": 0.01}, "note": "x" * 1000, "list": [1, 2]}
    sid = store.start_search(
        "digits",
        strategy="evolution",
        space=SPACE,
        seed=7,
        objective="val_accuracy",
        spec=spec,
        meta_features={"n_samples": 1797.0, "n_classes": 10},
        tags={"warm_start": "mnist1d"},
    )
    rec = store.search(sid)
    assert (rec.search_id, rec.task, rec.strategy, rec.space, rec.seed, rec.objective) == (
        sid,
        "digits",
        "evolution",
        SPACE,
        7,
        "val_accuracy",
    )
    assert rec.state == "running"
    assert rec.spec == spec
    assert rec.tags == {"warm_start": "mnist1d"}
    assert rec.n_trials == 0
    assert rec.start_time > 1e9

    store.finish_search(sid, summary={"best_value": 0.93})
    rec = store.search(sid)
    assert rec.state == "finished"
    assert rec.summary == {"best_value": pytest.approx(0.93)}
    store.finish_search(sid, state="killed")  # a resumed search may end again
    assert store.search(sid).state == "killed"
    with pytest.raises(StoreError):
        store.finish_search(sid, state="done")


def test_searches_newest_first_and_by_task(store: Metastore) -> None:
    a = new_search(store, "digits")
    b = new_search(store, "mnist1d")
    c = new_search(store, "digits", seed=1)
    assert [s.search_id for s in store.searches()] == [c, b, a]
    assert [s.search_id for s in store.searches("digits")] == [c, a]
    assert store.searches("nope") == []


def test_reserved_tags_are_refused(store: Metastore) -> None:
    with pytest.raises(StoreError, match="reserved"):
        new_search(store, tags={"nasw.state": "finished"})
    sid = new_search(store)
    with pytest.raises(StoreError, match="reserved"):
        store.set_tags(sid, {"mlflow.parentRunId": "x"})
    store.set_tags(sid, {"nasw.note.device": "cpu", "owner": "me"})
    assert store.search(sid).tags == {"nasw.note.device": "cpu", "owner": "me"}


# -- trials --------------------------------------------------------------------------------
def test_trials_in_start_order_with_their_fields(store: Metastore) -> None:
    sid = new_search(store)
    ids = [
        store.start_trial(
            sid,
            genotype(i),
            f"key{i}",
            params={"layer0.op": "conv", "layer0.width": 8 + i},
            parent_trial=None if i == 0 else "p" * 32,
            tags={"fidelity": "low"},
        )
        for i in range(5)
    ]
    trials = store.trials(sid)
    assert [t.trial_id for t in trials] == ids
    assert [t.number for t in trials] == list(range(5))
    assert store.search(sid).n_trials == 5
    t = store.trial(ids[3])
    assert (t.search_id, t.task, t.number, t.state) == (sid, "digits", 3, "running")
    assert t.genotype_json == genotype(3)
    assert t.genotype_key == "key3"
    assert t.params == {"layer0.op": "conv", "layer0.width": "11"}
    assert t.parent_trial == "p" * 32
    assert store.trial(ids[0]).parent_trial is None
    assert t.tags == {"fidelity": "low"}
    assert t.reason is None and t.end_time is None and t.start_time > 1e9


def test_metrics_with_steps_and_final_metrics(store: Metastore) -> None:
    sid = new_search(store)
    tid = store.start_trial(sid, genotype(0), "key0")
    for epoch in range(3):
        store.log_metrics(tid, {"val_accuracy": 0.5 + 0.1 * epoch, "loss": 1.0 - 0.2 * epoch}, step=epoch)
    assert store.trial(tid).metrics["val_accuracy"] == pytest.approx(0.7)
    store.finish_trial(tid, state="finished", metrics={"val_accuracy": 0.65, "test_accuracy": 0.6})
    t = store.trial(tid)
    assert t.state == "finished" and t.end_time is not None and t.end_time >= t.start_time
    assert t.metrics == {
        "val_accuracy": pytest.approx(0.65),
        "test_accuracy": pytest.approx(0.6),
        "loss": pytest.approx(0.6),
    }
    if is_mlflow(store):
        history = client(store).get_metric_history(tid, "loss")
        assert [(m.step, round(m.value, 6)) for m in history] == [(0, 1.0), (1, 0.8), (2, 0.6)]
        steps = sorted(m.step for m in client(store).get_metric_history(tid, "val_accuracy"))
        assert steps[:3] == [0, 1, 2]
        assert client(store).get_run(tid).info.status == "FINISHED"
    else:
        assert store.metric_history(tid, "loss") == [(0, 1.0), (1, 0.8), (2, pytest.approx(0.6))]


def test_several_steps_logged_at_once_read_back_like_single_steps(store: Metastore) -> None:
    sid = new_search(store)
    tid = store.start_trial(sid, genotype(0), "key0")
    store.log_metric_steps(tid, [(e, {"val_accuracy": 0.5 + 0.1 * e, "loss": 1.0 - 0.2 * e}) for e in range(3)])
    store.log_metric_steps(tid, [])
    store.log_metric_steps(tid, [(3, {"loss": 0.3})])
    assert store.trial(tid).metrics["loss"] == pytest.approx(0.3)
    if is_mlflow(store):
        history = client(store).get_metric_history(tid, "loss")
        assert sorted((m.step, round(m.value, 6)) for m in history) == [(0, 1.0), (1, 0.8), (2, 0.6), (3, 0.3)]
    else:
        assert store.metric_history(tid, "loss") == [(0, 1.0), (1, 0.8), (2, pytest.approx(0.6)), (3, 0.3)]
    store.finish_trial(tid, state="finished", metrics={"val_accuracy": 0.7})
    with pytest.raises(StoreError, match="immutable"):
        store.log_metric_steps(tid, [(9, {"loss": 0.1})])


def test_finished_trials_are_immutable(store: Metastore) -> None:
    sid = new_search(store)
    tid = finished_trial(store, sid, 0, 0.5)
    with pytest.raises(StoreError, match="immutable"):
        store.finish_trial(tid, state="finished", metrics={"val_accuracy": 0.9})
    with pytest.raises(StoreError, match="immutable"):
        store.log_metrics(tid, {"val_accuracy": 0.9}, step=5)
    assert store.trial(tid).metrics == {"val_accuracy": 0.5}
    other = store.start_trial(sid, genotype(1), "key1")
    with pytest.raises(StoreError):
        store.finish_trial(other, state="done")
    assert store.trial(other).state == "running"


def test_failed_trial_keeps_its_reason(store: Metastore) -> None:
    sid = new_search(store)
    tid = store.start_trial(sid, genotype(0), "key0")
    store.finish_trial(tid, state="failed", reason="diverged: loss is nan")
    t = store.trial(tid)
    assert (t.state, t.reason) == ("failed", "diverged: loss is nan")
    if is_mlflow(store):
        assert client(store).get_run(tid).info.status == "FAILED"


def test_unknown_ids_raise_not_found(store: Metastore) -> None:
    sid = new_search(store)
    tid = store.start_trial(sid, genotype(0), "key0")
    missing = "0" * 32
    for call in (
        lambda: store.search(""),
        lambda: store.trial("not an id!"),
        lambda: store.set_tags("", {"a": "b"}),
        lambda: store.search(missing),
        lambda: store.search(tid),  # a trial is not a search
        lambda: store.trial(missing),
        lambda: store.trial(sid),
        lambda: store.trials(missing),
        lambda: store.start_trial(missing, genotype(0), "k"),
        lambda: store.log_metrics(missing, {"a": 1.0}),
        lambda: store.finish_trial(missing, state="finished"),
        lambda: store.finish_search(missing),
        lambda: store.set_tags(missing, {"a": "b"}),
        lambda: store.load_weights(missing),
        lambda: store.save_weights(missing, {}),
    ):
        with pytest.raises(NotFound):
            call()


# -- weights and files ---------------------------------------------------------------------
def test_weights_round_trip(store: Metastore) -> None:
    sid = new_search(store)
    tid = store.start_trial(sid, genotype(0), "key0")
    assert store.load_weights(tid) is None
    model = torch.nn.Linear(3, 2)
    store.save_weights(tid, model.state_dict())
    loaded = store.load_weights(tid)
    assert loaded is not None and set(loaded) == {"weight", "bias"}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded[key], value)


def test_corrupt_weights_load_as_none(store: Metastore, tmp_path: Path) -> None:
    sid = new_search(store)
    tid = store.start_trial(sid, genotype(0), "key0")
    store.save_weights(tid, torch.nn.Linear(2, 2).state_dict())
    garbage = tmp_path / "model.pt"
    garbage.write_bytes(b"not a torch file at all")
    store.log_file(tid, str(garbage), "weights")  # replaces weights/model.pt
    assert store.load_weights(tid) is None
    if is_mlflow(store):
        store.save_weights(tid, torch.nn.Linear(2, 2).state_dict())
        path = weights_file(store, tid)
        assert path.is_file() and store.load_weights(tid) is not None
        path.write_bytes(path.read_bytes()[:50])  # truncated zip
        assert store.load_weights(tid) is None


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("fmt", ["torch", "raw-pickle"])
def test_malicious_pickle_never_runs(store: Metastore, tmp_path: Path, fmt: str) -> None:
    sid = new_search(store)
    tid = store.start_trial(sid, genotype(0), "key0")
    marker = tmp_path / "pwned"
    payload = tmp_path / "model.pt"
    if fmt == "torch":
        torch.save({"weight": torch.zeros(2), "evil": Evil(str(marker))}, payload)
    else:
        payload.write_bytes(pickle.dumps({"evil": Evil(str(marker))}))
    assert not marker.exists()
    store.log_file(tid, str(payload), "weights")
    assert store.load_weights(tid) is None
    assert not marker.exists()


def test_log_file_attaches_artifacts(store: Metastore, tmp_path: Path) -> None:
    sid = new_search(store)
    plot = tmp_path / "curve.png"
    plot.write_bytes(b"\x89PNG fake")
    store.log_file(sid, str(plot), "plots")
    with pytest.raises(StoreError):
        store.log_file(sid, str(tmp_path / "missing.png"))
    with pytest.raises(NotFound):
        store.log_file("0" * 32, str(plot))
    if is_mlflow(store):
        names = [a.path for a in client(store).list_artifacts(sid, "plots")]
        assert names == ["plots/curve.png"]


# -- ids, resume ---------------------------------------------------------------------------
def test_resolve_search_by_unique_prefix(store: Metastore) -> None:
    ids = [new_search(store, seed=i) for i in range(17)]  # 17 hex ids: two share a first digit
    for sid in ids[:3]:
        prefix = next(sid[:n] for n in range(1, 33) if sum(o.startswith(sid[:n]) for o in ids) == 1)
        assert store.resolve_search(prefix) == sid
        assert store.resolve_search(f"  {sid} ") == sid
    first = [sid[0] for sid in ids]
    shared = next(ch for ch in first if first.count(ch) > 1)
    with pytest.raises(NotFound, match="ambiguous"):
        store.resolve_search(shared)
    with pytest.raises(NotFound, match="no search"):
        store.resolve_search("zzzz")
    with pytest.raises(NotFound):
        store.resolve_search("   ")


def test_mark_stale_fails_running_trials(store: Metastore) -> None:
    sid = new_search(store)
    done = finished_trial(store, sid, 0, 0.5)
    stale = [store.start_trial(sid, genotype(i), f"key{i}") for i in (1, 2)]
    assert store.mark_stale(sid, reason="interrupted") == 2
    assert store.mark_stale(sid) == 0
    states = {t.trial_id: (t.state, t.reason) for t in store.trials(sid)}
    assert states[done] == ("finished", None)
    assert all(states[t] == ("failed", "interrupted") for t in stale)
    nxt = store.start_trial(sid, genotype(3), "key3")
    assert store.trial(nxt).number == 3


# -- histories -----------------------------------------------------------------------------
def test_histories_group_finished_trials_by_task(store: Metastore) -> None:
    s1 = new_search(store, "digits", meta_features={"n": 1.0, "d": 64.0})
    a = [finished_trial(store, s1, i, 0.1 * i) for i in range(3)]
    failed = store.start_trial(s1, genotype(9), "key9")
    store.finish_trial(failed, state="failed", reason="oom")
    store.start_trial(s1, genotype(8), "key8")  # still running
    finished_trial(store, s1, 7, None)  # finished without the metric
    finished_trial(store, s1, 6, float("nan"))  # NaN objective
    s2 = new_search(store, "digits", seed=1, meta_features={"n": 2.0})
    b = [finished_trial(store, s2, i, 0.5) for i in (3,)]
    s3 = new_search(store, "mnist1d", meta_features={"n": 3.0})
    c = [finished_trial(store, s3, i, 0.9 - 0.1 * i) for i in range(2)]
    other = new_search(store, "digits", space="dag-v1")
    finished_trial(store, other, 0, 0.99)

    hist = store.histories(SPACE, "val_accuracy")
    assert set(hist) == {"digits", "mnist1d"}
    digits = hist["digits"]
    assert digits.task == "digits"
    assert digits.trial_ids == a + b
    assert digits.genotype_jsons == [genotype(i) for i in (0, 1, 2, 3)]
    assert digits.values.dtype == np.float64
    np.testing.assert_allclose(digits.values, [0.0, 0.1, 0.2, 0.5])
    assert digits.meta_features == {"n": 2.0, "d": 64.0}  # the newest search wins
    assert hist["mnist1d"].trial_ids == c
    np.testing.assert_allclose(hist["mnist1d"].values, [0.9, 0.8])

    assert set(store.histories(SPACE, "val_accuracy", exclude_task="digits")) == {"mnist1d"}
    assert set(store.histories("dag-v1", "val_accuracy")) == {"digits"}
    assert store.histories("none-v1", "val_accuracy") == {}
    assert store.histories(SPACE, "no_such_metric") == {}


# -- durability ----------------------------------------------------------------------------
def test_a_reopened_store_sees_everything(store_uri: str) -> None:
    first = open_store(store_uri)
    sid = new_search(first, spec={"budget": 3}, tags={"owner": "me"})
    tid = finished_trial(first, sid, 0, 0.75)
    running = first.start_trial(sid, genotype(1), "key1")
    first.save_weights(tid, {"w": torch.ones(2)})
    first.finish_search(sid, summary={"best": 0.75})

    again = open_store(store_uri)
    assert again.search(sid) == first.search(sid)
    assert again.trials(sid) == first.trials(sid)
    assert [t.trial_id for t in again.trials(sid)] == [tid, running]
    assert torch.equal(again.load_weights(tid)["w"], torch.ones(2))
    assert again.histories(SPACE, "val_accuracy")["digits"].trial_ids == [tid]
    assert again.resolve_search(sid[:12]) == sid
    assert again.mark_stale(sid) == 1
    assert first.trial(running).state == "failed"
    assert again.trial(again.start_trial(sid, genotype(2), "key2")).number == 2


# -- MLflow layout -------------------------------------------------------------------------
@pytest.fixture
def mlflow_store(tmp_path: Path, empty_db: Path) -> Metastore:
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(empty_db, db)
    return open_store(f"sqlite:///{db}")


def test_mlflow_layout(mlflow_store: Metastore) -> None:
    store = mlflow_store
    sid = new_search(
        store, strategy="bo", seed=3, spec={"budget": 30, "train": {"epochs": 2}}, meta_features={"n": 5.0}
    )
    tid = store.start_trial(sid, genotype(0), "key0", params={"layer0.op": "conv"})
    mc = client(store)
    experiment = mc.get_experiment_by_name("digits")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    db_folder = Path(store.uri[len("sqlite:///") :]).parent
    assert experiment.artifact_location.startswith((db_folder / "artifacts").as_uri())

    parent = mc.get_run(sid)
    assert parent.info.run_name == "bo-digits-s3"
    assert parent.data.tags["nasw.kind"] == "search"
    assert parent.data.tags["nasw.space"] == SPACE
    assert parent.data.tags["nasw.seed"] == "3"
    assert parent.data.tags["nasw.meta.n"] == "5.0"
    assert parent.data.params == {"budget": "30", "train.epochs": "2"}
    assert {a.path for a in mc.list_artifacts(sid)} == {"spec.json", "meta_features.json"}

    child = mc.get_run(tid)
    assert child.data.tags["mlflow.parentRunId"] == sid
    assert child.data.tags["nasw.search"] == sid
    assert child.data.tags["nasw.kind"] == "trial"
    assert child.data.tags["nasw.number"] == "0"
    assert child.data.tags["nasw.genotype"] == genotype(0)
    assert child.data.params == {"layer0.op": "conv"}
    assert child.info.status == "RUNNING"
    assert [a.path for a in mc.list_artifacts(tid)] == ["genotype.json"]
    path = Path(urllib.request.url2pathname(urllib.parse.urlparse(child.info.artifact_uri).path))
    assert path.is_relative_to(db_folder / "artifacts")
    assert (path / "genotype.json").read_text() == genotype(0)


def test_mlflow_long_genotype_lives_only_in_the_artifact(mlflow_store: Metastore) -> None:
    store = mlflow_store
    big = json.dumps({"space": SPACE, "spec": {"layers": ["conv"] * 3000}})
    assert len(big) > 8000
    sid = new_search(store)
    tid = store.start_trial(sid, big, "big")
    store.finish_trial(tid, state="finished", metrics={"val_accuracy": 0.5})
    assert "nasw.genotype" not in client(store).get_run(tid).data.tags
    assert store.trial(tid).genotype_json == big
    assert store.histories(SPACE, "val_accuracy")["digits"].genotype_jsons == [big]


def test_mlflow_client_fallback_matches_direct_sql(mlflow_store: Metastore) -> None:
    store = mlflow_store
    for task, n in (("digits", 3), ("mnist1d", 2)):
        sid = new_search(store, task, meta_features={"n": float(n)})
        for i in range(n):
            finished_trial(store, sid, i, 0.1 * i)
    fast = store.histories(SPACE, "val_accuracy")
    slow = store._histories_client(SPACE, "val_accuracy", None)
    assert set(fast) == set(slow) == {"digits", "mnist1d"}
    for task in fast:
        assert fast[task].trial_ids == slow[task].trial_ids
        assert fast[task].genotype_jsons == slow[task].genotype_jsons
        assert fast[task].meta_features == slow[task].meta_features
        np.testing.assert_array_equal(fast[task].values, slow[task].values)


def test_mlflow_uri_forms(tmp_path: Path, empty_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from metastore.mlflow_setup import resolve_location, tracking_uri_for

    monkeypatch.chdir(tmp_path)
    loc = resolve_location("sqlite:///runs/mlflow.db")
    assert loc.db_path == str(tmp_path / "runs" / "mlflow.db")
    assert loc.tracking_uri == f"sqlite:///{tmp_path}/runs/mlflow.db"
    assert loc.artifact_root == str(tmp_path / "runs" / "artifacts")
    assert resolve_location("sqlite:////abs/x.db").db_path == "/abs/x.db"
    assert resolve_location("some/folder").db_path == str(tmp_path / "some" / "folder" / "mlflow.db")
    assert resolve_location("other/file.db").db_path == str(tmp_path / "other" / "file.db")
    assert tracking_uri_for("http://host:5000/") == "http://host:5000"
    assert resolve_location("https://host").db_path is None
    for bad in ("postgresql://u@h/db", "sqlite://", ""):
        with pytest.raises(StoreError):
            resolve_location(bad)

    (tmp_path / "folder").mkdir()
    shutil.copy(empty_db, tmp_path / "folder" / "mlflow.db")
    store = open_store("folder")
    sid = new_search(store)
    assert open_store(f"sqlite:///{tmp_path}/folder/mlflow.db").search(sid).task == "digits"
    assert (tmp_path / "folder" / "artifacts").is_dir()


def test_mlflow_retries_a_locked_database(mlflow_store: Metastore, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    import metastore.mlflow_runs as ms

    monkeypatch.setattr(ms, "_FIRST_BACKOFF_S", 0.0)
    calls = []

    def flaky(fail: int):
        calls.append(1)
        if len(calls) <= fail:
            raise sqlite3.OperationalError("database is locked")
        return "ok"

    assert mlflow_store._call("write", flaky, 2) == "ok"
    calls.clear()
    with pytest.raises(StoreError, match="cannot write in .*database is locked"):
        mlflow_store._call("write", flaky, 99)
    assert len(calls) == ms._RETRIES


def test_mlflow_is_not_imported_with_the_package() -> None:
    code = (
        "import sys, metastore; s = metastore.open_store('memory://'); "
        "s.start_search('t', strategy='r', space='s', seed=0, objective='v'); "
        "assert 'mlflow' not in sys.modules, 'mlflow imported'"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
