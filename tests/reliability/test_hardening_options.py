"""Issue 22, careless search options: every ``--option`` checked (type, range) before the first
trial and on resume (#5), booleans parsed (#7), unknown objectives refused (#6), ``--workers``
bounded by the machine, networks that cannot fit in memory refused before allocation, and the
libraries' warnings kept from users of ``nasw search`` (#19).

Each test drives the command line where a user meets the problem (``helpers.nasw``, in process).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
import warnings
from pathlib import Path

import helpers
import numpy as np
import pytest
from helpers import nasw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.errors import UserError

REPO = Path(__file__).resolve().parents[2]
TABULAR = "nbgraph-cora"  # a table lookup: trials are instant
#: A trained task small enough for seconds per trial, with room for morphisms (deepen, widen).
MORPH_DOC = helpers.tiny_doc("tiny-options", space={"max_layers": 4, "widths": [4, 8, 16]})


def _uri() -> str:
    return f"memory://options-{uuid.uuid4().hex[:8]}"


def _searches(uri: str) -> list:
    from metastore import open_store

    return open_store(uri).searches()


def _one_error_line(code: int, err: str) -> str:
    """The single ``error:`` line of a refused command (exit code 2, no internal error)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "internal error" not in err and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def morph_task(tmp_path) -> str:
    path = tmp_path / "tiny-options.toml"
    path.write_text(helpers.task_toml(MORPH_DOC))
    return str(path)


# -- #5: option types and ranges, before the first trial ------------------------------------------
BAD_OPTIONS = [
    ("evolution", "population=3.5", "population"),  # crashed after a few trials (a slice index)
    ("evolution", "population=1e400", "population"),  # inf: silently a random search
    ("evolution", "population=1e30", "population"),  # over int64
    ("evolution", "population=true", "population"),
    ("evolution", "population=null", "population"),
    ("evolution", "sample_size=2.5", "sample_size"),
    ("evolution", "population=1", "population"),  # the constructor's own range check
    ("rl", "hidden_size=2.5", "hidden_size"),
    ("rl", "lr=1e400", "lr"),
    ("rl", "lr=x", "lr"),
    ("rl", "hidden_size=100000", "hidden_size"),  # an LSTM of 160 GB
    ("rl", "ppo_epochs=100000000", "ppo_epochs"),  # hours per update
    ("rl", "max_grad_norm=-1", "max_grad_norm"),  # would flip every gradient
    ("bo", "ard=maybe", "ard"),
    ("bo", "n_init=0.5", "n_init"),
    ("bo", "sources=[1]", "sources"),  # was a TypeError
    ("hillclimb", "children=0", "children"),
    ("hillclimb", "parents=0", "parents"),  # was silently 1
    ("hillclimb", "start_samples=100000000", "start_samples"),  # an ask of hours
    ("random", "bogus=1", "bogus"),
]


@pytest.mark.parametrize("strategy, option, name", BAD_OPTIONS, ids=[f"{s}-{o}" for s, o, _ in BAD_OPTIONS])
def test_a_bad_option_is_one_error_line_before_any_trial(strategy, option, name):
    uri = _uri()
    code, out, err = nasw(
        ["search", "--task", TABULAR, "--strategy", strategy, "--budget", "8", "--store", uri, "--option", option]
    )
    line = _one_error_line(code, err)
    assert name in line and strategy in line
    assert _searches(uri) == []  # nothing started, let alone a trial


def test_a_whole_number_written_as_a_float_is_taken():
    uri = _uri()
    code, out, err = nasw(
        ["search", "--task", TABULAR, "--strategy", "evolution", "--budget", "3", "--store", uri, "--json"]
        + ["--option", "population=3.0", "--option", "sample_size=2"]
    )
    assert code == 0, err
    (rec,) = _searches(uri)
    assert rec.spec["strategy_options"] == {"population": 3, "sample_size": 2}  # recorded as integers
    assert isinstance(rec.spec["strategy_options"]["population"], int)


@pytest.mark.parametrize("recorded", [3.5, float("inf"), "many"])
def test_resume_refuses_a_bad_recorded_option_before_any_trial(recorded):
    """A search recorded before options were checked (or a spec edited by hand) resumes with one
    error line, not an internal error after a few trials, and runs nothing."""
    from metastore import open_store

    uri = _uri()
    code, out, _ = nasw(
        ["search", "--task", TABULAR, "--strategy", "evolution", "--budget", "2", "--store", uri, "--json"]
        + ["--option", "population=3"]
    )
    sid = json.loads(out)["search_id"]
    store = open_store(uri)
    store._search(sid).spec["strategy_options"]["population"] = recorded  # as an older nasw recorded it
    code, out, err = nasw(["resume", sid, "--store", uri, "--budget", "8", "--json"])
    line = _one_error_line(code, err)
    assert "population" in line
    assert len(store.trials(sid)) == 2


