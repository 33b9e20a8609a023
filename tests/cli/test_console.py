"""What ``nasw search`` prints while it runs and when it ends, as a log file keeps it: the output
under test is not a terminal (pytest's capture), as with nohup, a redirect or a cluster job."""

from __future__ import annotations

import json
import re

import pytest
from helpers import nasw, tiny_toml

#: A plain timestamped line of one finished trial: ``2026-01-02 03:04:05 trial 3 [4/20]  ...``.
TRIAL_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d trial (\d+) \[(\d+)/(\d+)\]  (.*)$")


def trial_lines(err: str) -> list[re.Match]:
    return [m for m in (TRIAL_LINE.match(line) for line in err.splitlines()) if m]


@pytest.fixture
def tiny(workdir):
    (workdir / "tiny.toml").write_text(tiny_toml("tiny-digits", space={"max_layers": 3, "widths": [8, 16]}))
    return workdir


def test_a_log_keeps_one_timestamped_line_per_trial_and_a_readable_summary(tiny, capsys):
    code, out, err = nasw(["search", "--task", "tiny.toml", "--strategy", "random", "--budget", 3], capsys)
    assert code == 0, err
    lines = trial_lines(err)
    assert [(m[1], m[2], m[3]) for m in lines] == [("0", "1", "3"), ("1", "2", "3"), ("2", "3", "3")], err
    for m in lines:
        rest = m[4]
        assert "finished" in rest and re.search(r"val_accuracy 0\.\d{4}", rest) and re.search(r"\d+\.\d s", rest)
        assert "{" not in rest  # the short architecture, never the genotype's JSON
    assert "eta " in lines[0][4] and "eta " in lines[1][4]  # the time left, while trials are left
    assert "\x1b[" not in err and "━" not in err  # no progress bar or colour codes in a log

    from metastore import open_store

    store = open_store()
    (rec,) = store.searches()
    trials = store.trials(rec.search_id)
    from workbench.space.registry import describe_json

    for m, t in zip(lines, trials):  # each line names its trial's architecture in the short form
        assert m[4].endswith(describe_json(t.genotype_json, 200))
    best = max(trials, key=lambda t: t.metrics["val_accuracy"])
    summary = err[err.index(f"search {rec.search_id} (") :]
    assert f"best: trial #{best.number}" in summary and describe_json(best.genotype_json, 400) in summary
    assert re.search(r"3 trials \(0 failed\) in \d+s", summary)  # the wall time
    short = rec.search_id[:8]
    assert f"nasw show {short}" in summary and f"nasw report {short}" in summary
    assert '"layers"' not in summary
    assert out == ""


def test_quiet_prints_nothing_while_the_search_runs(tiny, capsys):
    code, out, err = nasw(["search", "--task", "tiny.toml", "--strategy", "random", "--budget", 2, "--quiet"], capsys)
    assert code == 0, err
    assert trial_lines(err) == [] and "trial 0" not in err
    assert "best: trial #" in err  # the result still prints


