"""Hardening of the store, the UI and stopping (issue 22): what careless or hostile use of a store
must not do.

* An artifact read back is a regular file inside the artifact folder, bounded, parsed and
  checked: a ``genotype.json`` (or weights file) that is a link is never followed (#1).
* Searches started at once on a new SQLite store all succeed (#3).
* ``nasw ui`` stopped by its pid takes the MLflow server with it (#4); ``--host 0.0.0.0`` warns
  and the UI gets a Host-header allow-list (#16).
* A read-only store is said so in one line, at once; reading it works (#10).
* ``kill -TERM`` of a search stops it like Ctrl-C: the trial failed with the reason, the search
  ``killed``, one line, a non-zero exit, and ``nasw resume`` continues it (#11).
* Read-only commands never create a store at a mistyped path (#15).
* ``nasw ls`` keeps its columns at 80 with a 22-digit seed; ``nasw resume --budget`` records
  the new budget (#19).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import nasw, tiny_toml, weights_file

from metastore import open_store
from metastore.mlflow_setup import local_folder
from metastore.records import RUNNING
from metastore.schema import KIND_TRIAL, TAG_KIND, TAG_STATE

REPO = Path(__file__).resolve().parents[2]
SECRET = "TOP-SECRET-d41d8cd98f"


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def cli(args, *, cwd, env=None, timeout=300, prefix=()):
    """``nasw ARGS`` in a new process: (exit code, stdout, stderr, seconds)."""
    t0 = time.monotonic()
    r = subprocess.run(
        [*prefix, sys.executable, "-m", "workbench.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    return r.returncode, r.stdout, r.stderr, time.monotonic() - t0


def long_genotype() -> str:
    """A valid chain genotype too long for its tag (it lives only in ``genotype.json``)."""
    return json.dumps(
        {"space": "chain-v1", "spec": {"layers": [{"op": "conv", "kernel": 3, "width": 8, "act": "relu"}] * 150}}
    )


@pytest.fixture(scope="module")
def shared_uri(tmp_path_factory) -> str:
    """One SQLite store for the tests that do not need their own (creating one costs seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'runs' / 'mlflow.db'}"


# -- #1 artifacts that are links ---------------------------------------------------------------------
@pytest.fixture
def linked_genotype(shared_uri, tmp_path):
    """A finished search whose one trial's ``genotype.json`` (its tag absent: the genotype is too
    long) was replaced by a link to a secret file."""
    store = open_store(shared_uri)
    sid = store.start_search("linked", strategy="random", space="chain-v1", seed=0, objective="val_accuracy")
    text = long_genotype()
    assert len(text) > 8000
    tid = store.start_trial(sid, text, "k")
    store.finish_trial(tid, state="finished", metrics={"val_accuracy": 0.5, "test_accuracy": 0.5})
    store.finish_search(sid, state="finished")
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET + "\n")
    artifact = Path(local_folder(store._trial_run(tid).info.artifact_uri)) / "genotype.json"
    artifact.unlink()
    artifact.symlink_to(secret)
    return {"uri": shared_uri, "sid": sid, "tid": tid, "store": store}


