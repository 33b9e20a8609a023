"""Plots, reports, comparisons and exports of real (tiny) searches, rendered and checked."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers import nasw

from workbench.errors import NotFound

N_TRIALS = 3


def write_csv(path: Path, seed: int = 0) -> None:
    """60 rows, 3 well-separated classes named by text, 5 numeric features."""
    rng = np.random.default_rng(seed)
    lines = ["a,b,c,d,e,species"]
    for k, name in enumerate(["setosa", "versicolor", "virginica"]):
        for _ in range(20):
            lines.append(",".join(f"{v:.4f}" for v in rng.normal(2.0 * k, 0.7, 5)) + f",{name}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A task made from a CSV, a multi-objective evolution search and a random search on it."""
    root = tmp_path_factory.mktemp("reports")
    write_csv(root / "flowers.csv")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("NASW_STORE", f"sqlite:///{root / 'runs' / 'mlflow.db'}")
        mp.delenv("NASW_TASKS", raising=False)
        code, out, err = nasw(["task", "init", "flowers", "--data", "flowers.csv"])
        assert code == 0, err
        task_file = root / "tasks" / "flowers.toml"
        text = task_file.read_text()
        text = text.replace("epochs = 30", "epochs = 2").replace("max_layers = 4", "max_layers = 2")
        task_file.write_text(text)
        code, out, err = nasw(
            [
                "search",
                "--task",
                "flowers",
                "--strategy",
                "evolution",
                "--budget",
                N_TRIALS,
                "--option",
                "objectives=val_accuracy,-params",
                "--json",
            ]
        )
        assert code == 0, err
        first = json.loads(out)["search_id"]
        code, out, err = nasw(
            ["search", "--task", "flowers", "--strategy", "random", "--budget", 2, "--seed", 1, "--json"]
        )
        assert code == 0, err
        second = json.loads(out)["search_id"]
        yield {"root": root, "first": first, "second": second, "store": os.environ["NASW_STORE"]}


@pytest.fixture
def in_root(searched, monkeypatch):
    monkeypatch.chdir(searched["root"])
    monkeypatch.setenv("NASW_STORE", searched["store"])
    return searched["root"]


def check_png(data: bytes, min_size=(200, 150)) -> None:
    """A valid PNG of a sensible size that is not blank."""
    from PIL import Image

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.width >= min_size[0] and im.height >= min_size[1]
        pixels = np.asarray(im.convert("L"), dtype=float)
    assert pixels.var() > 0


