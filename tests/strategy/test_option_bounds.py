"""Issue 23: absurd values of the new strategies' numeric options (eda, qlearning, smac, tpe,
evolution's crossover and prescreening, bo's acquisition local search and sizes) are one ``error:`` line
and exit 2 before the search starts, not a hang or an out-of-memory after it began.

Driven from the command line (``helpers.nasw``, in process), as a user meets them.
"""

from __future__ import annotations

import time
import uuid

import pytest
from helpers import nasw

TABULAR = "nbgraph-cora"  # a table lookup: a search that wrongly starts finishes quickly
HUGE = 10**12

#: (strategy, option=value): every numeric option of the new strategies, too large and too small.
ABSURD = [
    # eda
    ("eda", f"population={HUGE}"),
    ("eda", "population=1"),
    ("eda", "population=-5"),
    ("eda", "learning_rate=1e9"),
    ("eda", "learning_rate=0"),
    ("eda", "learning_rate=-0.5"),
    ("eda", "selection=2"),
    ("eda", "selection=-1"),
    ("eda", "mutation=5"),
    ("eda", "mutation=-0.1"),
    ("eda", f"bins={HUGE}"),
    ("eda", "bins=0"),
    ("eda", "prior_weight=1e9"),
    ("eda", "prior_weight=-1"),
    # qlearning
    ("qlearning", "alpha=1e9"),
    ("qlearning", "alpha=0"),
    ("qlearning", "gamma=2"),
    ("qlearning", "gamma=-1"),
    ("qlearning", "q_init=1e300"),
    ("qlearning", "q_init=-1e300"),
    ("qlearning", f"random_start={HUGE}"),
    ("qlearning", "random_start=-1"),
    ("qlearning", "epsilon_start=1e9"),
    ("qlearning", "epsilon_end=-1"),
    ("qlearning", f"decay={HUGE}"),
    ("qlearning", "decay=-3"),
    ("qlearning", f"replay={HUGE}"),  # an array of 10**12 indices after each trial
    ("qlearning", "replay=-1"),
    ("qlearning", f"prefill={HUGE}"),
    ("qlearning", "prefill=-1"),
    # smac
    ("smac", f"n_init={HUGE}"),
    ("smac", "n_init=-1"),
    ("smac", f"n_trees={10**9}"),  # a forest of a billion trees
    ("smac", "n_trees=0"),
    ("smac", f"min_samples_leaf={HUGE}"),
    ("smac", "min_samples_leaf=0"),
    ("smac", "max_features=5"),
    ("smac", "max_features=0"),
    ("smac", "xi=1e9"),
    ("smac", "xi=-1"),
    ("smac", "random_fraction=3"),
    ("smac", "random_fraction=-0.5"),
    ("smac", f"n_samples={HUGE}"),
    ("smac", "n_samples=-1"),
    ("smac", f"local_starts={HUGE}"),
    ("smac", "local_starts=-1"),
    ("smac", f"local_neighbours={HUGE}"),
    ("smac", "local_neighbours=0"),
    ("smac", f"local_steps={HUGE}"),
    ("smac", "local_steps=-1"),
    # tpe
    ("tpe", f"n_init={HUGE}"),
    ("tpe", "n_init=-1"),
    ("tpe", "gamma=1e9"),
    ("tpe", "gamma=0"),
    ("tpe", f"max_good={HUGE}"),
    ("tpe", "max_good=0"),
    ("tpe", f"n_candidates={HUGE}"),
    ("tpe", "n_candidates=0"),
    ("tpe", "prior_weight=1e300"),
    ("tpe", "prior_weight=0"),
    ("tpe", "source_weight=1e300"),
    ("tpe", "source_weight=-1"),
    # evolution: crossover and prescreening (and the population they work on)
    ("evolution", "crossover=1e9"),
    ("evolution", "crossover=-0.5"),
    ("evolution", f"prescreen_children={HUGE}"),
    ("evolution", "prescreen_children=0"),
    ("evolution", f"population={HUGE}"),
    ("evolution", "sample_size=-1"),
    ("evolution", f"morph_steps={HUGE}"),
    # bo: the acquisition's local search, and the sizes of its fit and acquisition
    ("bo", f"mc_samples={HUGE}"),  # a quasi-MC tensor of 10**12 samples
    ("bo", f"fit_maxiter={HUGE}"),
    ("bo", f"shortlist={HUGE}"),
    ("bo", f"n_samples={HUGE}"),
    ("bo", f"n_init={HUGE}"),
    ("bo", f"local_rounds={HUGE}"),
    ("bo", "local_rounds=-1"),
    ("bo", f"local_top={HUGE}"),
    ("bo", "local_top=0"),
    ("bo", f"local_children={HUGE}"),
    ("bo", "local_children=0"),
]


def _uri() -> str:
    return f"memory://bounds-{uuid.uuid4().hex[:8]}"


def _searches(uri: str) -> list:
    from metastore import open_store

    return open_store(uri).searches()


def _one_error_line(code: int, err: str) -> str:
    """The one ``error:`` line of a refused command (a ``warning:`` line about the same values,
    printed by the command line before the options are checked, may precede it)."""
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "internal error" not in err and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("strategy, option", ABSURD, ids=[f"{s}-{o}" for s, o in ABSURD])
def test_an_absurd_option_is_one_error_line_before_the_search_starts(strategy, option):
    uri = _uri()
    t0 = time.perf_counter()
    code, _, err = nasw(
        ["search", "--task", TABULAR, "--strategy", strategy, "--budget", "5", "--store", uri, "--option", option]
    )
    line = _one_error_line(code, err)
    assert option.split("=")[0] in line and strategy in line
    assert _searches(uri) == []  # nothing started, let alone a trial
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize("strategy, option", [("eda", f"population={HUGE}"), ("smac", f"n_init={HUGE}")])
def test_an_absurd_warm_start_size_is_refused_before_the_sources_are_read(strategy, option):
    """The warm start's prior is sized from these options before the strategy is built."""
    uri = _uri()
    code, _, err = nasw(["search", "--task", "nbgraph-photo", "--strategy", "random", "--budget", "4", "--store", uri])
    assert code == 0, err
    code, _, err = nasw(
        ["search", "--task", TABULAR, "--strategy", strategy, "--budget", "5", "--store", uri]
        + ["--warm-start", "auto", "--option", option]
    )
    line = _one_error_line(code, err)
    assert option.split("=")[0] in line
    assert len(_searches(uri)) == 1


#: The largest accepted values still run (bounded, not refused): a quick search each.
LARGEST = [
    ("eda", ["population=10000", "bins=1000"]),
    ("qlearning", ["replay=10000", "decay=1000000", "random_start=2"]),
    ("smac", ["n_trees=1000", "n_init=2", "n_samples=100"]),
    ("tpe", ["n_candidates=10000", "n_init=2"]),
    ("evolution", ["population=3", "prescreen=rf", "prescreen_children=2000", "crossover=1"]),
]


@pytest.mark.parametrize("strategy, options", LARGEST, ids=[s for s, _ in LARGEST])
def test_the_largest_accepted_values_run(strategy, options):
    uri = _uri()
    args = ["search", "--task", TABULAR, "--strategy", strategy, "--budget", "4", "--store", uri]
    for option in options:
        args += ["--option", option]
    t0 = time.perf_counter()
    code, _, err = nasw(args)
    assert code == 0, err
    assert time.perf_counter() - t0 < 120