def test_json_output_stays_one_document_on_stdout(tiny, capsys):
    code, out, err = nasw(["search", "--task", "tiny.toml", "--strategy", "random", "--budget", 2, "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["n_trials"] == 2 and result["wall_seconds"] >= 0
    assert trial_lines(err) == []


def test_multi_objective_lines_and_summary_show_every_objective_and_the_pareto_front(workdir, capsys):
    args = ["search", "--task", "nbgraph-cora", "--strategy", "evolution", "--budget", 12]
    code, out, err = nasw([*args, "--objectives", "val_accuracy,-latency", "--store", "memory://"], capsys)
    assert code == 0, err
    lines = trial_lines(err)
    assert len(lines) == 12
    assert all("val_accuracy " in m[4] and "latency " in m[4] for m in lines)
    front = err[err.index("Pareto front (val_accuracy, -latency): ") :].splitlines()
    n = int(re.match(r"Pareto front \(val_accuracy, -latency\): (\d+) of 12 finished trials", front[0])[1])
    members = [line for line in front[1:] if line.startswith("  #")]
    assert n >= 1 and len(members) == min(n, 10)
    points = [
        (float(re.search(r"val_accuracy (\S+)", m)[1]), float(re.search(r"latency (\S+)", m)[1])) for m in members
    ]
    for a in points:  # no member dominates another (higher accuracy, lower latency)
        assert not any(b != a and b[0] >= a[0] and b[1] <= a[1] for b in points)
    assert [p[0] for p in points] == sorted((p[0] for p in points), reverse=True)


def test_scheduled_trials_show_their_rung(workdir, capsys):
    fidelity = {"epochs": [1, 3]}
    (workdir / "sched.toml").write_text(tiny_toml("tiny-sh", None, training={"epochs": 3}, fidelity=fidelity))
    args = ["search", "--task", "sched.toml", "--strategy", "random", "--scheduler", "sh", "--budget", 1]
    code, out, err = nasw([*args, "--scheduler-option", "n_configs=3", "--store", "memory://"], capsys)
    assert code == 0, err
    lines = trial_lines(err)
    rungs = [re.search(r", rung (\d)", m[4]) for m in lines]
    assert len(lines) == 4 and all(rungs), err  # 3 configurations at 1 epoch, the best trained on to 3
    assert sorted(int(r[1]) for r in rungs) == [0, 0, 0, 1]


def test_trials_stopped_early_say_so_with_their_epochs(capsys):
    from metastore import open_store
    from workbench.cli.running import _LiveProgress
    from workbench.evaluate.synthetic import SyntheticEvaluator
    from workbench.search import Search
    from workbench.space.registry import make_space
    from workbench.strategy.registry import make_strategy
    from workbench.task import parse_task_dict

    space_doc = {"kind": "chain", "max_layers": 4, "kernels": [3, 5, 7], "widths": [8, 16, 32], "dense_widths": [16]}
    task = parse_task_dict(
        {"name": "synthetic-lc", "kind": "trained", "dataset": {"loader": "digits"}, "space": space_doc}
        | {"training": {"epochs": 30}}
    )
    space = make_space(**task.space)
    progress = _LiveProgress("val_accuracy")
    strategy = make_strategy("random", space, seed=1)
    ev = SyntheticEvaluator(full_epochs=30)
    search = Search(open_store("memory://"), task, strategy, ev, space, 20, seed=0, progress=progress, stop_early="lc")
    search.start()
    progress.attach(search)
    search.run()
    err = capsys.readouterr().err
    stopped = [m for m in trial_lines(err) if "stopped early" in m[4]]
    assert stopped, err
    for m in stopped:
        done, planned = map(int, re.search(r"stopped early \(lc\) at epoch (\d+)/(\d+)", m[4]).groups())
        assert done < planned == 30


@pytest.mark.parametrize(
    "options, budget, warned",
    [(["--option", "population=5"], 5, True), (["--option", "population=4"], 5, False), ([], 10, False)],
)
def test_a_budget_within_the_population_is_one_warning_line(workdir, capsys, options, budget, warned):
    args = ["search", "--task", "nbgraph-cora", "--strategy", "evolution", "--budget", budget, "--store", "memory://"]
    code, out, err = nasw([*args, *options, "--quiet"], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    if warned:
        assert len(warnings) == 1 and "random sample" in warnings[0] and f"--budget {budget}" in warnings[0]
    else:
        assert warnings == []


@pytest.mark.filterwarnings("ignore")
def test_a_warm_start_shows_the_trust_in_its_sources_per_trial_and_at_the_end(workdir, capsys):
    pytest.importorskip("botorch")
    store = f"sqlite:///{workdir / 'mlflow.db'}"
    code, _, err = nasw(
        ["search", "--task", "nbgraph-photo", "--strategy", "random", "--budget", 8, "--store", store, "--quiet"],
        capsys,
    )
    assert code == 0, err
    args = ["search", "--task", "nbgraph-cs", "--strategy", "evolution", "--warm-start", "auto", "--budget", 4]
    code, out, err = nasw([*args, "--store", store], capsys)
    assert code == 0, err
    lines = trial_lines(err)
    assert len(lines) == 4 and all(re.search(r"trust nbgraph-photo \d\.\d\d", m[4]) for m in lines), err
    assert "final trust: nbgraph-photo" in err


def test_search_passes_a_name_only_when_one_is_given(workdir, capsys, monkeypatch):
    import workbench.search as search_pkg
    from workbench.errors import UserError

    seen: list[dict] = []

    def fake_new_search(*args, **kwargs):
        seen.append(kwargs)
        raise UserError("stopped by the test")

    monkeypatch.setattr(search_pkg, "new_search", fake_new_search)
    base = ["search", "--task", "nbgraph-cora", "--store", "memory://"]
    assert nasw([*base, "--name", "cora-evo-baseline"], capsys)[0] == 2
    assert nasw(base, capsys)[0] == 2
    assert seen[0]["name"] == "cora-evo-baseline" and "name" not in seen[1]


def test_strategy_is_a_choice_of_every_registered_strategy(capsys):
    from workbench.strategy.registry import strategy_names

    code, out, _ = nasw(["search", "--help"], capsys)
    help_text = " ".join(out.split())
    assert code == 0 and all(name in help_text for name in strategy_names())
    assert "full-fidelity-equivalent trainings" in help_text and "Example" in help_text
    code, _, err = nasw(["search", "--task", "digits", "--strategy", "evolutoin"], capsys)
    assert code == 2 and "unknown strategy 'evolutoin'" in err and "hillclimb" in err


def test_strategies_lists_each_strategy_with_its_options_and_defaults(capsys):
    from workbench.strategy.registry import strategy_names

    code, out, _ = nasw(["strategies"], capsys)
    assert code == 0
    listed = [line.split(":")[0] for line in out.splitlines() if not line.startswith(" ")]
    assert set(strategy_names()) <= set(listed)
    text = " ".join(out.split())
    assert "population=10" in text and "sample_size=3" in text and "n_init=5" in text
    assert "prior=" not in text  # what the search fills in itself is no user option
    assert max(len(line) for line in out.splitlines()) <= 80
    code, out, _ = nasw(["strategies", "evolution", "--format", "json"], capsys)
    (entry,) = json.loads(out)
    assert entry["strategy"] == "evolution" and entry["options"]["population"] == "10"
    code, _, err = nasw(["strategies", "magic"], capsys)
    assert code == 2 and "unknown strategy" in err


def test_every_command_has_an_example_in_its_help(capsys):
    from workbench.cli import cli

    names = [n for n in cli.commands if n != "task"] + ["task init"]
    for name in names:
        code, out, _ = nasw([*name.split(), "--help"], capsys)
        assert code == 0 and "nasw " + name in out.split("Example")[-1], (name, out)


def test_on_a_terminal_the_lines_scroll_above_a_progress_bar():
    import io

    from rich.console import Console

    from metastore import open_store
    from workbench.cli.running import _LiveProgress
    from workbench.evaluate.synthetic import SyntheticEvaluator
    from workbench.search import Search
    from workbench.space.registry import make_space
    from workbench.strategy.registry import make_strategy
    from workbench.task import parse_task_dict

    task = parse_task_dict(
        {"name": "synthetic", "kind": "trained", "dataset": {"loader": "digits"}, "space": {"kind": "chain"}}
    )
    space = make_space(**task.space)
    progress = _LiveProgress("val_accuracy")
    screen = io.StringIO()
    progress.console = Console(file=screen, force_terminal=True, width=120)
    progress.live = True
    strategy = make_strategy("random", space, seed=0)
    search = Search(open_store("memory://"), task, strategy, SyntheticEvaluator(), space, 3, progress=progress)
    search.start()
    progress.attach(search)
    search.run()
    progress.stop()
    text = screen.getvalue()
    assert "━" in text  # the bar
    for number in range(3):
        assert f"trial {number} [{number + 1}/3]  finished  val_accuracy " in text
    assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d trial", text)  # no timestamps on a terminal
