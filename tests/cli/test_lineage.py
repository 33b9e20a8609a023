"""``nasw search --strategy hillclimb`` records lineage; ``nasw lineage`` prints the family tree."""

from __future__ import annotations

import json

import pytest
from helpers import nasw, tiny_toml

TINY_TASK = tiny_toml(
    "tiny-digits-hc",
    "digits, tiny chain space, 2 epochs (tests)",
    space={"max_layers": 3, "kernels": [3, 5], "widths": [8, 16]},
    training={"epochs": 2, "finetune_epochs": 1},
)


def test_hillclimb_search_then_lineage(workdir, capsys):
    (workdir / "tiny.toml").write_text(TINY_TASK)
    code, out, err = nasw(
        ["search", "--task", "tiny.toml", "--strategy", "hillclimb", "--budget", 3, "--option", "initial=1", "--json"],
        capsys,
    )
    assert code == 0, err
    sid = json.loads(out)["search_id"]
    code, out, _ = nasw(["show", sid, "--format", "json"], capsys)
    trials = json.loads(out)["trials"]
    last = trials[-1]
    assert last["parent_trial"] in {t["trial_id"] for t in trials}

    code, out, err = nasw(["lineage", last["trial_id"][:10], "--format", "json"], capsys)
    assert code == 0, err
    tree = json.loads(out)
    gens = tree["ancestors"]
    assert gens[0]["parent_trial"] is None and gens[-1]["trial_id"] == last["trial_id"]
    assert len(gens) >= 2 and all(g["steps"] for g in gens[1:])
    assert all(g["parent_trial"] == p["trial_id"] for p, g in zip(gens, gens[1:]))

    code, out, err = nasw(["lineage", gens[0]["trial_id"]], capsys)
    assert code == 0, err
    assert "lineage of trial" in out and "root" in out and "children in its search" in out

    with pytest.MonkeyPatch.context() as mp:  # 80 columns: every generation's id and accuracies whole
        mp.setenv("COLUMNS", "80")
        code, out, err = nasw(["lineage", last["trial_id"]], capsys)
    assert code == 0, err
    for depth, g in enumerate(gens):
        (row,) = [line for line in out.splitlines() if line.split()[:2] == [str(depth), g["trial_id"][:8]]]
        assert f"{g['metrics']['val_accuracy']:.4f}" in row, out
    assert max(len(line) for line in out.splitlines()) <= 80

    code, out, err = nasw(["lineage", "zzzzzzzz"], capsys)
    assert code == 2 and "no trial" in err and "Traceback" not in err
