"""Scale out and survive: SIGKILL + resume, a shared mlflow server, process pool and Ray workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_toml

TINY = tiny_toml(
    "tiny-kill", "digits, 1 epoch, tiny nets (resume tests)", split=None, training={"epochs": 2, "batch_size": 256}
)


def nasw(*args: str, cwd: Path, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def finished(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_completes_exactly_the_budget(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    store_uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    env = {"NASW_STORE": store_uri}
    budget = 14
    rng = np.random.default_rng(0)
    proc = nasw(
        "search",
        "--task",
        "tiny.toml",
        "--strategy",
        "evolution",
        "--budget",
        str(budget),
        "--quiet",
        "--json",
        cwd=tmp_path,
        env=env,
    )
    from metastore import open_store

    search_id = None
    kills = 0
    while kills < 10:
        time.sleep(float(rng.uniform(2.0, 7.0)))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        store = open_store(store_uri)
        if search_id is None:
            ids = [s.search_id for s in store.searches()]
            if not ids:  # killed before the search was even created: start again
                proc = nasw(
                    "search",
                    "--task",
                    "tiny.toml",
                    "--strategy",
                    "evolution",
                    "--budget",
                    str(budget),
                    "--quiet",
                    "--json",
                    cwd=tmp_path,
                    env=env,
                )
                continue
            (search_id,) = ids
        proc = nasw("resume", search_id, "--quiet", "--json", cwd=tmp_path, env=env)
    code, out, err = finished(proc)
    assert code == 0, err
    assert kills >= 3, "the search ended before it could be killed often enough"
    store = open_store(store_uri)
    if search_id is None:
        (search_id,) = [s.search_id for s in store.searches()]
    trials = store.trials(search_id)
    done = [t for t in trials if t.state == "finished"]
    from workbench.search.records import is_interrupted

    counted = [t for t in trials if not is_interrupted(t)]  # interrupted trials are re-run, not counted
    assert len(counted) == budget, [(t.state, t.reason) for t in trials]
    assert not [t for t in trials if t.state == "running"]
    assert len({t.trial_id for t in trials}) == len(trials)
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert done, "no trial finished"
    for t in done:
        assert 0.0 <= t.metrics["val_accuracy"] <= 1.0 and "test_accuracy" in t.metrics
        state = store.load_weights(t.trial_id)
        assert state is not None and all(np.isfinite(v.float().numpy()).all() for v in state.values())
    for t in trials:
        if t.state == "failed":
            assert t.reason


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_searches_with_two_workers_each_against_one_mlflow_server(tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--workers",
            "2",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        import urllib.request

        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    pytest.fail("mlflow server did not start")
                time.sleep(1)
        procs = [
            nasw(
                "search",
                "--task",
                task,
                "--strategy",
                "random",
                "--budget",
                "12",
                "--workers",
                "2",
                "--oversubscribe",
                "--store",
                url,
                "--quiet",
                "--json",
                "--seed",
                str(i),
                cwd=tmp_path,
            )
            for i, task in enumerate(["nbgraph-cora", "nbgraph-photo"])
        ]
        results = []
        for p in procs:
            code, out, err = finished(p)
            assert code == 0, err
            results.append(json.loads(out))
        from metastore import open_store

        store = open_store(url)
        for r in results:
            trials = store.trials(r["search_id"])
            assert len(trials) == 12
            assert len({t.trial_id for t in trials}) == 12
            assert sorted(t.number for t in trials) == list(range(12))
            assert all(t.state == "finished" for t in trials)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_ray_executor_runs_a_40_trial_search(tmp_path):
    pytest.importorskip("ray")
    code_proc = nasw(
        "search",
        "--task",
        "nbgraph-cora",
        "--strategy",
        "evolution",
        "--budget",
        "40",
        "--executor",
        "ray",
        "--workers",
        "2",
        "--oversubscribe",
        "--quiet",
        "--json",
        "--store",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        cwd=tmp_path,
    )
    code, out, err = finished(code_proc)
    assert code == 0, err
    result = json.loads(out)
    from metastore import open_store

    trials = open_store(f"sqlite:///{tmp_path / 'mlflow.db'}").trials(result["search_id"])
    assert len(trials) == 40 and all(t.state == "finished" for t in trials)


def test_process_pool_records_every_trial_once(tmp_path):
    from metastore import open_store
    from workbench.search import new_search
    from workbench.task import load_task

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = open_store(uri)
    search = new_search(store, load_task("nbgraph-cora"), "random", 8, seed=0, executor="pool", workers=2)
    result = search.run()
    trials = store.trials(result.search_id)
    assert len(trials) == 8 and len({t.genotype_key for t in trials}) == 8
    assert all(t.state == "finished" for t in trials)


def test_parallel_workers_need_a_persistent_store():
    from metastore import open_store
    from workbench.errors import UserError
    from workbench.search import new_search
    from workbench.task import load_task

    with pytest.raises(UserError, match="persistent store"):
        new_search(open_store("memory://"), load_task("nbgraph-cora"), "random", 4, workers=2)


def test_resume_refuses_while_a_trial_is_alive(tmp_path):
    from metastore import open_store
    from metastore.schema import TAG_HEARTBEAT as HEARTBEAT_TAG
    from workbench.errors import UserError
    from workbench.search import new_search, resume_search
    from workbench.task import load_task

    store = open_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    search = new_search(store, load_task("nbgraph-cora"), "random", 3, seed=0)
    search.run()
    t = store.trials(search.search_id)[0]
    tid = store.start_trial(search.search_id, t.genotype_json, t.genotype_key)
    # a heartbeat from a live process on this host (pytest's parent) looks alive
    store.set_tags(tid, {HEARTBEAT_TAG: f"{socket.gethostname()}:{os.getppid()}:{time.time():.0f}"})
    with pytest.raises(UserError, match="still running"):
        resume_search(store, search.search_id, budget=5)
    resumed = resume_search(store, search.search_id, budget=5, force=True)
    resumed.run()
    trials = store.trials(search.search_id)
    states = [r.state for r in trials]
    # the trial stopped by --force does not count against the budget: its architecture is re-run
    assert states == ["finished", "finished", "finished", "failed", "finished", "finished"]
    assert trials[4].genotype_key == t.genotype_key