class Page(HTMLParser):
    """Tags, tables (as lists of rows of cell text) and image sources of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self._cell: list[str] | None = None
        self._stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(a.get("src", ""))
        for key in ("href", "src"):
            if key in a and tag != "img":
                self.links.append(a[key])
        if tag not in ("img", "meta", "br"):
            self._stack.append(tag)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_search_attaches_every_plot_and_the_report(searched):
    from mlflow.tracking import MlflowClient

    from metastore.mlflow_setup import tracking_uri_for

    client = MlflowClient(tracking_uri=tracking_uri_for(searched["store"]))
    names = {a.path for a in client.list_artifacts(searched["first"], "plots")}
    assert {
        "plots/best_so_far.png",
        "plots/learning_curves.png",
        "plots/architecture.png",
        "plots/pareto_front.png",
    } <= names
    assert "report/report.html" in {a.path for a in client.list_artifacts(searched["first"], "report")}
    local = client.download_artifacts(searched["first"], "plots/architecture.png", str(searched["root"]))
    check_png(Path(local).read_bytes())
    # the single-objective search has no Pareto front
    second = {a.path for a in client.list_artifacts(searched["second"], "plots")}
    assert "plots/best_so_far.png" in second and "plots/pareto_front.png" not in second


def test_report_is_self_contained_html_with_tables_and_plots(in_root, searched):
    code, out, err = nasw(["report", searched["first"][:8], "--out", "report.html"])
    assert code == 0, err
    text = (in_root / "report.html").read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    page.close()
    assert page.tags[0] == "html" and "style" in page.tags
    assert "script" not in page.tags and "link" not in page.tags and not page.links
    assert "http://" not in text and "https://" not in text
    summary, trials = page.tables
    fields = {row[0]: row[1] for row in summary}
    assert fields["task"] == "flowers" and fields["strategy"] == "evolution"
    assert fields["budget"] == str(N_TRIALS) and fields["trials"].startswith(str(N_TRIALS))
    assert float(fields["best val_accuracy"]) > 0.5 and float(fields["best test_accuracy"]) > 0.3
    assert fields["objectives"] == "val_accuracy, -params"
    assert trials[0][:3] == ["#", "trial", "state"] and len(trials) == 1 + N_TRIALS
    assert [row[0] for row in trials[1:]] == [str(i) for i in range(N_TRIALS)]
    assert len(page.images) >= 4  # best so far, learning curves, Pareto front, architecture
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        check_png(base64.b64decode(src.split(",", 1)[1]))


def test_export_csv_and_json_hold_every_trial(in_root, searched):
    sid = searched["first"]
    code, shown, _ = nasw(["show", sid, "--format", "json"])
    ids = [t["trial_id"] for t in json.loads(shown)["trials"]]
    assert len(ids) == N_TRIALS

    code, out, err = nasw(["export", sid])
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["trial_id"] for r in rows] == ids and [r["number"] for r in rows] == ["0", "1", "2"]
    assert all(r["state"] == "finished" and float(r["metrics.val_accuracy"]) >= 0 for r in rows)
    assert all(json.loads(r["genotype"])["space"] == "chain-v1" for r in rows)
    assert any(k.startswith("params.layers.0.") for k in rows[0])

    code, _, err = nasw(["export", sid[:10], "--out", "trials.json"])
    assert code == 0 and "wrote 3 trials" in err
    doc = json.loads((in_root / "trials.json").read_text())
    assert [t["trial_id"] for t in doc] == ids
    assert all({"number", "state", "metrics", "params", "genotype", "reason"} <= set(t) for t in doc)

    code, out, _ = nasw(["export", sid, "--format", "json"])
    assert [t["trial_id"] for t in json.loads(out)] == ids


def test_compare_prints_a_table_and_writes_one_plot(in_root, searched):
    code, out, err = nasw(["compare", searched["first"][:8], searched["second"][:8], "--out", "cmp.png"])
    assert code == 0, err
    assert searched["first"][:12] in out and searched["second"][:12] in out
    assert "evolution" in out and "random" in out and "flowers" in out
    check_png((in_root / "cmp.png").read_bytes())
    code, out, err = nasw(["compare", searched["first"], searched["second"], "--format", "json", "--out", "c2.png"])
    rows = json.loads(out)["searches"]
    assert [r["budget"] for r in rows] == [N_TRIALS, 2] and [r["trials"] for r in rows] == [N_TRIALS, 2]
    assert all(r["best_objective"] is not None and r["wall_seconds"] > 0 for r in rows)


@pytest.mark.parametrize(
    "args, message",
    [
        (["report", "ffffffff"], "no search"),
        (["export", "ffffffff"], "no search"),
        (["compare", "ffffffff"], "no search"),
        (["compare"], "SEARCH_IDS"),
        (["export", "x", "--format", "xml"], "--format"),
    ],
)
def test_bad_input_is_one_line(in_root, args, message):
    code, out, err = nasw(args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_metric_history_on_the_mlflow_store(searched):
    from metastore import open_store

    store = open_store(searched["store"])
    trial = store.trials(searched["first"])[0]
    points = store.metric_history(trial.trial_id, "val_accuracy")
    assert [s for s, _ in points][:2] == [0, 1]
    assert store.metric_history(trial.trial_id, "no_such_metric") == []
    with pytest.raises(NotFound):
        store.metric_history("f" * 32, "val_accuracy")


def test_source_weights_and_plots_from_a_memory_store(tmp_path):
    """Warm-start weights recorded on the search (as a search writes them) are drawn; every plot is
    a valid PNG."""
    from metastore import open_store
    from workbench.report import render_html, render_plots, summarize
    from workbench.space.chain import ChainSpace

    store = open_store("memory://reports-weights")
    space = ChainSpace(max_layers=3, widths=[8], dense_widths=[16])
    sid = store.start_search(
        "toy",
        strategy="bo",
        space=space.name,
        seed=0,
        objective="val_accuracy",
        spec={"budget": 4, "task": {"metric": {"report": "test_accuracy"}}},
        tags={"warm_start": "digits,mnist1d"},
    )
    rng = np.random.default_rng(0)
    for i in range(4):
        g = space.sample(rng)
        tid = store.start_trial(sid, g.to_json(), g.key)
        for epoch in range(3):
            store.log_metrics(tid, {"val_accuracy": 0.5 + 0.1 * epoch + 0.01 * i}, step=epoch)
        store.finish_trial(tid, state="finished", metrics={"val_accuracy": 0.7 + 0.01 * i, "test_accuracy": 0.6})
    store.set_tags(
        sid,
        {
            "source_weights": json.dumps(
                {"digits": [0.8 - 0.1 * i for i in range(4)], "mnist1d": [0.1 * i for i in range(4)]}
            )
        },
    )
    store.finish_search(sid)
    summary = summarize(store, sid, input_shape=(1, 8, 8), n_classes=10)
    assert summary.warm_start == "digits,mnist1d"
    assert sorted(summary.source_weights) == ["digits", "mnist1d"] and len(summary.source_weights["digits"]) == 4
    files = render_plots(summary, tmp_path)
    assert {"best_so_far", "learning_curves", "architecture", "source_weights"} <= set(files)
    assert "progress" not in files  # best_so_far holds it (issue 21: no duplicate plot)
    for path in files.values():
        check_png(path.read_bytes())
    html = render_html(summary, files)
    assert "digits,mnist1d" in html and html.count("data:image/png;base64,") == len(files)