def test_a_genotype_artifact_that_is_a_link_is_never_followed(linked_genotype, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, sid = linked_genotype["uri"], linked_genotype["sid"]
    for args in (
        ["show", sid, "--format", "json"],
        ["show", sid],
        ["export", sid],
        ["export", sid, "--format", "json"],
        ["lineage", linked_genotype["tid"], "--format", "json"],
        ["report", sid, "--out", "r.html"],
    ):
        code, out, err = nasw([*args, "--store", uri], capsys)
        assert code == 0, (args, err)
        assert SECRET not in out + err, args
    assert SECRET not in (tmp_path / "r.html").read_text()
    attached = Path(local_folder(linked_genotype["store"]._search_run(sid).info.artifact_uri)) / "report"
    assert SECRET not in (attached / "report.html").read_text()  # nor in the copy uploaded to the store
    code, out, err = nasw(["show", sid, "--store", uri, "--format", "json"], capsys)
    (trial,) = json.loads(out)["trials"]
    assert trial["genotype"] == ""
    assert linked_genotype["store"].trial(linked_genotype["tid"]).genotype_json == ""
    histories = linked_genotype["store"].histories("chain-v1", "val_accuracy")
    assert SECRET not in json.dumps([h.genotype_jsons for h in histories.values()])


def test_a_weights_file_that_is_a_link_is_never_loaded(shared_uri, tmp_path):
    store = open_store(shared_uri)
    sid = store.start_search("linked-weights", strategy="random", space="chain-v1", seed=0, objective="val_accuracy")
    tid = store.start_trial(sid, long_genotype(), "k")
    store.save_weights(tid, {"w": torch.ones(2)})
    store.finish_trial(tid, state="finished", metrics={"val_accuracy": 0.5})
    assert store.load_weights(tid) is not None
    elsewhere = tmp_path / "model.pt"
    torch.save({"w": torch.full((2,), 7.0)}, elsewhere)
    path = weights_file(store, tid)
    path.unlink()
    path.symlink_to(elsewhere)
    assert store.load_weights(tid) is None


# -- #3 searches started at once on a new store ------------------------------------------------------
RACE = r"""
import sys, time
import mlflow.tracking  # imported before the start line, so that every process reaches the store at once
import workbench.search
from workbench.cli import main
start = float(sys.argv[1])
while time.time() < start:
    time.sleep(0.001)
main(sys.argv[2:])
"""


def test_searches_started_at_once_on_a_new_store_all_succeed(tmp_path):
    db = tmp_path / "new" / "mlflow.db"
    start = time.time() + 25  # after every process has imported what it needs
    args = ["search", "--task", "nbgraph-cora", "--budget", "1", "--strategy", "random", "--store", db, "--quiet"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(start), *map(str, args), "--seed", str(i)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert all(code == 0 for code, _ in results), results
    code, out, _ = nasw(["ls", "--store", db, "--format", "json"], cwd=tmp_path)
    assert code == 0 and len(json.loads(out)) == 3


# -- #4 and #16: nasw ui --------------------------------------------------------------------------------
def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process (Linux /proc)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
            cmdline = Path("/proc", entry, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmdline)
    return out


def _descendants(pid: int) -> set[int]:
    procs = _processes()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, (ppid, _) in procs.items() if ppid in frontier} - found
        found |= frontier
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_nasw_ui_by_its_pid_stops_the_mlflow_server(tmp_path, sig):
    port = _free_port()
    tree: dict[int, str] = {}
    ui = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "ui", "--store", tmp_path / "runs", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # as in a terminal: a suite started in the background (`cmd &` without job control)
        # ignores SIGINT, the child would inherit that, and `nasw ui` rightly keeps it ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 240  # MLflow starts four uvicorn workers: slow on a busy machine
        while time.monotonic() < deadline and not _port_open(port):
            assert ui.poll() is None, "nasw ui ended by itself"
            time.sleep(0.5)
        assert _port_open(port), "the MLflow UI never listened"
        procs = _processes()
        tree = {pid: procs[pid][1] for pid in _descendants(ui.pid) if pid in procs}  # pid -> command line
        assert tree
        ui.send_signal(sig)
        ui.wait(timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (_left(tree) or _port_open(port)):
            time.sleep(0.5)
        assert not _left(tree), f"still running after nasw ui stopped: {_left(tree)}"
        assert not _port_open(port)
    finally:
        if ui.poll() is None:
            ui.kill()
        for pid in _left(tree):
            os.kill(pid, signal.SIGKILL)


def _left(tree: dict[int, str]) -> dict[int, str]:
    """The processes of ``tree`` still running (the same pid with the same command line)."""
    return {pid: cmd for pid, (_, cmd) in _processes().items() if tree.get(pid) == cmd}


def test_nasw_ui_on_all_interfaces_warns_and_sets_allowed_hosts(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    code, out, err = nasw(["ui", "--store", tmp_path / "runs", "--host", "0.0.0.0"], capsys)
    assert code == 0
    (warning,) = [line for line in err.splitlines() if line.strip()]
    assert warning.startswith("warning: ") and "0.0.0.0" in warning and "readable and writable" in warning
    assert "--app-name basic-auth" in warning
    (cmd,) = calls
    allowed = cmd[cmd.index("--allowed-hosts") + 1].split(",")
    assert "localhost:5000" in allowed and socket.gethostname() in allowed
    calls.clear()
    code, out, err = nasw(["ui", "--store", tmp_path / "runs"], capsys)
    assert code == 0 and not err.strip()  # this machine only: no warning
    (cmd,) = calls
    assert socket.gethostname() not in cmd[cmd.index("--allowed-hosts") + 1].split(",")


# -- #10 a read-only store ---------------------------------------------------------------------------
def _unprivileged() -> list[str] | None:
    """A command prefix under which file modes apply (root ignores them): none for a normal user,
    a user namespace for root, None when neither is possible."""
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    prefix = [unshare, "--user", "--map-user=1000", "--map-group=1000"]
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return prefix if ok else None


@pytest.fixture(scope="module")
def unprivileged():
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root without `unshare --map-user`: file modes cannot be tested")
    return prefix


@pytest.fixture(scope="module")
def recorded_store(tmp_path_factory):
    """A folder holding a store with one finished search (two trials of a table lookup)."""
    home = tmp_path_factory.mktemp("recorded")
    args = ["search", "--task", "nbgraph-cora", "--budget", 2, "--store", home / "store", "--quiet", "--json"]
    code, out, err = nasw(args, cwd=home)
    assert code == 0, err
    return home / "store", json.loads(out)["search_id"]


def _read_only(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True) + [folder]:
        path.chmod(path.stat().st_mode & ~0o222)


@pytest.fixture
def read_only_store(recorded_store, tmp_path):
    store = tmp_path / "ro"
    shutil.copytree(recorded_store[0], store)
    _read_only(store)
    yield store, recorded_store[1]
    for path in [store, *store.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)


def test_a_read_only_store_is_read_and_refuses_writes_in_one_line(read_only_store, unprivileged, tmp_path):
    store, sid = read_only_store
    code, out, err, _ = cli(["ls", "--store", store, "--format", "json"], cwd=tmp_path, prefix=unprivileged)
    assert code == 0 and not err.strip(), err
    assert [s["search_id"] for s in json.loads(out)] == [sid]
    code, out, err, _ = cli(["show", sid, "--store", store, "--format", "json"], cwd=tmp_path, prefix=unprivileged)
    assert code == 0 and len(json.loads(out)["trials"]) == 2
    out_dir = tmp_path / "reports"
    out_dir.mkdir()
    out_dir.chmod(0o777)
    report = out_dir / "r.html"
    code, out, err, _ = cli(["report", sid, "--store", store, "--out", report], cwd=tmp_path, prefix=unprivileged)
    assert code == 0, err
    assert report.is_file() and "read-only" in out
    args = ["search", "--task", "nbgraph-cora", "--budget", "1", "--store", store, "--quiet"]
    code, out, err, _ = cli(args, cwd=tmp_path, prefix=unprivileged)
    assert code == 2
    line = one_error_line(err)
    assert "read-only" in line and str(store) in line


def test_a_read_only_folder_without_a_store_is_one_line_at_once(tmp_path, unprivileged):
    folder = tmp_path / "empty"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, out, err, seconds = cli(["ls", "--store", folder], cwd=tmp_path, prefix=unprivileged, timeout=90)
        assert code == 2 and "no store" in one_error_line(err)
        assert seconds < 60  # MLflow alone retries opening such a file for about 100 s
        args = ["search", "--task", "nbgraph-cora", "--budget", "1", "--store", folder, "--quiet"]
        code, out, err, seconds = cli(args, cwd=tmp_path, prefix=unprivileged, timeout=90)
        assert code == 2 and "not writable" in one_error_line(err)
    finally:
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


# -- #11 kill -TERM of a search --------------------------------------------------------------------
def test_sigterm_stops_a_search_like_ctrl_c_and_resume_continues_it(tmp_path):
    (tmp_path / "slow.toml").write_text(tiny_toml("tiny-sigterm", training={"epochs": 100}))
    store = tmp_path / "store"
    search = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "search", "--task", "slow.toml", "--budget", "2", "--store", store]
        + ["--strategy", "random", "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        deadline = time.monotonic() + 240
        running = None
        while time.monotonic() < deadline and running is None and search.poll() is None:
            time.sleep(0.2)
            running = _running_trial(store / "mlflow.db")
        assert running is not None, "no trial ever ran"
        search.send_signal(signal.SIGTERM)
        _, err = search.communicate(timeout=120)
    finally:
        if search.poll() is None:
            search.kill()
    assert search.returncode > 0, (search.returncode, err)  # exited, not killed by the signal
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "nasw resume" in lines[0], err
    st = open_store(str(store))
    (rec,) = st.searches()
    assert rec.state == "killed"
    trial = st.trial(running)
    assert trial.state == "failed" and "SIGTERM" in trial.reason
    code, out, err = nasw(["resume", rec.search_id, "--store", store, "--quiet", "--json"], cwd=tmp_path)
    assert code == 0, err
    assert json.loads(out)["n_trials"] == 2
    assert open_store(str(store)).search(rec.search_id).state == "finished"


def _running_trial(db: Path) -> str | None:
    """The id of a running trial in the SQLite store ``db`` (read-only, straight from MLflow's
    tables: opening the store while the search creates it would race), or None."""
    if not db.is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = con.execute(
                "SELECT k.run_uuid FROM tags k JOIN tags s ON s.run_uuid = k.run_uuid AND s.key = ? AND s.value = ? "
                "WHERE k.key = ? AND k.value = ?",
                (TAG_STATE, RUNNING, TAG_KIND, KIND_TRIAL),
            ).fetchall()
        finally:
            con.close()
    except sqlite3.Error:  # the store is being created
        return None
    return rows[0][0] if rows else None


# -- #15 read-only commands at a mistyped path -----------------------------------------------------
@pytest.mark.parametrize("form", ["folder", "file.db", "sqlite"])
def test_read_only_commands_never_create_a_store_at_a_mistyped_path(tmp_path, capsys, monkeypatch, form):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "runz"
    uri = {"folder": str(target), "file.db": str(target / "mlflow.db"), "sqlite": f"sqlite:///{target}/mlflow.db"}[form]
    for args in (
        ["ls"],
        ["show", "abcdef"],
        ["compare", "abcdef"],
        ["export", "abcdef"],
        ["report", "abcdef"],
        ["lineage", "abcdef12"],
    ):
        code, out, err = nasw([*args, "--store", uri], capsys)
        assert code == 2, (args, err)
        line = one_error_line(err)
        assert "no store at" in line and str(target / "mlflow.db") in line and "nasw search" in line
        assert not target.exists(), args


# -- #19 nasw ls at 80 columns, resume --budget ------------------------------------------------------
def test_ls_keeps_its_columns_at_80_with_a_22_digit_seed(tmp_path, capsys, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = open_store(uri)
    seed = 1234567890123456789012
    store.start_search("tiny-digits", strategy="evolution", space="chain-v1", seed=seed, objective="val_accuracy")
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = nasw(["ls", "--store", uri], capsys)
    assert code == 0
    (row,) = [line for line in out.splitlines() if "evolution" in line and not line.startswith(" ")]  # not its name
    assert row.split()[1:3] == ["tiny-digits", "evolution"], out
    assert max(len(line) for line in out.splitlines()) <= 80
    code, out, _ = nasw(["ls", "--store", uri, "--format", "json"], capsys)
    assert json.loads(out)[0]["seed"] == seed  # the full seed is in the JSON


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_update_spec_replaces_recorded_entries(shared_uri, backend):
    store = open_store("memory://" if backend == "memory" else shared_uri)
    spec = {"budget": 2, "strategy": "random", "task": {"name": "x"}}
    sid = store.start_search("spec-update", strategy="random", space="chain-v1", seed=0, objective="v", spec=spec)
    store.update_spec(sid, {"budget": 5})
    assert store.search(sid).spec == {**spec, "budget": 5}


def test_resume_budget_is_recorded_in_the_spec(tmp_path):
    store = tmp_path / "store"
    args = ["search", "--task", "nbgraph-cora", "--budget", "1", "--store", store, "--quiet", "--json"]
    code, out, err = nasw(args, cwd=tmp_path)
    assert code == 0, err
    sid = json.loads(out)["search_id"]
    code, out, err = nasw(["resume", sid, "--budget", "2", "--store", store, "--quiet", "--json"], cwd=tmp_path)
    assert code == 0 and json.loads(out)["n_trials"] == 2, err
    assert open_store(str(store)).search(sid).spec["budget"] == 2
    code, out, err = nasw(["resume", sid, "--store", store, "--quiet", "--json"], cwd=tmp_path)
    assert code == 0 and json.loads(out)["n_trials"] == 2, err  # a later resume keeps the new budget