# -- every strategy, including those registered later: generic checks, fuzzed -----------------------
def _typed_options() -> list[tuple[str, str, str]]:
    """(strategy, option, kind) for every bool / int / float option of every registered strategy."""
    from workbench.strategy.registry import _option_kinds, strategy_class, strategy_names

    return [
        (name, option, kind)
        for name in strategy_names()
        for option, (kind, _optional) in sorted(_option_kinds(strategy_class(name))[0].items())
        if kind is not None
    ]


WRONG = {
    "int": [3.5, float("inf"), float("nan"), 1e30, True, "x", [1], {"a": 1}],
    "float": [float("inf"), float("-inf"), float("nan"), True, "x", [1.0], 10**400],
    "bool": ["maybe", 2, -1, 0.5, "", [True], {"a": 1}],
}


def _space():
    from workbench.space.registry import make_space

    return make_space(**helpers.TINY_SPACE)


def test_every_typed_option_of_every_strategy_refuses_wrong_kinds():
    from workbench.strategy.registry import make_strategy

    space = _space()
    typed = _typed_options()
    assert {s for s, _, _ in typed} >= {"evolution", "rl", "bo", "hillclimb"}
    for strategy, option, kind in typed:
        for value in WRONG[kind]:
            with pytest.raises(UserError, match=option):
                make_strategy(strategy, space, seed=0, **{option: value})


@pytest.mark.parametrize(
    "word, expected",
    [(w, False) for w in ("False", "false", "no", "OFF", "0", 0)] + [(w, True) for w in ("True", "yes", "On", "1", 1)],
)
def test_boolean_words(word, expected):
    from workbench.strategy.registry import check_options

    assert check_options("evolution", {"morph": word}) == {"morph": expected}


def _value(genotype) -> float:
    return int(hashlib.sha256(genotype.key.encode()).hexdigest()[:8], 16) / 2**32


#: Values a careless or hostile user types (JSON-parsed as the CLI does), kept to sizes that a
#: constructor that accepts them can run with in a test.
CARELESS = st.one_of(
    st.sampled_from(
        [0, 1, 2, 3, -1, -7, 3.5, 0.5, 1e400, -1e400, float("nan"), 1e30, 2**63, True, False, None]
        + ["x", "", "off", "yes", "3", "2.0", "1e400", [], [1], {}, {"a": 1}]
    ),
    st.integers(-3, 40),
    st.floats(-10, 10, allow_nan=False),
)


def test_fuzz_options_of_every_strategy_are_accepted_and_run_or_refused_in_one_line():
    """Random values for the typed options of every registered strategy: either one UserError at
    construction, or a strategy that runs ask/tell rounds without crashing."""
    from workbench.strategy.base import Observation
    from workbench.strategy.registry import make_strategy

    space = _space()
    typed = _typed_options()
    examples = max(30, int(os.environ.get("NASW_FUZZ_EXAMPLES", "300")) // 2)

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data):
        chosen = data.draw(st.lists(st.sampled_from(typed), min_size=1, max_size=3))
        strategy = chosen[0][0]
        options = {o: data.draw(CARELESS) for s, o, _ in chosen if s == strategy}
        try:
            s = make_strategy(strategy, space, seed=0, **options)
        except UserError as exc:
            assert "\n" not in str(exc)
            return
        for _ in range(3):
            props = s.ask(2)
            s.tell([Observation(p.genotype, _value(p.genotype), objectives={}) for p in props])

    check()


# -- #7: booleans ---------------------------------------------------------------------------------
@pytest.mark.parametrize("word", ["False", "false", "no", "off", "OFF", "0"])
def test_morph_false_words_are_recorded_as_false(word):
    uri = _uri()
    code, out, err = nasw(
        ["search", "--task", TABULAR, "--strategy", "evolution", "--budget", "1", "--store", uri]
        + ["--quiet", "--option", f"morph={word}"]
    )
    assert code == 0, err
    (rec,) = _searches(uri)
    assert rec.spec["strategy_options"]["morph"] is False


