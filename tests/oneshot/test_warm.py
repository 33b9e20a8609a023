"""Warm-started supernets: the tensors that fit come from the source, stem and head stay fresh."""

from __future__ import annotations

import pytest
import torch
from helpers import nasw

from metastore import open_store
from metastore.schema import TAG_SUPERNET, TAG_WARM_SUPERNET, note_tag
from workbench.nn.supernet import build_supernet
from workbench.oneshot.settings import SupernetSettings
from workbench.oneshot.train import SupernetTrainer
from workbench.oneshot.warm import warm_load

MACRO = {"stages": 2, "cells_per_stage": 1, "width": 4}


def test_warm_load_copies_every_fitting_tensor_but_stem_and_head():
    torch.manual_seed(0)
    source = build_supernet(MACRO, (3, 16, 16), 7).state_dict()  # other channels, size and classes
    net = build_supernet(MACRO, (1, 8, 8), 10)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    report = warm_load(net, source)
    after = net.state_dict()
    assert report.copied and 0.5 < report.fraction < 1.0
    for name in report.copied:
        assert not name.startswith(("stem.", "head.")) and torch.equal(after[name], source[name])
    for name in report.fresh:
        assert name.startswith(("stem.", "head.")) and torch.equal(after[name], before[name])


def test_warm_load_copies_nothing_across_signals_and_images():
    net = build_supernet(MACRO, (1, 8, 8), 10)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    report = warm_load(net, build_supernet(MACRO, (1, 40), 10).state_dict())
    assert report.copied == () and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_trainer_starts_from_the_source_supernet(tiny_splits, tiny_config, tiny_space):
    settings = SupernetSettings.read("spos", {"epochs": 1})
    source = SupernetTrainer(tiny_splits, tiny_config, tiny_space.macro, settings, seed=3).run().supernet
    state = {k: v.detach().clone() for k, v in source.state_dict().items()}
    warm = SupernetTrainer(tiny_splits, tiny_config, tiny_space.macro, settings, seed=0, init=state)
    warm._fresh()
    assert warm.warm is not None and warm.warm.copied
    name = warm.warm.copied[0]
    assert torch.equal(warm.net.state_dict()[name].cpu(), state[name])
    cold = SupernetTrainer(tiny_splits, tiny_config, tiny_space.macro, settings, seed=0)
    cold._fresh()
    assert cold.warm is None and not torch.equal(cold.net.state_dict()[name].cpu(), state[name])


def _search_of(store, task):
    (search,) = store.searches(task)
    return search


def _supernet_run(store, search):
    (run,) = [t for t in store.trials(search.search_id) if t.tags.get(TAG_SUPERNET)]
    return run


@pytest.mark.slow
def test_a_warm_darts_search_starts_from_another_tasks_supernet_and_op_weights(tiny_cell_task, workdir, capsys):
    other = workdir / "tiny-other.toml"
    other.write_text(tiny_cell_task.read_text().replace('name = "tiny-cell"', 'name = "tiny-other"'))
    uri = f"sqlite:///{workdir / 'warm.db'}"
    base = ["search", "--strategy", "darts", "--budget", "1", "--option", "epochs=2", "--store", uri, "--quiet"]
    code, _, err = nasw([*base, "--task", str(other)], capsys)
    assert code == 0, err
    code, out, err = nasw([*base, "--task", str(tiny_cell_task), "--warm-start", "tiny-other"], capsys)
    assert code == 0, err
    store = open_store(uri, mode="read")
    source = _supernet_run(store, _search_of(store, "tiny-other"))
    run = _supernet_run(store, _search_of(store, "tiny-cell"))
    assert run.tags[TAG_WARM_SUPERNET] == f"tiny-other:{source.trial_id}"
    assert "op weights" in run.tags[note_tag("warm")] and "stem and head fresh" in run.tags[note_tag("warm")]
    assert "supernet warm start: from the darts supernet of tiny-other" in out + err
    # the recorded spec says so, for resume
    assert _search_of(store, "tiny-cell").spec["oneshot"]["warm_start"] == "tiny-other"


@pytest.mark.slow
def test_warm_start_of_an_estimator_search_and_its_failures(tiny_cell_task, workdir, capsys):
    other = workdir / "tiny-other.toml"
    other.write_text(tiny_cell_task.read_text().replace('name = "tiny-cell"', 'name = "tiny-other"'))
    uri = f"sqlite:///{workdir / 'warm.db'}"
    est = ["--strategy", "random", "--estimator", "oneshot", "--budget", "2", "--option", "supernet_epochs=1"]
    # a named task with neither trials nor a supernet: one error line, nothing recorded
    code, _, err = nasw(
        ["search", "--task", str(tiny_cell_task), *est, "--warm-start", "tiny-other", "--store", uri], capsys
    )
    assert code == 2 and err.count("\n") == 1 and "tiny-other" in err, err
    code, _, err = nasw(["search", "--task", str(other), *est, "--store", uri, "--quiet"], capsys)
    assert code == 0, err
    code, out, err = nasw(
        ["search", "--task", str(tiny_cell_task), *est, "--warm-start", "auto", "--store", uri, "--quiet"], capsys
    )
    assert code == 0, err
    store = open_store(uri, mode="read")
    source = _supernet_run(store, _search_of(store, "tiny-other"))
    run = _supernet_run(store, _search_of(store, "tiny-cell"))
    assert run.tags[TAG_WARM_SUPERNET] == f"tiny-other:{source.trial_id}"
    assert "op weights" not in run.tags[note_tag("warm")]  # an SPOS supernet has no learnt op weights
    # without --warm-start nothing is taken
    code, _, err = nasw(["search", "--task", str(tiny_cell_task), *est, "--store", uri, "--quiet"], capsys)
    assert code == 0, err
    newest = open_store(uri, mode="read").searches("tiny-cell")[0]
    assert TAG_WARM_SUPERNET not in _supernet_run(store, newest).tags
