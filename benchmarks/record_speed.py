"""How fast a tabular search is recorded in MLflow, end to end from the CLI.

Run: ``python benchmarks/record_speed.py`` — times
``nasw search --task nbgraph-cora --strategy random --budget 100`` against a fresh SQLite store
(wall clock of the whole command, interpreter start-up included), then counts the trials MLflow
holds. Target (issue 3): 100 trials in under 60 s on 2 cores. Writes
``benchmarks/results/record_speed.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--task", default="nbgraph-cora")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="nasw-record-"))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    cmd = [
        sys.executable,
        "-m",
        "workbench.cli",
        "search",
        "--task",
        args.task,
        "--strategy",
        "random",
        "--budget",
        str(args.budget),
        "--store",
        uri,
        "--quiet",
        "--json",
    ]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=folder).stdout
    wall = time.perf_counter() - t0
    search_id = json.loads(out)["search_id"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(args.task)
    runs = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{search_id}'", max_results=10000)
    finished = sum(1 for r in runs if r.info.status == "FINISHED")
    lines = [
        f"# Recording speed: `nasw search --task {args.task} --strategy random --budget {args.budget}`",
        "",
        "| trials in MLflow | finished | wall s (whole command) | trials / s | target |",
        "|---|---|---|---|---|",
        f"| {len(runs)} | {finished} | {wall:.1f} | {len(runs) / wall:.1f} | < 60 s |",
    ]
    text = "\n".join(lines)
    print(text)
    out_path = Path(__file__).resolve().parent / "results" / "record_speed.md"
    out_path.parent.mkdir(exist_ok=True)
    out_path.write_text(text + "\n")


if __name__ == "__main__":
    main()
