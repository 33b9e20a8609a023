"""Task files: the shipped ones load; malformed ones give one clear error."""

from __future__ import annotations

import pytest

from workbench.errors import TaskError
from workbench.task import list_tasks, load_task, parse_task, parse_task_dict


def test_shipped_tasks_load():
    names = {t.name for t in list_tasks()}
    assert {"digits", "mnist1d", "mnist5k"} <= names
    t = load_task("digits")
    assert t.kind == "trained" and t.space["kind"] == "chain" and t.objective == "val_accuracy"


def test_task_round_trips_through_its_recorded_dict():
    t = load_task("mnist1d")
    back = parse_task_dict(t.to_dict())
    assert back.to_dict() == t.to_dict()


@pytest.mark.parametrize(
    "text, message",
    [
        ("name = ", "invalid TOML"),
        ('name = "x"\n[space]\nkind = "chain"\n', "missing \\[dataset\\]"),
        ('name = "x"\n[dataset]\nloader = "digits"\n', "missing \\[space\\]"),
        (
            'name = "x"\nkind = "magic"\n[dataset]\nloader = "digits"\n[space]\nkind = "chain"\n',
            "'kind' must be one of",
        ),
        ('name = "x"\nbogus = 1\n[dataset]\nloader = "digits"\n[space]\nkind = "chain"\n', "unknown keys"),
        ('name = "x"\n[dataset]\nloader = "digits"\n[space]\nkind = "chain"\n[split]\ntest = 2\n', "fraction"),
        (
            'name = "x"\n[dataset]\nloader = "digits"\n[space]\nkind = "chain"\n[training]\nepochs = -1\n',
            "positive integer",
        ),
        ('name = "a b"\n[dataset]\nloader = "digits"\n[space]\nkind = "chain"\n', "without spaces"),
        (
            'name = "x"\n[dataset]\nloader = "digits"\n[space]\nkind = "chain"\n[meta_features]\nn = "many"\n',
            "must be numbers",
        ),
    ],
)
def test_malformed_task_files(tmp_path, text, message):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(TaskError, match=message):
        parse_task(p)


def test_unknown_task_lists_known_ones():
    with pytest.raises(TaskError, match="digits"):
        load_task("no-such-task")
