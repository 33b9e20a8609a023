"""Faults in storage: an unreachable or locked store, a full disk, missing or corrupt weights.

Each search test shows that the search finished its budget, or stopped with one clear
``error:`` line and can be resumed, and that no trial recorded before the fault was lost or
changed.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import nasw, weights_file

from metastore import open_store
from workbench.errors import StoreError
from workbench.strategy.base import Proposal

from .conftest import TINY_TOML, Watch, tiny_task


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the store unreachable or locked ---------------------------------------------------------------
def test_an_unreachable_server_is_one_clear_error_within_seconds(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    uri = f"http://127.0.0.1:{closed_port()}"
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "search", "--task", "nbgraph-cora", "--budget", "1", "--store", uri],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
    )
    elapsed = time.monotonic() - t0
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert uri in line and "does not answer" in line and "connection refused" in line
    assert elapsed < 60, f"took {elapsed:.0f} s"  # MLflow's own defaults wait about four minutes


def test_http_defaults_never_override_the_users_settings(monkeypatch):
    from metastore.mlflow_setup import HTTP_DEFAULTS, http_defaults

    for key in HTTP_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")
    got = http_defaults()
    assert got["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"
    assert got["MLFLOW_HTTP_REQUEST_TIMEOUT"] == HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_TIMEOUT"]


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    """One SQLite store for the tests of this module that do not need a store of their own
    (creating one costs seconds); every test works on searches of its own."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'runs' / 'mlflow.db'}"
    return uri, open_store(uri)


def test_a_store_locked_for_a_while_is_retried_with_backoff(sqlite_store):
    from metastore import mlflow_runs as mlflow_store

    _, store = sqlite_store
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "written"

    assert store._call("write", flaky) == "written"
    assert len(calls) == 3 and calls[2] - calls[0] >= 0.9 * (mlflow_store._FIRST_BACKOFF_S * 3)

    calls.clear()

    def locked():
        calls.append(1)
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(StoreError, match=r"cannot write in .*database is locked"):
        store._call("write", locked)
    assert len(calls) == mlflow_store._RETRIES


def test_a_real_exclusive_lock_held_for_a_while_delays_a_write_but_loses_nothing(sqlite_store):
    uri, store = sqlite_store
    sid = store.start_search("t", strategy="random", space="chain-v1", seed=0, objective="val_accuracy")
    tid = store.start_trial(sid, '{"space":"chain-v1","spec":{}}', "k")
    store.finish_trial(tid, state="finished", metrics={"val_accuracy": 0.5})
    before = store.trial(tid)
    con = sqlite3.connect(store._db_path, timeout=30, isolation_level=None, check_same_thread=False)
    con.execute("BEGIN EXCLUSIVE")
    threading.Timer(1.5, lambda: (con.execute("COMMIT"), con.close())).start()
    t0 = time.monotonic()
    store.set_tags(sid, {"note": "written after the lock"})
    assert time.monotonic() - t0 >= 1.0
    assert open_store(uri).search(sid).tags["note"] == "written after the lock"
    assert open_store(uri).trial(tid) == before