def test_morph_off_makes_no_morphism_children_and_on_does(morph_task):
    """The evolution of the issue: with ``morph=False`` children were morphisms of their parents."""
    from metastore import open_store

    parents = {}
    for word in ("False", "on"):
        uri = _uri()
        code, out, err = nasw(
            ["search", "--task", morph_task, "--strategy", "evolution", "--budget", "6", "--store", uri, "--json"]
            + ["--option", f"morph={word}", "--option", "population=2", "--option", "sample_size=1"]
        )
        assert code == 0, err
        parents[word] = [t.parent_trial for t in open_store(uri).trials(json.loads(out)["search_id"])]
    assert parents["False"] == [None] * 6
    assert any(parents["on"])


# -- #6: objectives -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["--strategy", "evolution", "--objectives", "val_accuracy,-bogus"],
        ["--strategy", "bo", "--objectives", "val_accuracy,-Latency"],
        ["--strategy", "random", "--objectives", "val_accuracy,-params,-flops"],
        ["--strategy", "bo", "--option", 'objectives=["val_accuracy", "-gpu_hours"]'],
        ["--strategy", "evolution", "--option", "objectives=-bogus"],  # one objective: the scalar
    ],
)
def test_an_unknown_objective_is_one_error_line_before_the_search(args):
    uri = _uri()
    code, out, err = nasw(["search", "--task", TABULAR, "--budget", "4", "--store", uri] + args)
    line = _one_error_line(code, err)
    assert "val_accuracy, test_accuracy" in line  # says what the task reports
    assert _searches(uri) == []


def test_reported_metrics_are_what_trials_report(morph_task):
    """The names objectives are checked against are the metrics trials record (trained, tabular)."""
    from workbench.search.assemble import reported_metrics
    from workbench.task import load_task

    for task in (morph_task, TABULAR):
        uri = _uri()
        code, out, err = nasw(["search", "--task", task, "--strategy", "random", "--budget", "1", "--store", uri])
        assert code == 0, err
        from metastore import open_store

        store = open_store(uri)
        (trial,) = store.trials(_searches(uri)[0].search_id)
        assert set(trial.metrics) == set(reported_metrics(load_task(task)))


# -- --workers within the machine ------------------------------------------------------------------
@pytest.fixture
def one_core(monkeypatch):
    from workbench.cli import running

    monkeypatch.setattr(running, "machine_slots", lambda device: (1, "CPU core"))


def test_workers_over_the_cores_need_oversubscribe(one_core):
    uri = _uri()
    code, _, err = nasw(["search", "--task", TABULAR, "--budget", "2", "--store", uri, "--workers", "2"])
    line = _one_error_line(code, err)
    assert "--oversubscribe" in line and "1 CPU core" in line
    assert _searches(uri) == []
    code, _, err = nasw(["resume", "0123abcd", "--store", uri, "--workers", "3"])
    assert "--oversubscribe" in _one_error_line(code, err)
    # with the flag the check lets it through (to the next one: pool workers need a persistent store)
    code, _, err = nasw(
        ["search", "--task", TABULAR, "--budget", "2", "--store", uri, "--workers", "2", "--oversubscribe"]
    )
    assert "persistent store" in _one_error_line(code, err)


def test_workers_over_the_gpus_need_oversubscribe_with_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    uri = _uri()
    code, _, err = nasw(["search", "--task", TABULAR, "--store", uri, "--device", "cuda", "--workers", "2"])
    line = _one_error_line(code, err)
    assert "1 GPU" in line and "--oversubscribe" in line


def test_machine_slots_counts_this_process_cores():
    from workbench.cli.running import machine_slots

    n, what = machine_slots(None)
    assert n == len(os.sched_getaffinity(0)) and "CPU core" in what


# -- memory: a network that cannot fit is refused before allocation --------------------------------
def test_a_network_too_large_for_the_memory_fails_its_trial_with_the_reason(monkeypatch, morph_task):
    import workbench.nn.memory as memory
    from workbench.evaluate import trainer

    monkeypatch.setattr(memory, "available_memory", lambda device: 64 * 1024)  # 64 KiB left
    built = []
    real = trainer.build_model
    monkeypatch.setattr(trainer, "build_model", lambda *a, **k: built.append(a) or real(*a, **k))
    uri = _uri()
    code, out, err = nasw(["search", "--task", morph_task, "--strategy", "random", "--budget", "2", "--store", uri])
    assert code == 0, err
    from metastore import open_store

    store = open_store(uri)
    trials = store.trials(_searches(uri)[0].search_id)
    assert [t.state for t in trials] == ["failed", "failed"]
    for t in trials:
        assert t.reason.startswith("not enough memory: training this network needs about"), t.reason
        assert "x 16 bytes" in t.reason and "64.0 KiB of memory available on cpu" in t.reason
    assert built == []  # refused before the network was built


