"""Plots and report as people read them (issue 21, item 7): no legend over the trials, no duplicate
plot, nothing drawn on a tabular task that says nothing (one-dot learning curves, a genotype's
JSON as a picture), "(minimised)" on a Pareto axis, numbers printed as numbers."""

from __future__ import annotations

import json

import pytest

from metastore import open_store
from workbench import plots
from workbench.report import _num, render_html, render_plots, summarize
from workbench.search.assemble import new_search
from workbench.task import load_task


@pytest.mark.parametrize(
    ("value", "text"),
    [(30.0, "30"), (30, "30"), (0.0, "0"), (0.91234, "0.9123"), (0.000231, "0.000231"), (3.2e-6, "3.2e-06")],
)
def test_numbers_read_as_numbers(value, text):
    assert _num(value) == text
    assert _num(float("nan")) == "-" and _num(None) == "-"


def test_the_legend_stays_off_the_points(tmp_path):
    plt = plots.pyplot()
    fig, ax = plt.subplots()
    ax.scatter(range(10), [0.9 - 0.1 * i for i in range(10)], label="trial")  # the worst in the lower right
    ax.step(range(10), [0.9] * 10, label="best so far")
    plots.legend_outside(ax)
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.y1 <= ax.get_window_extent().y0  # below the axes, never over a trial
    plt.close(fig)


def test_one_dot_learning_curves_are_not_drawn(tmp_path):
    assert (
        plots.plot_learning_curves({"#0": [(0, 0.5)], "#1": [(0, 0.6), (0, 0.6)]}, path=str(tmp_path / "a.png")) is None
    )
    assert plots.plot_learning_curves({"#0": [(0, 0.5), (1, 0.6)]}, path=str(tmp_path / "b.png"))


def test_pareto_axes_say_minimised_not_min(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(plots, "plot_pareto", lambda raw, names, *a, **k: seen.setdefault("names", names))
    from metastore import TrialRecord

    trials = [
        TrialRecord(
            trial_id=str(i),
            search_id="s",
            task="t",
            number=i,
            genotype_json="{}",
            genotype_key=str(i),
            state="finished",
            metrics={"val_accuracy": 0.5 + 0.1 * i, "params": 100.0 * (i + 1)},
        )
        for i in range(3)
    ]
    plots.plot_search_pareto(trials, ["val_accuracy", "-params"], path=str(tmp_path / "p.png"))
    assert seen["names"] == ["val_accuracy (maximised)", "params (minimised)"]


def test_a_tabular_search_has_one_progress_plot_and_no_dots_or_json_pictures(tmp_path):
    store = open_store("memory://")
    search = new_search(store, load_task("nbgraph-cora"), "random", 4, seed=0)
    search.run()
    summary = summarize(store, search.search_id)
    files = render_plots(summary, tmp_path)
    assert "best_so_far" in files
    assert not {"progress", "learning_curves", "architecture"} & set(files), files
    html = render_html(summary, files)
    assert html.count("data:image/png;base64,") == len(files)
    assert "0.0000" not in html.replace("0.00000", "")  # no small value printed as zero


def test_the_report_prints_whole_numbers_as_integers(tmp_path):
    store = open_store("memory://")
    sid = store.start_search("t", strategy="random", space="chain-v1", seed=0, objective="val_accuracy", spec={})
    genotype = json.dumps({"space": "chain-v1", "spec": {"layers": []}})
    tid = store.start_trial(sid, genotype, "k")
    store.finish_trial(tid, state="finished", metrics={"val_accuracy": 0.9, "epochs": 30.0, "latency": 0.000231})
    store.finish_search(sid)
    html = render_html(summarize(store, sid, load_data=False), {})
    assert ">30<" in html and "30.0000" not in html
    assert "0.000231" in html