_KILLED_WRITER = """
import os, signal, sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA cache_size=1")  # spill to the file: the journal becomes hot
con.execute("BEGIN")
con.execute("UPDATE tags SET value = value || 'half-written'")
con.execute("CREATE TABLE junk(x)")
con.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) "
            "INSERT INTO junk SELECT randomblob(4000) FROM n")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_writer_killed_inside_a_transaction_leaves_a_store_that_opens_and_reads_back(tmp_path):
    """SIGKILL inside a write transaction leaves a hot journal; SQLite's read-only connections
    cannot roll it back ("attempt to write a readonly database"), which made the next
    ``nasw search --resume`` fail to open the store. It must open and read what was committed."""
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    store = open_store(uri)
    sid = store.start_search("t", strategy="random", space="chain-v1", seed=0, objective="val_accuracy")
    tid = store.start_trial(sid, '{"space":"chain-v1","spec":{}}', "k")
    store.finish_trial(tid, state="finished", metrics={"val_accuracy": 0.5})
    before = store.trial(tid)
    db = store._db_path
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, db], check=False)
    assert os.path.exists(db + "-journal")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # what a read-only reader meets
        sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("SELECT count(*) FROM runs").fetchall()
    again = open_store(uri)
    assert again.trial(tid) == before
    assert [s.search_id for s in again.searches("t")] == [sid]
    assert again.trials(sid)[0].metrics["val_accuracy"] == 0.5


_CREATOR = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1] + ".lock", os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_reader_waits_for_a_creation_under_way_before_mlflow_opens_the_store(sqlite_store):
    """MLflow creates its first tables before it migrates the rest, so a store being created
    looks ready; a reader that let MLflow open it then made MLflow migrate it a second time
    (``duplicate column name: step`` in the creating ``nasw search``). Readers wait for the
    creator's lock."""
    uri, store = sqlite_store
    creator = subprocess.Popen([sys.executable, "-c", _CREATOR, store._db_path, "1.5"], stdout=subprocess.PIPE)
    try:
        assert creator.stdout.readline().strip() == b"locked"
        t0 = time.monotonic()
        open_store(uri, mode="read").searches()
        assert time.monotonic() - t0 >= 1.0
    finally:
        creator.wait(timeout=30)
    t0 = time.monotonic()
    open_store(uri, mode="read").searches()  # no creation under way: no wait
    assert time.monotonic() - t0 < 1.0


