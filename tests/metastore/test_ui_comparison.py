"""The MLflow UI as the place to compare searches (issue 21, item 1): the REST API the UI reads,
served by the light server ``nasw ui`` starts (:mod:`metastore.ui_server`), shows two searches
with readable names, nested trials with readable names, and each search's progress as a step
series the compare charts draw side by side. No browser is needed here; ``docs/ui_screenshots.py``
takes the screenshots."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import pytest

from metastore import open_store
from metastore.schema import MLFLOW_PARENT_RUN_TAG, PROGRESS_BEST, PROGRESS_OBJECTIVE, TAG_KIND
from workbench.search.assemble import default_search_name, new_search
from workbench.task import load_task

TASK = "nbgraph-cora"  # a table lookup: trials are instant
BUDGET = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(
        f"{base}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _get(base: str, path: str, params: list[tuple[str, str]]) -> dict:
    with urllib.request.urlopen(f"{base}{path}?{urllib.parse.urlencode(params)}", timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def two_searches(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    store = open_store(uri)
    task = load_task(TASK)
    ids = []
    for strategy, options in (("random", {}), ("evolution", {"population": 3})):
        search = new_search(store, task, strategy, BUDGET, seed=0, strategy_options=options)
        search.run()
        ids.append(search.search_id)
    return uri, ids


@pytest.fixture(scope="module")
def server(two_searches):
    """The light server on a free port, as ``nasw ui`` starts it; yields (base URL, seconds it
    took to answer, its "ready" line)."""
    uri, _ = two_searches
    port = _free_port()
    cmd = [sys.executable, "-m", "metastore.ui_server", "--parent", str(os.getpid()), "--"]
    cmd += ["--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        ready = ""
        while not ready and time.monotonic() - started < 180:
            assert proc.poll() is None, "the server ended by itself"
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            ready = line if "ready after" in line else ""
        assert ready, "the server never said it was ready"
        yield f"http://127.0.0.1:{port}", time.monotonic() - started, ready.strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_the_light_server_answers_quickly_and_names_the_newest_searchs_runs_table(server, two_searches):
    base, seconds, ready = server
    print(f"server answered after {seconds:.1f} s: {ready}")
    assert seconds < 60  # about 10 s on a 2-core machine shared with other jobs (issue 21: 15 s)
    experiments = _post(base, "/api/2.0/mlflow/experiments/search", {"max_results": 100})["experiments"]
    (experiment,) = [e["experiment_id"] for e in experiments if e["name"] == TASK]
    assert f"/#/experiments/{experiment}/runs?workflowType=machine_learning" in ready


def test_two_searches_progress_can_be_compared_through_the_rest_api(server, two_searches):
    base, _, _ = server
    _, ids = two_searches
    experiments = _post(base, "/api/2.0/mlflow/experiments/search", {"max_results": 100})["experiments"]
    experiment = next(e["experiment_id"] for e in experiments if e["name"] == TASK)
    runs = _post(base, "/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment], "max_results": 1000})["runs"]
    tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs}
    names = {r["info"]["run_id"]: r["info"]["run_name"] for r in runs}

    # searches: readable, distinct names that start with the task and strategy, end with the id's start
    assert names[ids[0]].startswith(f"{TASK}·random·") and names[ids[0]].endswith(ids[0][:6])
    assert names[ids[1]].startswith(f"{TASK}·evolution·population=3·") and names[ids[1]].endswith(ids[1][:6])
    # trials: nested under their search, named t<number> <short architecture>
    for search_id in ids:
        kids = sorted(names[r] for r, t in tags.items() if t.get(MLFLOW_PARENT_RUN_TAG) == search_id)
        assert len(kids) == BUDGET and all(t.get(TAG_KIND) for t in tags.values())
        assert [k.split(" ", 1)[0] for k in kids] == [f"t{i:02d}" for i in range(BUDGET)]
        assert all(len(k) > 4 and "{" not in k for k in kids), kids

    # the charts of the compare view read every run's series in one request
    params = [("run_ids", i) for i in ids] + [("metric_key", PROGRESS_BEST), ("max_results", "320")]
    points = _get(base, "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval", params)["metrics"]
    by_run: dict[str, list[tuple[int, float]]] = {}
    for p in points:
        by_run.setdefault(p["run_id"], []).append((int(p["step"]), float(p["value"])))
    assert set(by_run) == set(ids)
    for series in by_run.values():
        steps = [s for s, _ in sorted(series)]
        values = [v for _, v in sorted(series)]
        assert steps == list(range(BUDGET))
        assert values == sorted(values)  # best so far never falls
    for search_id in ids:
        history = _get(
            base, "/api/2.0/mlflow/metrics/get-history", [("run_id", search_id), ("metric_key", PROGRESS_OBJECTIVE)]
        )["metrics"]
        assert len(history) == BUDGET


def test_the_default_name_is_readable_and_keeps_the_options_short():
    name = default_search_name("digits", "evolution", {"population": 20, "crossover": "uniform-with-a-long-name"}, 30)
    assert name.startswith("digits·evolution·population=20·crossover=uniform-wit…·b30·")
    assert name.endswith("{id}")


def test_the_server_is_light_unless_told_otherwise():
    from metastore.ui_server import LIGHT_ENV, base_url, light_args

    assert light_args(["--port", "5001"])[-2:] == ["--workers", "1"]
    assert light_args(["--workers", "4"]) == ["--workers", "4"]
    assert LIGHT_ENV["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert base_url(["--host", "0.0.0.0", "--port", "5001"]) == "http://127.0.0.1:5001"
    assert base_url(["--host", "::1"]) == "http://[::1]:5000"
