"""Tabular (NAS-Bench-Graph) evaluator, whole-table arrays and the nbgraph task files."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import tomllib

from workbench.data import nbgraph_tables as tables
from workbench.errors import TrialFailed, UserError
from workbench.evaluate.base import EvalResult, Evaluator
from workbench.evaluate.tabular import METRICS, TabularEvaluator, table_arrays
from workbench.space.genotype import Genotype
from workbench.space.nbgraph import NBGraphSpace
from workbench.space.registry import make_space

ROOT = Path(__file__).resolve().parents[2]


def g_of(links: list[int], ops: list[str]) -> Genotype:
    return Genotype.of("nbgraph-v1", {"links": links, "ops": ops})


def test_is_an_evaluator() -> None:
    ev = TabularEvaluator("cora")
    assert isinstance(ev, Evaluator)
    assert ev.objective == "val_accuracy"


@pytest.mark.parametrize("dataset", ["cora", "physics", "proteins"])
def test_metrics_match_the_raw_table(dataset: str) -> None:
    raw = tables.safe_load(tables.bench_path(dataset))  # read straight from the file
    ev = TabularEvaluator(dataset)
    space = ev.space
    rng = np.random.default_rng(1)
    for _ in range(25):
        g = space.sample(rng)
        row = raw[space.key_of(g)]
        res = ev.evaluate(g)
        assert isinstance(res, EvalResult)
        m = res.metrics
        assert set(m) == set(METRICS)
        assert m["val_accuracy"] == float(row["valid_perf"])
        assert m["test_accuracy"] == float(row["perf"])
        assert m["latency"] == float(row["latency"])
        assert m["params"] == round(float(row["para"]) * 1e6)
        assert m["train_seconds"] == pytest.approx(600.0 * m["latency"])
        assert all(math.isfinite(v) for v in m.values())
        assert res.state_dict is None
        point = {"val_accuracy": m["val_accuracy"], "test_accuracy": m["test_accuracy"]}
        assert res.curve == [point]


def test_equivalent_spelling_gets_the_same_row_and_seed_is_irrelevant() -> None:
    ev = TabularEvaluator("cora")
    a = ev.evaluate(g_of([0, 1, 2, 1], ["gcn", "gin", "fc", "cheb"]), seed=0)
    b = ev.evaluate(g_of([0, 1, 1, 2], ["gcn", "gin", "cheb", "fc"]), seed=5)
    assert a.metrics == b.metrics


def test_on_epoch_is_called_once() -> None:
    calls: list[tuple[int, dict[str, float]]] = []
    ev = TabularEvaluator("citeseer")
    g = ev.space.sample(np.random.default_rng(0))
    res = ev.evaluate(g, on_epoch=lambda e, m: calls.append((e, dict(m))))
    assert calls == [(0, res.curve[0])]


@pytest.mark.parametrize(
    ("dataset", "genotype"),
    [
        ("proteins", g_of([0, 0, 1, 2], ["gat", "gcn", "sage", "fc"])),  # op proteins lacks
        ("cora", g_of([0, 0, 1, 2], ["skip", "skip", "skip", "skip"])),
        ("cora", g_of([0, 0, 5, 2], ["gcn"] * 4)),
        ("cora", Genotype.of("nbgraph-v1", {"layers": []})),
        ("cora", Genotype.of("chain-v1", {"links": [0, 0, 1, 2], "ops": ["gcn"] * 4})),
    ],
)
def test_unknown_genotypes_fail_cleanly(dataset: str, genotype: Genotype) -> None:
    with pytest.raises(TrialFailed, match="not in the benchmark table") as info:
        TabularEvaluator(dataset).evaluate(genotype)
    assert info.value.reason.startswith("not in the benchmark table")


def test_bad_settings_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown objective 'accuracy'"):
        TabularEvaluator("cora", objective="accuracy")
    with pytest.raises(UserError, match="unknown NAS-Bench-Graph dataset"):
        TabularEvaluator("mnist")


def test_other_objectives() -> None:
    ev = TabularEvaluator("photo", objective="latency")
    g = ev.space.sample(np.random.default_rng(2))
    assert ev.evaluate(g).metrics[ev.objective] > 0


@pytest.mark.parametrize("dataset", tables.DATASETS)
def test_table_arrays_align_with_the_pool(dataset: str) -> None:
    arrays = table_arrays(dataset)
    space = NBGraphSpace(dataset)
    n = len(space.pool())
    assert all(a.shape == (n,) and a.dtype == np.float64 and not a.flags.writeable for a in arrays)
    val, test, latency, params = arrays  # plain unpacking works
    assert np.all((val > 0) & (val <= 1)) and np.all((test > 0) & (test <= 1))
    assert np.all(latency > 0) and np.all(params > 0)
    ev = TabularEvaluator(dataset)
    for i in np.random.default_rng(0).choice(n, size=10, replace=False):
        m = ev.evaluate(space.pool()[i]).metrics
        assert (val[i], test[i], latency[i], params[i]) == (
            m["val_accuracy"],
            m["test_accuracy"],
            m["latency"],
            m["params"],
        )
        assert arrays.train_seconds[i] == pytest.approx(m["train_seconds"])


def test_table_arrays_are_cached_and_fast() -> None:
    table_arrays("arxiv")
    start = time.perf_counter()
    for dataset in tables.DATASETS:
        table_arrays(dataset)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    arrays = table_arrays("arxiv")
    assert time.perf_counter() - start < 0.01 and arrays is table_arrays("arxiv")
    assert warm < 10.0
    best = int(np.argmax(arrays.val_accuracy))
    assert (
        NBGraphSpace("arxiv").pool()[best].key
        == NBGraphSpace.genotype_of_key(int(tables.table_keys("arxiv")[best])).key
    )


@pytest.mark.parametrize("dataset", tables.DATASETS)
def test_task_file(dataset: str) -> None:
    path = ROOT / "tasks" / f"nbgraph-{dataset}.toml"
    task = tomllib.loads(path.read_text())
    assert task["name"] == f"nbgraph-{dataset}"
    assert task["kind"] == "tabular"
    assert task["dataset"] == {"loader": "nbgraph", "name": dataset}
    assert task["metric"] == {"objective": "val_accuracy", "report": "test_accuracy"}
    assert task["space"] == {"kind": "nbgraph", "dataset": dataset}
    meta = task["meta_features"]
    assert {"nodes", "edges", "features", "classes"} <= set(meta)
    assert all(isinstance(v, (int, float)) and v > 0 for v in meta.values())
    space = make_space(task["space"]["kind"], dataset=task["space"]["dataset"])
    assert len(space) == (2021 if dataset == "proteins" else 26206)
    assert f"{len(space):,}" in task["description"]