def test_the_memory_estimate_counts_the_real_parameters():
    """Parameters counted on the meta device are those of the built network; a 10^9-parameter
    network is estimated at 16 GB with AdamW (the issue's figure), before activations."""
    from workbench.evaluate.trainer import count_params
    from workbench.nn.build import build_model, network_size
    from workbench.nn.memory import available_memory, training_need
    from workbench.space.registry import make_space

    rng = np.random.default_rng(0)
    for settings_ in (helpers.TINY_SPACE, {"kind": "dag"}, {"kind": "cell"}):
        space = make_space(**settings_)
        for _ in range(3):
            g = space.sample(rng)
            params, activations = network_size(g, (1, 8, 8), 10, batch=4)
            assert params == count_params(build_model(g, (1, 8, 8), 10))
            assert activations > 0
    assert training_need(10**9, 0) == 16 * 10**9
    import torch

    avail = available_memory(torch.device("cpu"))
    assert avail is None or 0 < avail


def test_cuda_memory_is_the_free_memory_plus_what_torch_holds_unused(monkeypatch):
    import torch

    from workbench.nn.memory import available_memory

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * 2**30, 140 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 2 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 2**30)
    assert available_memory(torch.device("cuda", 0)) == 4 * 2**30


# -- #19: library warnings do not reach users of nasw search -----------------------------------------
def _palette_images(root: Path) -> None:
    """Two classes of palette PNGs with a transparency byte string: PIL warns while converting."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(12):
            im = Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).convert("P")
            im.save(root / c / f"{i}.png", transparency=b"\x00" * 10)


def test_pil_warnings_do_not_reach_users_of_search(tmp_path):
    from workbench.data.base import load_splits

    _palette_images(tmp_path / "imgs")
    _palette_images(tmp_path / "same")  # the loader caches by path: a copy shows PIL's warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_splits("images", path=str(tmp_path / "same"), seed=0)
    assert any("Palette images" in str(w.message) for w in caught)
    doc = helpers.tiny_doc("pil-warn", loader="images")
    doc["dataset"] = {"loader": "images", "path": str(tmp_path / "imgs")}
    (tmp_path / "pil.toml").write_text(helpers.task_toml(doc))
    with warnings.catch_warnings(record=True) as caught:  # what the user's terminal would show
        warnings.simplefilter("default")
        code, out, err = nasw(
            ["search", "--task", str(tmp_path / "pil.toml"), "--budget", "1", "--store", _uri(), "--quiet", "--json"]
        )
    assert code == 0, err
    assert json.loads(out)["n_trials"] == 1
    assert [str(w.message) for w in caught] == []


def test_the_filter_hides_library_warnings_only_while_a_search_runs(monkeypatch):
    from workbench.evaluate import tabular

    original = tabular.TabularEvaluator.evaluate

    def noisy(self, genotype, **kwargs):
        warnings.warn("The given NumPy array is not writable, and PyTorch does not support it", stacklevel=2)
        warnings.warn_explicit("deprecated in PIL 11", DeprecationWarning, "PIL/Image.py", 1, module="PIL.Image")
        warnings.warn("a warning of nasw's own", stacklevel=2)  # attributed to workbench.execute
        return original(self, genotype, **kwargs)

    monkeypatch.setattr(tabular.TabularEvaluator, "evaluate", noisy)
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = nasw(["search", "--task", TABULAR, "--budget", "1", "--store", _uri(), "--quiet"])
    assert code == 0, err
    texts = [str(w.message) for w in caught]
    assert "a warning of nasw's own" in texts
    assert not any("NumPy array is not writable" in t or "PIL" in t for t in texts), texts
    assert list(warnings.filters) == before


def test_no_float_option_is_left_infinite():
    """Guard of the coercion itself: finite floats only, integers within int64."""
    from workbench.strategy.registry import INT_LIMIT, check_options

    assert check_options("rl", {"lr": "0.5"}) == {"lr": 0.5}
    assert check_options("rl", {"hidden_size": 2.0**10}) == {"hidden_size": 1024}
    for bad in (math.inf, "nan", 10**400, INT_LIMIT + 1):
        with pytest.raises(UserError):
            check_options("rl", {"lr": bad} if not isinstance(bad, int) else {"hidden_size": bad})
