"""Reading results in a terminal: ``nasw ls`` tells searches apart and filters them, ``nasw show``
marks the best trial and shows early stops, rungs and every objective, ``nasw compare`` and
``nasw tasks`` stay readable at 80 columns, and the short architecture form never makes two
different networks look the same."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest
from helpers import nasw

from metastore import open_store
from metastore.schema import TAG_FIDELITY, TAG_STOPPED_EARLY
from workbench.space.genotype import Genotype

CHAIN = "chain-v1"


def chain(*layers: dict) -> str:
    return Genotype.of(CHAIN, {"layers": list(layers)}).to_json()


CONV = {"op": "conv", "kernel": 3, "width": 16, "act": "relu"}
DENSE = {"op": "dense", "width": 64, "act": "relu"}


@pytest.fixture
def store(workdir, monkeypatch):
    """A named in-memory store the commands open through ``NASW_STORE``."""
    uri = f"memory://browse-{uuid.uuid4().hex}"
    monkeypatch.setenv("NASW_STORE", uri)
    return open_store(uri)


def add_search(store, *, task="tiny", strategy="evolution", state="finished", age=0.0, spec=None, trials=(), **kw):
    """A recorded search with ``trials``: (genotype JSON, state, metrics, tags) each."""
    spec = {"budget": 20, "strategy_options": {}, **(spec or {})}
    sid = store.start_search(
        task, strategy=strategy, space=CHAIN, seed=kw.get("seed", 0), objective="val_accuracy", spec=spec
    )
    for genotype, tstate, metrics, tags in trials:
        tid = store.start_trial(sid, genotype, uuid.uuid4().hex, tags=tags)
        store.finish_trial(tid, state=tstate, metrics=metrics, reason="out of memory" if tstate == "failed" else None)
    best = max((m.get("val_accuracy", 0) for _, s, m, _ in trials if s == "finished"), default=None)
    store.finish_search(sid, state=state, summary={} if best is None else {"best_val_accuracy": best})
    store._state.searches[sid].start_time = time.time() - age  # an older search
    return sid


# -- the short architecture form -------------------------------------------------------------------
def test_different_genotypes_never_describe_alike(any_space):
    """Property: over many samples and mutations of each space, genotypes with different keys
    have different short forms (the form every table, log line and report shows)."""
    rng = np.random.default_rng(0)
    seen: dict[str, str] = {}
    g = any_space.sample(rng)
    for i in range(600):
        g = any_space.sample(rng) if i % 3 == 0 else any_space.mutate(g, rng)
        text = type(any_space).describe(g)
        assert seen.setdefault(text, g.key) == g.key, f"{text!r} describes two different genotypes"
    assert len(seen) > 50


def test_a_chain_s_activations_are_in_its_short_form():
    from workbench.space.chain import ChainSpace

    relu = Genotype.of(CHAIN, {"layers": [CONV, DENSE]})
    gelu = Genotype.of(CHAIN, {"layers": [{**CONV, "act": "gelu"}, DENSE]})
    assert ChainSpace.describe(relu) == "conv3x16 > dense64"  # ReLU, the usual one, is left out
    assert ChainSpace.describe(gelu) == "conv3x16:gelu > dense64"


# -- nasw ls ---------------------------------------------------------------------------------------
def test_ls_shows_what_sets_searches_apart_and_filters_them(store, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    warm = {"mode": "auto", "sources": {"nbgraph-photo": 0.42, "nbgraph-cs": 0.1}, "prior": []}
    ok = [(chain(CONV, DENSE), "finished", {"val_accuracy": 0.9}, {})]
    old = add_search(store, strategy="random", age=3 * 86400, trials=ok)
    evo = add_search(
        store,
        spec={"strategy_options": {"population": 5, "objectives": ["val_accuracy", "-latency"]}},
        trials=ok,
    )
    bo = add_search(
        store,
        task="a-task-with-a-rather-long-name-indeed",
        strategy="bo",
        state="killed",
        spec={"budget": 8, "scheduler": {"name": "sh", "options": {"eta": 3}}, "warm_start": warm},
    )
    code, out, err = nasw(["ls"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = {sid: i for i, line in enumerate(lines) for sid in (old, evo, bo) if line.startswith(sid[:8])}
    assert list(rows) == [bo, evo, old]  # newest first

    def below(i: int) -> str:  # the indented lines under a search's row
        end = next(j for j in range(i + 1, len(lines) + 1) if j == len(lines) or not lines[j].startswith(" "))
        return " ".join(" ".join(lines[i + 1 : end]).split())

    setup = {sid: below(i) for sid, i in rows.items()}
    assert "population=5" in setup[evo] and "objectives val_accuracy,-latency" in setup[evo]
    assert "budget 8 (compute)" in setup[bo] and "scheduler sh" in setup[bo]
    assert "warm start auto: nbgraph-photo 0.42, nbgraph-cs 0.10" in setup[bo]
    assert "{" not in out and "\\" not in out  # words, not escaped JSON

    def listed(*args: str) -> list[str]:
        code, out, err = nasw(["ls", *args, "--format", "json"], capsys)
        assert code == 0, err
        return [s["search_id"] for s in json.loads(out)]

    assert listed("--strategy", "bo") == [bo]
    assert listed("--state", "killed") == [bo]
    assert listed("--since", "2d") == [bo, evo]
    assert listed("--last", "1") == [bo]
    assert listed("--strategy", "random", "--since", "1w") == [old]
    code, out, _ = nasw(["ls", "--strategy", "tpe"], capsys)
    assert code == 0 and "no searches matching the filters" in out
    code, _, err = nasw(["ls", "--since", "yesterday"], capsys)
    assert code == 2 and "--since" in err
    code, out, _ = nasw(["show", bo[:6], "--format", "json"], capsys)  # ids stay prefix-matchable
    assert json.loads(out)["search_id"] == bo


# -- nasw show -------------------------------------------------------------------------------------
def test_show_marks_the_best_trial_and_shows_early_stops_and_rungs(store, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    long_net = chain(*([{**CONV, "width": 128, "act": "gelu"}] * 5), DENSE)
    stopped = {TAG_FIDELITY: json.dumps({"epochs": 3, "planned_epochs": 30, "full": False, "rung": 0})}
    stopped[TAG_STOPPED_EARLY] = "lc"
    rung1 = {TAG_FIDELITY: json.dumps({"epochs": 30, "full": True, "rung": 1})}
    sid = add_search(
        store,
        trials=[
            (long_net, "finished", {"val_accuracy": 0.80, "test_accuracy": 0.78, "train_seconds": 12.5}, {}),
            (chain(CONV, DENSE), "finished", {"val_accuracy": 0.95, "test_accuracy": 0.90}, stopped),
            (chain(DENSE), "finished", {"val_accuracy": 0.91, "test_accuracy": 0.89, "params": 12345}, rung1),
            (chain(CONV), "failed", {}, {}),
        ],
    )
    code, out, err = nasw(["show", sid], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    trials = [line for line in lines if line[3:].split()[:1] in (["0"], ["1"], ["2"], ["3"])]
    assert len(trials) == 4  # one line each: nothing wraps
    by_no = {line[3:].split()[0]: line for line in trials}
    # the best is the best full-fidelity trial (not the one stopped early), marked by a symbol
    assert by_no["2"].startswith("*") and not any(by_no[n].startswith("*") for n in "013")
    assert "stopped 3/30" in by_no["1"] and "finished" in by_no["2"]
    header = next(line for line in lines if line.split()[:2] == ["no", "trial"])
    assert "rung" in header
    assert by_no["2"].split()[-2:] == ["1", "dense64"] and "12k" in by_no["2"]
    assert "failed" in by_no["3"] and "out of" in by_no["3"]  # why it failed, as far as it fits
    assert by_no["0"].endswith("…")  # a long architecture is cut, not wrapped
    assert any("* best trial" in line for line in lines)
    code, out, _ = nasw(["show", sid, "--wide"], capsys)
    assert "conv3x128:gelu > conv3x128:gelu > conv3x128:gelu > conv3x128:gelu" in " ".join(out.split())


def test_show_has_a_column_per_objective_and_marks_the_pareto_front(store, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    sid = add_search(
        store,
        spec={"strategy_options": {"objectives": ["val_accuracy", "-latency"]}},
        trials=[
            (chain(CONV), "finished", {"val_accuracy": 0.9, "latency": 0.004}, {}),
            (chain(DENSE), "finished", {"val_accuracy": 0.8, "latency": 0.001}, {}),
            (chain(CONV, DENSE), "finished", {"val_accuracy": 0.7, "latency": 0.005}, {}),
        ],
    )
    code, out, err = nasw(["show", sid], capsys)
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.split()[:2] == ["no", "trial"])
    assert "val acc" in header and "latency" in header
    rows = {line[3:].split()[0]: line for line in out.splitlines() if line[3:4].isdigit()}
    assert rows["0"].startswith("*") and rows["1"].startswith("P") and rows["2"][:1] == " "
    assert "0.001" in rows["1"] and "0.004" in rows["0"]


# -- nasw compare and nasw tasks -------------------------------------------------------------------
def test_compare_shows_the_warm_start_in_words_at_80_columns(store, capsys, monkeypatch, workdir):
    monkeypatch.setenv("COLUMNS", "80")
    warm = {"mode": "auto", "sources": {"nbgraph-photo": 0.42}, "prior": [chain(CONV)]}
    ok = [(chain(CONV, DENSE), "finished", {"val_accuracy": 0.9, "test_accuracy": 0.85}, {})]
    cold = add_search(store, trials=ok)
    warmed = add_search(store, strategy="bo", spec={"warm_start": warm}, trials=ok)
    code, out, err = nasw(["compare", cold[:8], warmed[:8], "--out", str(workdir / "c.png")], capsys)
    assert code == 0, err
    lines = [line for line in out.splitlines() if not line.startswith("best-so-far curves: ")]  # a path
    assert max(len(line) for line in lines) <= 80, out
    row = next(line for line in lines if line.startswith(warmed[:12]))
    assert row.split()[1:5] == ["tiny", "bo", "1", "0.9000"]
    text = " ".join(out.split())
    assert "warm start auto: nbgraph-photo 0.42" in text and "chain-v1" not in text and '\\"' not in text


def test_tasks_is_one_line_per_task_at_80_columns(capsys, monkeypatch):
    from workbench.task import scan_tasks

    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = nasw(["tasks"], capsys)
    tasks, broken = scan_tasks()
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 0 and len(lines) == 2 + len(tasks) + len(broken)
    assert max(len(line) for line in lines) <= 80
    code, wide, _ = nasw(["tasks", "--wide"], capsys)
    assert tasks[0].description.split()[-1] in wide  # whole descriptions on request
