"""Screenshots of the MLflow UI as ``nasw ui`` serves it: two searches side by side (issue 21).

Runs two small searches of a tiny digits task (random search and evolution, a few seconds per
trial on a CPU) into a fresh store, unless ``--store`` names one that has searches; starts the
light MLflow server of ``nasw ui`` (:mod:`metastore.ui_server`) on a free port; and takes, in
headless Chromium driven by Playwright:

* ``runs_table.png``: the task's runs table, the searches with their readable names, trials nested;
* ``compare_chart.png``: the chart view of the two searches, their ``progress/*`` step series
  (best so far, each trial's objective, seconds) drawn on the same charts;
* ``trial_learning_curve.png``: one trial's metrics page (its per-epoch learning curve).

Needs ``pip install playwright`` and a Chromium: Debian's (``apt-get install chromium``, used from
``/usr/bin/chromium``) or Playwright's own (``playwright install chromium``); ``--chromium PATH``
names another. The test suite does not need a browser: ``tests/metastore/test_ui_comparison.py``
checks the REST API these pages read.

    python docs/ui_screenshots.py [--out ui-screenshots] [--budget 8] [--store PATH]
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASK = {
    "name": "ui-demo-digits",
    "description": "digits, 3 epochs, small chain nets (UI screenshots)",
    "kind": "trained",
    "dataset": {"loader": "digits"},
    "split": {"seed": 0},
    "space": {"kind": "chain", "max_layers": 3, "kernels": [3, 5], "widths": [8, 16], "dense_widths": [32]},
    "training": {"epochs": 3, "batch_size": 128},
}
#: Chromium flags for a closed network and a root user (no sandbox, no background connections).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


#: The run-name cell's button that shows a search's nested trials (MLflow 3's runs table).
EXPANDER = "runnamecellrenderer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_searches(store_uri: str, budget: int) -> list[str]:
    """Two searches of the demo task (random, evolution); their ids."""
    from metastore import open_store
    from workbench.search.assemble import new_search
    from workbench.task import parse_task_dict

    store = open_store(store_uri)
    task = parse_task_dict(TASK)
    ids = []
    for seed, (strategy, options) in enumerate((("random", {}), ("evolution", {"population": 4}))):
        search = new_search(store, task, strategy, budget, seed=seed, strategy_options=options)
        print(f"running {strategy} ({budget} trials) ...", flush=True)
        search.run()
        ids.append(search.search_id)
    return ids


def start_server(store_uri: str, port: int) -> tuple[subprocess.Popen, str, float]:
    """The light server, as ``nasw ui`` starts it; (process, its ready line, seconds to answer)."""
    from metastore.mlflow_setup import tracking_uri_for

    cmd = [sys.executable, "-m", "metastore.ui_server", "--parent", str(os.getpid()), "--"]
    cmd += ["--backend-store-uri", tracking_uri_for(store_uri), "--host", "127.0.0.1", "--port", str(port)]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    while time.monotonic() - started < 180:
        if proc.poll() is not None:
            raise SystemExit("the MLflow server ended by itself")
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if "ready after" in line:
            return proc, line.strip(), time.monotonic() - started
    proc.send_signal(signal.SIGTERM)
    raise SystemExit("the MLflow server did not answer within 180 s")


def find_chromium(given: str | None) -> str | None:
    """A Chromium to drive: ``given``, Debian's, or None (Playwright's own)."""
    for candidate in (given, shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def shoot(base: str, experiment: str, names: list[str], trial_id: str, out: Path, chromium: str | None) -> list[Path]:
    """The three screenshots; their paths."""
    from playwright.sync_api import sync_playwright

    from metastore.schema import KIND_SEARCH, TAG_KIND
    from metastore.ui_server import CHART_VIEW, RUNS_VIEW

    only_searches = urllib.parse.quote(f"tags.`{TAG_KIND}` = '{KIND_SEARCH}'")
    shots = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})

        def take(url: str, name: str, wait_for: str | None = None, settle: float = 4.0, then=None) -> None:
            page.goto(url)
            if wait_for:
                page.get_by_text(wait_for, exact=False).first.wait_for(timeout=60_000)
            close = page.get_by_role("button", name="Close")  # the assistant's side panel
            if close.count():
                close.first.click()
            if then is not None:
                then()
            time.sleep(settle)  # charts draw after the data arrives
            path = out / name
            page.screenshot(path=str(path), full_page=True)
            shots.append(path)
            print(f"wrote {path}", flush=True)

        def expand() -> None:  # each search's trials, nested under it
            for button in page.locator(f"button[data-component-id*='{EXPANDER}']").all():
                button.click()

        def only_accuracy() -> None:
            page.get_by_placeholder("Search metric charts").fill("accuracy")

        take(f"{base}/{RUNS_VIEW.format(experiment=experiment)}", "runs_table.png", names[0], then=expand)
        chart = CHART_VIEW.format(experiment=experiment) + f"&searchFilter={only_searches}"
        take(f"{base}/{chart}", "compare_chart.png", "progress")
        trial = f"#/experiments/{experiment}/runs/{trial_id}/model-metrics?workflowType=machine_learning"
        take(f"{base}/{trial}", "trial_learning_curve.png", "val_", then=only_accuracy)
        browser.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="ui-screenshots", help="folder for the PNG files")
    parser.add_argument("--budget", type=int, default=8, help="trials per search")
    parser.add_argument("--store", default=None, help="a store with searches (default: a fresh one)")
    parser.add_argument("--chromium", default=None, help="the Chromium to drive (default: Debian's)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from metastore import open_store

    tmp = None
    if args.store is None:
        tmp = tempfile.mkdtemp(prefix="nasw-ui-shots-")
        store_uri = f"sqlite:///{tmp}/mlflow.db"
        search_ids = run_searches(store_uri, args.budget)
    else:
        store_uri = args.store
        search_ids = [s.search_id for s in open_store(store_uri, mode="read").searches()][:2][::-1]
        if len(search_ids) < 2:
            raise SystemExit(f"{store_uri} has fewer than two searches")
    store = open_store(store_uri, mode="read")
    records = [store.search(i) for i in search_ids]
    trial = next(t for t in reversed(store.trials(search_ids[-1])) if t.state == "finished")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    proc, ready, seconds = start_server(store_uri, free_port())
    try:
        print(f"{ready} (the server answered {seconds:.1f} s after it was started)", flush=True)
        base = ready.split(": ", 1)[1].split("/#/", 1)[0]
        experiment = ready.split("/#/experiments/", 1)[1].split("/", 1)[0]
        shoot(base, experiment, [r.name for r in records], trial.trial_id, out, find_chromium(args.chromium))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
