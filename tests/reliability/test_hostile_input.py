"""Hostile input: what others put in a shared store, a benchmark table or a task file is data.

* Weights are never unpickled freely: a planted pickle whose ``__reduce__`` would create a
  marker file never runs, through ``load_weights``, a hill-climbing child or ``nasw resume``.
* Genotypes and search specs read back from a store are validated before use: planted trials
  with malformed, foreign or absurd genotypes do not crash ``nasw show`` or ``nasw resume``, are
  never built into a network, and are never the best trial of a resumed search.
* ``nasw ui`` listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import pytest
import torch
from helpers import nasw, weights_file

from metastore import open_store

from .conftest import TINY_TOML


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if the payload runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_files(marker: Path) -> dict[str, bytes]:
    """The same payload in every form a weights file could take."""
    out = {
        "pickle-protocol-2": pickle.dumps(Payload(marker), protocol=2),
        "pickle-protocol-5": pickle.dumps({"w": Payload(marker)}, protocol=5),
    }
    for name, obj in (
        ("torch-zip", Payload(marker)),
        ("torch-zip-in-a-state-dict", {"weight": torch.zeros(2), "bias": Payload(marker)}),
    ):
        buf = io.BytesIO()
        torch.save(obj, buf)
        out[name] = buf.getvalue()
    buf = io.BytesIO()
    torch.save({"weight": Payload(marker)}, buf, _use_new_zipfile_serialization=False)
    out["torch-legacy"] = buf.getvalue()
    return out


def test_the_payload_is_live(tmp_path):
    """Control: with an unrestricted unpickler the payload does create the marker."""
    marker = tmp_path / "pwned"
    pickle.loads(malicious_files(marker)["pickle-protocol-2"])
    assert marker.exists()


def plant(store, trial_id: str, data: bytes) -> None:
    if store.uri.startswith("memory://"):
        store._state.artifacts.setdefault(trial_id, {})["weights/model.pt"] = data
        return
    path = weights_file(store, trial_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
def test_load_weights_never_runs_a_planted_pickle(tmp_path, shared_uri, backend):
    marker = tmp_path / "pwned"
    uri = shared_uri if backend == "sqlite" else "memory://"
    store = open_store(uri)
    sid = store.start_search("t", strategy="random", space="chain-v1", seed=0, objective="val_accuracy")
    tid = store.start_trial(sid, '{"space":"chain-v1","spec":{}}', "k")
    store.save_weights(tid, {"w": torch.ones(2)})
    store.finish_trial(tid, state="finished", metrics={"val_accuracy": 0.5})
    for name, data in malicious_files(marker).items():
        plant(store, tid, data)
        assert store.load_weights(tid) is None, name
        assert not marker.exists(), f"the {name} payload ran"


def hillclimb_toml() -> str:
    return TINY_TOML.replace("max_layers = 2", "max_layers = 4")


def test_nasw_resume_of_a_hill_climb_never_runs_planted_weights(tmp_path, shared_uri, capsys, monkeypatch):
    """Every finished trial's weights replaced by the payload; the resumed hill climb's children
    inherit from those trials: they train from scratch with a note, and the payload never runs."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hc.toml").write_text(hillclimb_toml())
    uri = shared_uri
    marker = tmp_path / "pwned"
    code, out, err = nasw(
        [
            "search",
            "--task",
            "hc.toml",
            "--strategy",
            "hillclimb",
            "--budget",
            2,
            "--store",
            uri,
            "--option",
            "initial=1",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    sid = json.loads(out)["search_id"]
    store = open_store(uri)
    before = store.trials(sid)
    files = list(malicious_files(marker).values())
    for i, t in enumerate(before):
        plant(store, t.trial_id, files[i % len(files)])
    code, out, err = nasw(["resume", sid, "--budget", 4, "--store", uri, "--json"], capsys)
    assert code == 0, err
    assert not marker.exists()
    trials = store.trials(sid)
    assert len(trials) == 4 and trials[:2] == before
    children = [t for t in trials[2:] if t.parent_trial]
    assert children, "the hill climb proposed no child"
    for t in children:
        assert t.state == "finished"
        assert "trained from scratch" in t.tags["nasw.note.weights"]


# -- genotypes read back from a shared store ------------------------------------------------------
def absurd_chain(width: int = 10**9) -> str:
    return json.dumps(
        {"space": "chain-v1", "spec": {"layers": [{"op": "conv", "kernel": 3, "width": width, "act": "relu"}]}}
    )


PLANTED = {
    "malformed JSON": "{not json",
    "not an object": "[1, 2, 3]",
    "another space": json.dumps(
        {"space": "nbgraph-v1", "spec": {"links": [0, 1, 1, 2], "ops": ["gat", "fc", "graph", "gcn"]}}
    ),
    "an unknown space": json.dumps({"space": "os.system", "spec": "rm -rf /"}),
    "absurd width": absurd_chain(),
    "absurd width, only in genotype.json": json.dumps(
        {
            "space": "chain-v1",
            "spec": {"layers": [{"op": "conv", "kernel": 3, "width": 10**9, "act": "relu"}], "padding": "x" * 9000},
        }
    ),
    "deep nesting": "[" * 5000 + "]" * 5000,
    "empty": "",
}


@pytest.fixture(scope="module")
def shared_uri(tmp_path_factory) -> str:
    """One SQLite store for the tests of this module (creating one costs seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'runs' / 'mlflow.db'}"


@pytest.fixture
def planted_search(tmp_path, shared_uri):
    """A finished 2-trial search with planted finished trials (better metrics than any real one)
    and one planted RUNNING trial, on a SQLite store."""
    from workbench.search import new_search

    from .conftest import tiny_task

    uri = shared_uri
    store = open_store(uri)
    search = new_search(store, tiny_task(), "random", 2, 0)
    search.run()
    sid = search.search_id
    real = store.trials(sid)
    planted = {}
    for i, (what, text) in enumerate(PLANTED.items()):
        tid = store.start_trial(sid, text, f"planted{i}", params={"width": 10**9})
        store.finish_trial(tid, state="finished", metrics={"val_accuracy": 0.999, "test_accuracy": 0.999})
        planted[tid] = what
    running = store.start_trial(sid, "{not json", "planted-running")
    return {"uri": uri, "sid": sid, "store": store, "real": real, "planted": planted, "running": running}


def test_nasw_show_and_export_survive_planted_genotypes(planted_search, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, sid = planted_search["uri"], planted_search["sid"]
    for args in (
        ["show", sid],
        ["show", sid, "--format", "json"],
        ["export", sid],
        ["export", sid, "--format", "json"],
        ["ls"],
        ["compare", sid, "--out", "c.png"],
        ["report", sid, "--out", "r.html"],
        *[["lineage", tid] for tid in planted_search["planted"]],
        *[["lineage", tid, "--format", "json"] for tid in planted_search["planted"]],
    ):
        code, out, err = nasw([*args, "--store", uri], capsys)
        assert code == 0, (args, err)
        assert "Traceback" not in out + err
    code, out, _ = nasw(["show", sid, "--store", uri, "--format", "json"], capsys)
    shown = {t["trial_id"]: t for t in json.loads(out)["trials"]}
    assert (
        shown[next(t for t, w in planted_search["planted"].items() if w == "malformed JSON")]["genotype"] == "{not json"
    )


def test_resume_never_builds_or_uses_planted_genotypes(planted_search, capsys, monkeypatch):
    from workbench.nn import build

    uri, sid, store = planted_search["uri"], planted_search["sid"], planted_search["store"]
    built = []
    original = build.build_model

    def spy(genotype, *a, **k):
        built.append(genotype.to_json())
        return original(genotype, *a, **k)

    monkeypatch.setattr(build, "build_model", spy)
    from workbench.evaluate import trainer

    monkeypatch.setattr(trainer, "build_model", spy)
    n = len(planted_search["real"]) + len(planted_search["planted"]) + 1
    code, out, err = nasw(["resume", sid, "--budget", n + 2, "--store", uri, "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["n_trials"] == n + 2
    assert result["best"]["trial_id"] not in planted_search["planted"]
    assert result["best"]["metrics"]["val_accuracy"] < 0.999
    assert store.search(sid).summary["best_val_accuracy"] < 0.999
    assert all("1000000000" not in text for text in built)  # the absurd genotype was never built
    assert "not validate" in store.search(sid).tags["nasw.note.unusable_trials"]
    trials = {t.trial_id: t for t in store.trials(sid)}
    assert trials[planted_search["running"]].state == "failed"
    for t in planted_search["real"]:
        assert trials[t.trial_id] == t  # the real trials are untouched
    for tid in planted_search["planted"]:
        assert trials[tid].state == "finished"  # the store is not rewritten: resume only skips them


def test_a_child_of_a_planted_absurd_parent_is_never_built_at_that_size(shared_uri):
    """Cross-task inheritance rebuilds the parent's network: an absurd planted parent is refused
    by the size check (on the meta device) and the child trains from scratch with a note."""
    from workbench.search import new_search
    from workbench.space.genotype import Genotype
    from workbench.strategy.base import Proposal

    from .conftest import tiny_task

    store = open_store(shared_uri)
    other = store.start_search("other-task", strategy="random", space="chain-v1", seed=0, objective="val_accuracy")
    parent = store.start_trial(other, absurd_chain(), "absurd")
    store.save_weights(parent, {"layers.0.weight": torch.zeros(1)})
    store.finish_trial(parent, state="finished", metrics={"val_accuracy": 0.999})
    search = new_search(store, tiny_task(), "random", 1, 0)
    search.run()
    g = Genotype.from_json(store.trials(search.search_id)[0].genotype_json)
    proposal = Proposal(g, parent_trial=parent)
    obs = search.record(search.execute(search.start_trial(proposal, 1)), g)
    child = store.trial(obs.trial_id)
    assert child.state == "finished"
    note = child.tags["nasw.note.weights"]
    assert "parameters, over the limit" in note and "trained from scratch" in note


def test_build_model_refuses_absurd_networks_before_allocating():
    from workbench.errors import InvalidGenotype
    from workbench.nn.build import build_model
    from workbench.space.genotype import Genotype

    with pytest.raises(InvalidGenotype, match="over the limit"):
        build_model(Genotype.from_json(absurd_chain()), (1, 8, 8), 10)


@pytest.mark.parametrize(
    "kind, settings",
    [
        ("chain", {"max_layers": 10**9}),
        ("chain", {"widths": [10**9]}),
        ("dag", {"width": 10**9}),
        ("cell", {"cells_per_stage": 10**9}),
        ("cell", {"stages": 10**6}),
        ("chain", {"widths": ["8; rm -rf /"]}),
    ],
)
def test_absurd_space_settings_read_back_from_a_store_are_refused(kind, settings):
    from workbench.errors import UserError
    from workbench.space.registry import make_space

    with pytest.raises(UserError):
        make_space(kind, **settings)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"task": "not a table", "strategy": "random", "budget": 3}, "must be a table"),
        (
            {
                "task": {
                    "name": "x",
                    "kind": "trained",
                    "dataset": {"loader": "digits"},
                    "space": {"kind": "chain"},
                    "exec": "__import__('os')",
                },
                "strategy": "random",
                "budget": 3,
            },
            "unknown keys",
        ),
        ({"strategy": "random"}, "no usable spec"),
        ({"task": None, "strategy": "os.system", "budget": 3}, ""),
        (
            {
                "task": {"name": "x", "dataset": {"loader": "digits"}, "space": {"kind": "chain", "max_layers": 10**9}},
                "strategy": "random",
                "budget": 3,
            },
            "max_layers",
        ),
        (
            {
                "task": {"name": "x", "dataset": {"loader": "digits"}, "space": {"kind": "chain"}},
                "strategy": "random",
                "budget": "many",
            },
            "no usable spec",
        ),
        (
            {
                "task": {"name": "x", "dataset": {"loader": "digits"}, "space": {"kind": "chain"}},
                "strategy": "random",
                "strategy_options": {"__class__": 1},
                "budget": 3,
            },
            "option",
        ),
    ],
)
def test_a_planted_search_spec_is_one_clear_error_on_resume(shared_uri, capsys, spec, message):
    uri = shared_uri
    store = open_store(uri)
    sid = store.start_search("x", strategy="random", space="chain-v1", seed=0, objective="val_accuracy", spec=spec)
    code, out, err = nasw(["resume", sid, "--store", uri], capsys)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert store.trials(sid) == []


# -- nasw ui ---------------------------------------------------------------------------------------
def test_nasw_ui_listens_on_localhost_by_default(tmp_path, capsys, monkeypatch):
    import subprocess

    from workbench.cli import ui_cmd

    (host,) = [p for p in ui_cmd.params if p.name == "host"]
    assert host.default == "127.0.0.1"
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    code, out, _ = nasw(["ui", "--store", f"sqlite:///{tmp_path / 'mlflow.db'}"], capsys)
    assert code == 0
    (cmd,) = calls
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "http://127.0.0.1:5000/" in out


# -- benchmark tables ------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["pickle-protocol-2", "pickle-protocol-5", "truncated"])
def test_a_tampered_benchmark_table_is_refused_and_never_runs(tmp_path, monkeypatch, form):
    from workbench.data import nbgraph_tables as tables
    from workbench.errors import UserError

    marker = tmp_path / "pwned"
    path = tmp_path / "cora.bench"
    data = malicious_files(marker)["pickle-protocol-2"] if form == "truncated" else malicious_files(marker)[form]
    path.write_bytes(data[: len(data) // 2] if form == "truncated" else data)
    monkeypatch.setattr(tables, "_TABLES", {})
    monkeypatch.setattr(tables, "bench_path", lambda dataset: path)
    with pytest.raises(UserError, match="NAS-Bench-Graph table 'cora' at .* is unreadable"):
        tables.load_table("cora")
    assert not marker.exists()
