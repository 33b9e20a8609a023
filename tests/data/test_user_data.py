"""Bring your own data: CSV, NumPy and image folders through ``nasw task init`` and the loaders.

Every malformed input must end in one ``error: ...`` line naming the file and the problem, with
exit code 2 and no task file written.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tomllib
from helpers import nasw

from workbench.data.base import load_splits
from workbench.errors import DataError
from workbench.task import load_task


# -- builders of good data ----------------------------------------------------------------
def good_rows(n_per_class: int = 6, classes=("cat", "dog", "owl"), features: int = 3, seed: int = 0) -> list[list]:
    rng = np.random.default_rng(seed)
    rows = []
    for k, name in enumerate(classes):
        for _ in range(n_per_class):
            rows.append([*(rng.normal(k, 1.0, features).round(4).tolist()), name])
    return rows


def write_csv(path: Path, header: list[str], rows: list[list], sep: str = ",") -> Path:
    path.write_text("\n".join([sep.join(header)] + [sep.join(str(v) for v in r) for r in rows]) + "\n")
    return path


def good_csv(folder: Path, name: str = "data.csv", **kw) -> Path:
    return write_csv(folder / name, ["f1", "f2", "f3", "label"], good_rows(**kw))


def write_png(path: Path, size=(8, 8), mode: str = "L", value: int = 100, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    arr = np.clip(rng.normal(value, 30, shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path)
    return path


def image_folder(root: Path, classes=("a", "b"), n: int = 5, size=(8, 8), mode: str = "L") -> Path:
    for k, c in enumerate(classes):
        for i in range(n):
            write_png(root / c / f"{i}.png", size=size, mode=mode, value=60 + 100 * k, seed=10 * k + i)
    return root


# -- malformed inputs ---------------------------------------------------------------------
def _csv(text: str | bytes, name: str = "data.csv"):
    def make(d: Path) -> list:
        p = d / name
        (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
        return ["--data", p]

    return make


def _rows_csv(mutate, header=("f1", "f2", "f3", "label"), extra=()):
    def make(d: Path) -> list:
        rows = good_rows()
        mutate(rows)
        return ["--data", write_csv(d / "data.csv", list(header), rows), *extra]

    return make


def _set(row: int, col: int, value):
    def mutate(rows):
        rows[row][col] = value

    return mutate


def _npz(**arrays):
    def make(d: Path) -> list:
        p = d / "arrays.npz"
        np.savez(p, **{k: (v() if callable(v) else v) for k, v in arrays.items()})
        return ["--data", p]

    return make


X = np.random.default_rng(0).normal(size=(30, 4))
Y = np.repeat([0, 1, 2], 10)


def _npz_objects(d: Path) -> list:
    p = d / "arrays.npz"
    np.savez(p, x=np.array([[1.0], "a"], dtype=object), y=Y[:2])
    return ["--data", p]


def _images(mutate, extra=()):
    def make(d: Path) -> list:
        root = image_folder(d / "imgs")
        mutate(root)
        return ["--data", root, *extra]

    return make


def _perm(d: Path) -> list:
    p = good_csv(d)
    p.chmod(0)
    return ["--data", p]


def _dir_named_csv(d: Path) -> list:
    (d / "data.csv").mkdir()
    return ["--data", d / "data.csv"]


MALFORMED = {
    # CSV
    "empty file": (_csv(""), "data.csv", "empty"),
    "blank lines only": (_csv("\n \n\n"), "data.csv", "empty"),
    "only separators": (_csv(",,,\n,,,\n"), "data.csv", "holds no values"),
    "header only": (_csv("f1,f2,label\n"), "data.csv", "no data rows"),
    "one column": (_csv("label\na\nb\n"), "data.csv", "one column"),
    "missing --label column": (
        _rows_csv(lambda r: None, extra=["--label", "species"]),
        "data.csv",
        "no label column 'species'",
    ),
    "mixed types in a feature": (
        _rows_csv(_set(4, 1, "abc")),
        "data.csv",
        "column 'f2' is not numeric: line 6 holds 'abc'",
    ),
    "empty feature cell": (_rows_csv(_set(2, 0, "")), "data.csv", "line 4 has no value in column 'f1'"),
    "NaN feature": (_rows_csv(_set(3, 2, "NaN")), "data.csv", "line 5 has a missing value (NaN) in column 'f3'"),
    "infinite feature": (_rows_csv(_set(3, 2, "inf")), "data.csv", "infinite value"),
    "one class only": (_rows_csv(lambda r: [x.__setitem__(3, "cat") for x in r]), "data.csv", "only one class"),
    "label column all empty": (
        _rows_csv(lambda r: [x.__setitem__(3, "") for x in r]),
        "data.csv",
        "label column 'label' is empty",
    ),
    "label column all NaN": (_rows_csv(lambda r: [x.__setitem__(3, "nan") for x in r]), "data.csv", "is empty"),
    "a row without label": (_rows_csv(_set(7, 3, "")), "data.csv", "line 9 has no label"),
    "non-integer labels": (
        _rows_csv(lambda r: [x.__setitem__(3, str(i * 0.37)) for i, x in enumerate(r)]),
        "data.csv",
        "regression",
    ),
    "too few per class": (
        _rows_csv(lambda r: r.__setitem__(slice(0, 4), [])),
        "data.csv",
        "class 'cat' has only 2 examples",
    ),
    "ragged row": (_rows_csv(lambda r: r[5].append("9.9")), "data.csv", "line 7 has 5 fields, the header has 4"),
    "duplicate header": (_rows_csv(lambda r: None, header=("f1", "F1", "f3", "label")), "data.csv", "twice"),
    "empty header name": (
        _rows_csv(lambda r: None, header=("f1", "", "f3", "label")),
        "data.csv",
        "column 2 of the header has no name",
    ),
    "not UTF-8": (_csv("f1,label\n1.0,caf\xe9\n".encode("latin-1")), "data.csv", "not UTF-8"),
    "binary file": (_csv(b"\x89PNG\x00\x00\x01\x02" * 10), "data.csv", "binary"),
    "unknown extension": (_csv("f1,label\n1,a\n", name="data.xlsx"), "data.xlsx", "unknown data format"),
    "no such file": (lambda d: ["--data", d / "nope.csv"], "nope.csv", "no such file"),
    "folder where a file is expected": (_dir_named_csv, "data.csv", "is a folder"),
    # NumPy
    "npz without y": (_npz(x=X), "arrays.npz", "no labels array"),
    "npz without x": (_npz(features=X, y=Y), "arrays.npz", "no features array"),
    "npz x/y length mismatch": (_npz(x=X, y=Y[:20]), "arrays.npz", "30 examples but 20 labels"),
    "npz non-integer float labels": (_npz(x=X, y=Y + 0.5), "arrays.npz", "regression"),
    "npz 2-D labels": (_npz(x=X, y=np.stack([Y, Y], 1)), "arrays.npz", "one per example"),
    "npz pickled objects": (_npz_objects, "arrays.npz", "Python objects"),
    "corrupt npz": (_csv(b"PK\x03\x04 this is not a zip archive", name="arrays.npz"), "arrays.npz", "not a readable"),
    "npz 1-D features": (_npz(x=np.arange(30.0), y=Y), "arrays.npz", "one row per example"),
    "npz 5-D features": (_npz(x=np.zeros((30, 1, 2, 2, 2)), y=Y), "arrays.npz", "2 to 4 dimensions"),
    "npz NaN features": (
        _npz(x=np.where(np.arange(120).reshape(30, 4) == 57, np.nan, X), y=Y),
        "arrays.npz",
        "example 14 holds NaN",
    ),
    "npz text features": (_npz(x=np.array([["a"] * 4] * 30), y=Y), "arrays.npz", "must be numbers"),
    "npz x_test without y_test": (_npz(x=X, y=Y, x_test=X[:6]), "arrays.npz", "has x_test but no y_test"),
    "npz test shape differs": (
        _npz(x=X, y=Y, x_test=X[:6, :3], y_test=Y[:6]),
        "arrays.npz",
        "x_test examples have shape",
    ),
    "npy without labels file": (
        lambda d: (np.save(d / "feats.npy", X), ["--data", d / "feats.npy"])[1],
        "feats.npy",
        "no labels file",
    ),
    # images
    "empty image folder": (lambda d: ((d / "imgs").mkdir(), ["--data", d / "imgs"])[1], "imgs", "no class subfolders"),
    "one image class": (_images(lambda r: shutil.rmtree(r / "b")), "imgs", "only one class"),
    "empty class folder": (_images(lambda r: (r / "c").mkdir()), "c", "class folder holds no images"),
    "mismatched image sizes": (
        _images(lambda r: write_png(r / "b" / "9.png", size=(10, 7))),
        "9.png",
        "share one size",
    ),
    "corrupt image": (
        _images(lambda r: (r / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")),
        "bad.png",
        "cannot read the image",
    ),
    "non-image file in class folder": (
        _images(lambda r: (r / "a" / "notes.txt").write_text("hi")),
        "notes.txt",
        "not an image file",
    ),
    "stray file next to class folders": (
        _images(lambda r: (r / "labels.csv").write_text("x")),
        "labels.csv",
        "unexpected file",
    ),
    "folder inside a class folder": (_images(lambda r: (r / "a" / "more").mkdir()), "more", "unexpected folder"),
    "--label with images": (_images(lambda r: None, extra=["--label", "x"]), "imgs", "does not apply"),
    "bad --resize": (_images(lambda r: None, extra=["--resize", "big"]), "--resize", "HEIGHTxWIDTH"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_data_is_one_line_and_exit_2(workdir, capsys, case):
    make, where, message = MALFORMED[case]
    data = workdir / "data"
    data.mkdir()
    args = make(data)
    code, out, err = nasw(["task", "init", "t", *args, "--out", workdir / "tasks"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert where in lines[0] and message in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert not (workdir / "tasks" / "t.toml").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_one_line(workdir, capsys):
    data = workdir / "data"
    data.mkdir()
    code, _, err = nasw(["task", "init", "t", *_perm(data)], capsys)
    assert code == 2 and err.startswith("error: ") and "permission denied" in err


def test_at_least_twenty_kinds_of_malformed_input():
    assert len(MALFORMED) >= 20


# -- task init on good data ---------------------------------------------------------------
def test_csv_task_init_writes_a_task_that_loads(workdir, capsys):
    rows = good_rows(n_per_class=10, features=4)
    write_csv(workdir / "animals.csv", ["a", "b", "Species", "c", "d"], [r[:2] + [r[4]] + r[2:4] for r in rows])
    code, out, err = nasw(["task", "init", "animals", "--data", "animals.csv", "--label", "species"], capsys)
    assert code == 0, err
    assert "label column: 'Species'" in out and "classes: 3: cat (10), dog (10), owl (10)" in out
    assert "input shape: 1 x 4" in out and "wrote" in out
    doc = tomllib.loads((workdir / "tasks" / "animals.toml").read_text())
    assert doc["dataset"] == {
        "loader": "csv",
        "path": "../animals.csv",
        "label": "Species",
        "classes": ["cat", "dog", "owl"],
    }
    assert doc["space"]["kind"] == "chain" and doc["training"]["epochs"] > 0

    # later commands in that folder find it by name; the data path resolves against the task file
    task = load_task("animals")
    assert Path(task.dataset["path"]) == (workdir / "animals.csv").resolve()
    code, out, _ = nasw(["tasks"], capsys)
    assert "animals" in out

    opts = {k: v for k, v in task.dataset.items() if k != "loader"}
    s = load_splits("csv", seed=3, **opts)
    assert s.input_shape == (1, 4) and s.n_classes == 3
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == 30
    assert np.allclose(s.x_train.mean(axis=0), 0, atol=1e-5)  # standardised with training statistics
    again = load_splits("csv", seed=3, **opts)
    assert np.array_equal(again.x_val, s.x_val)


def test_task_found_from_another_folder_via_nasw_tasks(workdir, capsys, monkeypatch):
    good_csv(workdir)
    code, _, err = nasw(["task", "init", "mine", "--data", "data.csv", "--out", "project/defs"], capsys)
    assert code == 0, err
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("NASW_TASKS", str(workdir / "project" / "defs"))
    task = load_task("mine")
    assert task.dataset["path"] == str((workdir / "data.csv").resolve())
    assert load_splits("csv", **{k: v for k, v in task.dataset.items() if k != "loader"}).n_classes == 3


def test_default_label_column_and_fallback_to_last(workdir, capsys):
    rows = good_rows()
    write_csv(workdir / "a.csv", ["x1", "TARGET", "x2", "x3"], [[r[0], r[3], r[1], r[2]] for r in rows])
    code, out, _ = nasw(["task", "init", "a", "--data", "a.csv"], capsys)
    assert code == 0 and "label column: 'TARGET'" in out
    write_csv(workdir / "b.csv", ["x1", "x2", "x3", "kind"], rows)
    code, out, _ = nasw(["task", "init", "b", "--data", "b.csv"], capsys)
    assert code == 0 and "label column: 'kind'" in out


def test_semicolon_csv_and_integer_labels(workdir, capsys):
    rows = [r[:3] + [str(10 * ["cat", "dog", "owl"].index(r[3]))] for r in good_rows()]
    write_csv(workdir / "d.csv", ["f1", "f2", "f3", "class"], rows, sep=";")
    code, out, err = nasw(["task", "init", "d", "--data", "d.csv"], capsys)
    assert code == 0, err
    assert "classes: 3: 0 (6), 10 (6), 20 (6)" in out


def test_refuses_to_overwrite_without_force(workdir, capsys):
    good_csv(workdir)
    assert nasw(["task", "init", "t", "--data", "data.csv"], capsys)[0] == 0
    code, _, err = nasw(["task", "init", "t", "--data", "data.csv"], capsys)
    assert code == 2 and "already exists" in err and "--force" in err
    assert nasw(["task", "init", "t", "--data", "data.csv", "--force"], capsys)[0] == 0


@pytest.mark.parametrize("name", ["has space", "a/b", "", "x.toml"])
def test_bad_task_name(workdir, capsys, name):
    good_csv(workdir)
    code, _, err = nasw(["task", "init", name, "--data", "data.csv"], capsys)
    assert code == 2 and "task name" in err


def test_changed_data_is_caught_when_the_task_loads(workdir, capsys):
    good_csv(workdir)
    assert nasw(["task", "init", "t", "--data", "data.csv"], capsys)[0] == 0
    write_csv(workdir / "data.csv", ["f1", "f2", "f3", "label"], good_rows(classes=("cat", "dog", "emu")))
    code, _, err = nasw(["search", "--task", "t", "--budget", 1, "--store", "memory://changed"], capsys)
    assert code == 2 and "data.csv" in err and "not among the task's classes" in err
    (workdir / "data.csv").unlink()
    code, _, err = nasw(["search", "--task", "t", "--budget", 1, "--store", "memory://changed"], capsys)
    assert code == 2 and "no such" in err and "data.csv" in err


def test_npz_with_test_split_and_channels_last_images(workdir, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 6, 6, 3))
    y = np.repeat(["no", "yes"], 12)
    np.savez(workdir / "imgs.npz", X=x, y=y, x_test=x[:8], y_test=y[::3])
    code, out, err = nasw(["task", "init", "n", "--data", "imgs.npz"], capsys)
    assert code == 0, err
    assert "channels moved first" in out and "input shape: 3 x 6 x 6 (images)" in out
    assert "test set: the 8 examples given" in out
    task = load_task("n")
    s = load_splits("npz", seed=0, valid=0.25, **{k: v for k, v in task.dataset.items() if k != "loader"})
    assert s.input_shape == (3, 6, 6) and len(s.y_test) == 8 and len(s.y_train) + len(s.y_val) == 24


def test_npy_pair_and_folder(workdir, capsys):
    np.save(workdir / "x.npy", X)
    np.save(workdir / "y.npy", Y)
    code, out, err = nasw(["task", "init", "p", "--data", "x.npy"], capsys)
    assert code == 0, err
    doc = tomllib.loads((workdir / "tasks" / "p.toml").read_text())
    assert doc["dataset"]["labels"] == "y.npy" and doc["dataset"]["classes"] == ["0", "1", "2"]
    task = load_task("p")
    s = load_splits("npy", **{k: v for k, v in task.dataset.items() if k != "loader"})
    assert s.input_shape == (1, 4) and s.n_classes == 3
    code, out, err = nasw(["task", "init", "q", "--data", workdir], capsys)
    assert code == 0 and "(npy)" in out


def test_image_folder_grayscale_rgb_and_resize(workdir, capsys):
    image_folder(workdir / "gray", n=4)
    code, out, err = nasw(["task", "init", "g", "--data", "gray"], capsys)
    assert code == 0, err
    assert "grayscale, 8x8 pixels" in out and "input shape: 1 x 8 x 8" in out
    task = load_task("g")
    assert task.split["test"] == 0.25 and task.split["valid"] == 0.25  # raised so every class fits
    s = load_splits("images", **task.split, **{k: v for k, v in task.dataset.items() if k != "loader"})
    assert s.input_shape == (1, 8, 8) and 0.0 <= s.x_train.min() and s.x_train.max() <= 1.0

    root = image_folder(workdir / "rgb", classes=("x", "y", "z"), n=4, mode="RGB")
    write_png(root / "z" / "big.png", size=(12, 10), mode="RGB")
    code, _, err = nasw(["task", "init", "r", "--data", "rgb"], capsys)
    assert code == 2 and "share one size" in err
    code, out, err = nasw(["task", "init", "r", "--data", "rgb", "--resize", "16x12"], capsys)
    assert code == 0, err
    assert "RGB, 12x16 pixels (resized)" in out and "input shape: 3 x 16 x 12" in out
    task = load_task("r")
    assert task.dataset["resize"] == [16, 12]
    s = load_splits("images", **task.split, **{k: v for k, v in task.dataset.items() if k != "loader"})
    assert s.input_shape == (3, 16, 12) and s.n_classes == 3


def test_loader_errors_are_data_errors(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("")
    with pytest.raises(DataError, match="e.csv: the file is empty"):
        load_splits("csv", path=str(p))
