"""The nasw command line: end to end on a SQLite store, and one clear line for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import nasw, tiny_toml

TINY_TASK = tiny_toml(
    "tiny-digits",
    "digits, 1 epoch, a tiny space (tests)",
    space={"max_layers": 3, "widths": [8, 16]},
    training={"epochs": 2},
)


@pytest.fixture
def workdir(workdir):
    (workdir / "tiny.toml").write_text(TINY_TASK)
    return workdir


def test_search_ls_show_on_default_sqlite_store(workdir, capsys):
    code, out, err = nasw(["search", "--task", "tiny.toml", "--strategy", "evolution", "--budget", 3, "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["n_trials"] == 3 and result["best"]["metrics"]["test_accuracy"] > 0.3
    assert (workdir / "runs" / "mlflow.db").is_file()

    code, out, _ = nasw(["ls", "--format", "json"], capsys)
    (s,) = json.loads(out)
    assert s["task"] == "tiny-digits" and s["n_trials"] == 3 and s["state"] == "finished"

    code, out, _ = nasw(["show", result["search_id"][:6], "--format", "json"], capsys)
    shown = json.loads(out)
    assert [t["number"] for t in shown["trials"]] == [0, 1, 2]
    assert all(t["state"] == "finished" and "val_accuracy" in t["metrics"] for t in shown["trials"])

    code, out, _ = nasw(["show", result["search_id"]], capsys)
    assert code == 0 and "tiny-digits" in out
    with pytest.MonkeyPatch.context() as mp:  # an 80-column terminal keeps the number and the trial id
        mp.setenv("COLUMNS", "80")
        code, out, _ = nasw(["show", result["search_id"]], capsys)
    rows = [line for line in out.splitlines() if shown["trials"][0]["trial_id"][:8] in line]
    assert code == 0 and len(rows) == 1 and rows[0].lstrip("* ").split()[0] == "0", out
    assert max(len(line) for line in out.splitlines()) <= 80
    with pytest.MonkeyPatch.context() as mp:  # ls too: id, strategy and values whole, only the task name gives way
        mp.setenv("COLUMNS", "80")
        code, out, _ = nasw(["ls"], capsys)
    (row,) = [line for line in out.splitlines() if line.startswith(result["search_id"][:8])]
    assert code == 0 and row.split()[2:5] == ["evolution", "finished", "3"], out
    assert f"{result['best']['metrics']['val_accuracy']:.4f}" in row
    assert max(len(line) for line in out.splitlines()) <= 80

    # MLflow itself shows nested trials with learning curves and genotype artifacts.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny-digits")
    runs = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{result['search_id']}'")
    assert len(runs) == 3
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "val_accuracy")]
    assert steps[:2] == [0, 1]
    assert "genotype.json" in [a.path for a in client.list_artifacts(runs[0].info.run_id)]


def test_resume_continues_to_the_new_budget(workdir, capsys):
    code, out, _ = nasw(["search", "--task", "tiny.toml", "--strategy", "random", "--budget", 2, "--json"], capsys)
    sid = json.loads(out)["search_id"]
    code, out, err = nasw(["resume", sid[:8], "--budget", 3, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["n_trials"] == 3


def test_resume_marks_stale_running_trials_failed(workdir, capsys):
    from metastore import open_store
    from metastore.schema import TAG_RERUN_OF

    code, out, _ = nasw(["search", "--task", "tiny.toml", "--strategy", "random", "--budget", 1, "--json"], capsys)
    sid = json.loads(out)["search_id"]
    store = open_store()
    g = store.trials(sid)[0]
    store.start_trial(sid, g.genotype_json, g.genotype_key)  # a trial left RUNNING by a crash
    code, out, err = nasw(["resume", sid, "--budget", 3, "--json"], capsys)
    assert code == 0, err
    trials = open_store().trials(sid)
    assert [t.state for t in trials] == ["finished", "failed", "finished", "finished"]
    assert "interrupted" in trials[1].reason
    # the interrupted trial does not count against the budget: its architecture is re-run first
    assert trials[2].tags[TAG_RERUN_OF] == trials[1].trial_id and trials[2].genotype_key == g.genotype_key
    assert json.loads(out)["n_trials"] == 3


def test_tasks_lists_shipped_tasks(capsys):
    code, out, _ = nasw(["tasks"], capsys)
    assert code == 0 and "digits" in out and "mnist1d" in out


def test_tasks_table_keeps_every_column_in_an_80_column_terminal(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = nasw(["tasks"], capsys)
    row = next(line for line in out.splitlines() if line.startswith("digits "))
    assert code == 0 and all(w in row for w in ("trained", "chain", "val_accuracy"))
    assert max(len(line) for line in out.splitlines()) <= 80
    names = [line.split()[0] for line in out.splitlines()[2:] if line.strip()]
    assert len(names) == len(set(names)) and "digits-cell" in names  # one line per task


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "--task", "no-such-task"], "unknown task"),
        (["search", "--task", "digits", "--strategy", "magic"], "unknown strategy"),
        (["search", "--task", "digits", "--budget", "0"], "--budget"),
        (["search", "--task", "digits", "--budget", "many"], "--budget"),
        (["search", "--task", "digits", "--option", "novalue"], "KEY=VALUE"),
        (["show", "ffffffff"], "no search"),
        (["resume", "ffffffff"], "no search"),
        (["frobnicate"], "No such command"),
        (["search"], "--task"),
        (["ls", "--store", "ftp://nowhere"], "store"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(workdir, capsys, args, message):
    code, out, err = nasw(args, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in err + out


def test_malformed_task_file_is_one_line(workdir, capsys):
    (workdir / "bad.toml").write_text('name = "x"\n[dataset]\nloader = "digits"\n')
    code, _, err = nasw(["search", "--task", "bad.toml"], capsys)
    assert code == 2 and err.strip().startswith("error: ") and "[space]" in err


def test_help_is_fast_and_imports_nothing_heavy():
    code = (
        "import sys; from workbench.cli import cli; "
        "heavy = [m for m in ('torch', 'mlflow', 'botorch', 'ray') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    r = subprocess.run([sys.executable, "-m", "workbench.cli", "search", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--budget" in r.stdout


def test_multi_objective_search_records_its_pareto_front(workdir, capsys):
    code, out, err = nasw(
        [
            "search",
            "--task",
            "nbgraph-cora",
            "--strategy",
            "evolution",
            "--budget",
            20,
            "--objectives",
            "val_accuracy,-latency",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    sid = json.loads(out)["search_id"]
    fronts = list(workdir.glob(f"runs/artifacts/**/{sid}/**/pareto_front.json"))
    assert fronts, "the parent run has no pareto_front.json"
    data = json.loads(fronts[0].read_text())
    assert data["objectives"] == ["val_accuracy", "-latency"]
    pts = [(p["val_accuracy"], -p["latency"]) for p in data["front"]]
    assert pts
    for a in pts:  # no front member dominates another
        assert not any(b != a and b[0] >= a[0] and b[1] >= a[1] for b in pts)
    code, _, err = nasw(["search", "--task", "nbgraph-cora", "--objectives", "val_accuracy"], capsys)
    assert code == 2 and "at least two" in err


@pytest.mark.parametrize("strategy", ["bo", "rl", "hillclimb"])
def test_every_learning_strategy_runs_end_to_end_on_a_trained_task(workdir, capsys, strategy):
    code, out, err = nasw(
        ["search", "--task", "tiny.toml", "--strategy", strategy, "--budget", 3, "--json", "--store", "memory://"],
        capsys,
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["n_trials"] == 3 and result["best"]["metrics"]["val_accuracy"] > 0.2


def test_cell_search_runs_end_to_end_from_the_cli(workdir, capsys):
    (workdir / "cell.toml").write_text(
        'name = "tiny-cell"\n[dataset]\nloader = "digits"\n[space]\nkind = "cell"\nstages = 1\n'
        "cells_per_stage = 1\nwidth = 8\n[training]\nepochs = 1\nbatch_size = 128\n"
    )
    code, out, err = nasw(
        ["search", "--task", "cell.toml", "--strategy", "evolution", "--budget", 2, "--json", "--store", "memory://"],
        capsys,
    )
    assert code == 0, err
    assert json.loads(out)["best"]["genotype"]["space"] == "cell-v1"