def test_a_store_that_fails_mid_search_stops_it_with_one_line_then_resume_completes(tmp_path, capsys, monkeypatch):
    """The store starts refusing writes after two trials: the search stops with one error line;
    the two finished trials are intact; `nasw resume` fails the interrupted one and completes."""
    from metastore.mlflow_store import MlflowStore

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    original = MlflowStore.finish_trial
    seen: dict[str, list] = {"calls": [], "before": []}

    def finish_trial(self, trial_id, **kw):
        seen["calls"].append(trial_id)
        if len(seen["calls"]) == 3:
            seen["before"] = [t for t in self.trials(self.trial(trial_id).search_id) if t.state != "running"]
            raise StoreError(f"cannot end the trial in {self.uri}: database is locked")
        return original(self, trial_id, **kw)

    monkeypatch.setattr(MlflowStore, "finish_trial", finish_trial)
    code, out, err = nasw(["search", "--task", "tiny.toml", "--budget", 4, "--store", uri, "--quiet"], capsys)
    assert code == 2
    assert "database is locked" in one_error_line(err)
    monkeypatch.setattr(MlflowStore, "finish_trial", original)

    store = open_store(uri)
    (search,) = store.searches()
    assert search.state == "failed"
    before = seen["before"]
    assert [t.number for t in before] == [0, 1]
    assert [store.trial(t.trial_id) for t in before] == before  # nothing written before the fault changed

    code, out, err = nasw(["resume", search.search_id, "--store", uri, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["n_trials"] == 4
    trials = store.trials(search.search_id)
    # the interrupted trial does not count against the budget: resume re-runs its architecture first
    assert [t.state for t in trials] == ["finished", "finished", "failed", "finished", "finished"]
    assert "interrupted" in trials[2].reason and trials[3].genotype_key == trials[2].genotype_key
    assert trials[:2] == before
    assert store.search(search.search_id).state == "finished"


# -- disk full while writing weights ---------------------------------------------------------------
def test_disk_full_while_saving_weights_finishes_the_trial_with_a_note(sqlite_store, monkeypatch):
    from workbench.search import new_search

    _, store = sqlite_store
    watch = Watch(store=store)
    real_save = torch.save

    def save(obj, f, *a, **k):
        if watch.current == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    search = new_search(store, tiny_task(), "random", 3, 0, progress=watch)
    result = search.run()
    trials = {t.number: t for t in store.trials(result.search_id)}
    assert result.n_trials == 3 and all(t.state == "finished" for t in trials.values())
    note = trials[1].tags["nasw.note.weights_saved"]
    assert note.startswith("not saved: OSError: [Errno 28] No space left on device")
    assert "nasw.note.weights_saved" not in trials[0].tags
    assert store.load_weights(trials[1].trial_id) is None
    assert isinstance(store.load_weights(trials[0].trial_id), dict)
    watch.assert_intact()

    # a child of the trial without weights trains from scratch, with a note; nothing crashes
    monkeypatch.setattr(torch, "save", real_save)
    g = search.space.mutate(
        __import__("workbench.space.genotype", fromlist=["Genotype"]).Genotype.from_json(trials[1].genotype_json),
        __import__("numpy").random.default_rng(0),
    )
    proposal = Proposal(g, parent_trial=trials[1].trial_id)
    obs = search.record(search.execute(search.start_trial(proposal, 3)), g)
    child = store.trial(obs.trial_id)
    assert child.state == "finished"
    assert "weights missing or unreadable; trained from scratch" in child.tags["nasw.note.weights"]
    watch.assert_intact()


def test_disk_full_in_the_middle_of_copying_the_artifact(sqlite_store, monkeypatch):
    """The artifact store fills up half way through the copy: a truncated weights file stays
    behind. The trial finishes with a note; loading the truncated file gives None, not a crash."""
    from mlflow.tracking import MlflowClient

    from workbench.search import new_search

    _, store = sqlite_store
    watch = Watch(store=store)
    real = MlflowClient.log_artifact

    def log_artifact(self, run_id, local_path, artifact_path=None):
        if watch.current == 0 and artifact_path == "weights":
            target = weights_file(store, run_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            data = Path(local_path).read_bytes()
            target.write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, run_id, local_path, artifact_path)

    monkeypatch.setattr(MlflowClient, "log_artifact", log_artifact)
    search = new_search(store, tiny_task(), "random", 2, 0, progress=watch)
    result = search.run()
    trials = {t.number: t for t in store.trials(result.search_id)}
    assert [t.state for t in trials.values()] == ["finished", "finished"]
    assert "No space left on device" in trials[0].tags["nasw.note.weights_saved"]
    assert weights_file(store, trials[0].trial_id).stat().st_size > 0  # the truncated file is there ...
    assert store.load_weights(trials[0].trial_id) is None  # ... and reads as "no weights"
    watch.assert_intact()


# -- weight artifacts missing or corrupt -----------------------------------------------------------
@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "empty", "not a state dict"])
def test_children_of_a_trial_with_missing_or_corrupt_weights_train_from_scratch(sqlite_store, damage):
    import numpy as np

    from workbench.search import new_search
    from workbench.space.genotype import Genotype

    _, store = sqlite_store
    watch = Watch(store=store)
    search = new_search(store, tiny_task(), "random", 1, 0, progress=watch)
    search.run()
    (parent,) = store.trials(search.search_id)
    path = weights_file(store, parent.trial_id)
    assert isinstance(store.load_weights(parent.trial_id), dict)
    if damage == "missing":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(os.urandom(4096))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save([1, 2, 3], path)
    assert store.load_weights(parent.trial_id) in (None, [1, 2, 3])
    g = Genotype.from_json(parent.genotype_json)
    child_g = search.space.mutate(g, np.random.default_rng(1))
    for proposal in (Proposal(g, parent_trial=parent.trial_id), Proposal(child_g, parent_trial=parent.trial_id)):
        obs = search.record(search.execute(search.start_trial(proposal, len(search.records))), proposal.genotype)
        child = store.trial(obs.trial_id)
        assert child.state == "finished", child.reason
        assert "trained from scratch" in child.tags["nasw.note.weights"]
    watch.assert_intact()
    assert store.trial(parent.trial_id) == parent
