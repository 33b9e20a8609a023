"""Issue 22, data and task files: what a careless or hostile user puts in a data path or a task
folder gets one ``error:`` line (exit 2), never a hang, a killed process or a destroyed file.

* Data paths accept regular files (and folders for images) only, with a size check before
  reading: a device or a FIFO is refused without being opened (#2).
* One task file that does not read (nested without end, ...) is listed as broken by
  ``nasw tasks`` and hides no other; loading it is one clear error (#8).
* ``nasw task init`` checks everything before it writes, then writes through a temporary file
  and one rename: a failure leaves the old task file as it was (#9).
* Task names are letters, digits, ``-_.``; whatever ``nasw tasks`` prints is terminal-safe (#12).
* Declared sizes (``.npy`` headers, image dimensions) are checked before anything is allocated (#13).
* Every numeric field of a task file has a type (booleans are not numbers) and a finite range (#14).
* The CSV header check is linear in the number of columns (#17).
* Task files are written with the user's umask (#18).
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import struct
import threading
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import nasw, tiny_toml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.errors import TaskError
from workbench.task import load_task, parse_task

FUZZ = settings(
    max_examples=int(os.environ.get("NASW_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)


def one_error_line(code: int, err: str, *fragments: str) -> None:
    """Exit 2 with one ``error:`` line (no traceback, no internal error) holding every fragment."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "internal error" not in err and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], err


def write_csv(path: Path, n: int = 30, labels: tuple[str, ...] = ("a", "b")) -> Path:
    rng = np.random.default_rng(0)
    rows = ["f1,f2,label"] + [f"{rng.random():.4f},{rng.random():.4f},{labels[i % len(labels)]}" for i in range(n)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def task_file(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def csv_task(name: str, data: str, loader: str = "csv") -> str:
    """A tiny trained task reading ``data`` (a TOML string is written as given)."""
    return tiny_toml(name, loader=loader).replace(f'loader = "{loader}"', f'loader = "{loader}"\npath = "{data}"', 1)


@contextlib.contextmanager
def address_space_margin(margin: int = 1 << 30):
    """Cap this process's address space at its current size plus ``margin``: code that reads a
    device without end fails with MemoryError instead of taking the machine's memory."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    status = Path("/proc/self/status").read_text()
    vm = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmSize:"))) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + margin if hard == resource.RLIM_INFINITY else hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def fifo_unblocker(fifo: Path, after: float = 5.0):
    """A FIFO whose reader is released after ``after`` seconds (a writer opens and closes it), so
    code that opens it ends with an empty read instead of hanging the test run."""
    stop = threading.Event()

    def release() -> None:
        if stop.wait(after):
            return
        while not stop.is_set():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader yet
                time.sleep(0.05)

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


# -- #2: devices and FIFOs as data ---------------------------------------------------------------
def test_task_init_refuses_a_device_behind_a_csv_name(tmp_path, capsys):
    link = tmp_path / "zero.csv"
    link.symlink_to("/dev/zero")
    with address_space_margin():
        code, _, err = nasw(["task", "init", "zero", "--data", link, "--out", tmp_path / "tasks"], capsys)
    one_error_line(code, err, "zero.csv", "character device", "not a regular file")
    assert not (tmp_path / "tasks" / "zero.toml").exists()


def test_search_refuses_a_task_whose_data_path_is_dev_zero(tmp_path, capsys):
    path = task_file(tmp_path, "zero", csv_task("zero", "/dev/zero"))
    with address_space_margin():
        code, _, err = nasw(["search", "--task", path, "--budget", 1, "--store", "memory://h22-zero"], capsys)
    one_error_line(code, err, "/dev/zero", "character device")


def test_a_fifo_as_data_never_blocks_task_init_or_search(tmp_path, capsys):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with fifo_unblocker(fifo):
        code, _, err = nasw(["task", "init", "pipe", "--data", fifo, "--out", tmp_path / "tasks"], capsys)
    one_error_line(code, err, "pipe.csv", "FIFO")
    path = task_file(tmp_path, "pipe", csv_task("pipe", str(fifo)))
    with fifo_unblocker(fifo):
        code, _, err = nasw(["search", "--task", path, "--budget", 1, "--store", "memory://h22-fifo"], capsys)
    one_error_line(code, err, "pipe.csv", "FIFO")


def test_a_fifo_among_images_or_arrays_is_refused(tmp_path, capsys):
    from PIL import Image

    images = tmp_path / "images"
    for cls in ("a", "b"):
        (images / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(images / cls / f"{i}.png")
    os.mkfifo(images / "b" / "9.png")
    with fifo_unblocker(images / "b" / "9.png"):
        code, _, err = nasw(["task", "init", "imgs", "--data", images, "--out", tmp_path / "tasks"], capsys)
    one_error_line(code, err, "9.png", "FIFO")
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    np.save(arrays / "x.npy", np.zeros((6, 4)))
    os.mkfifo(arrays / "y.npy")
    with fifo_unblocker(arrays / "y.npy"):
        args = ["task", "init", "arr", "--data", arrays / "x.npy", "--label", "y.npy", "--out", tmp_path / "tasks"]
        code, _, err = nasw(args, capsys)
    one_error_line(code, err, "y.npy", "FIFO")


def test_a_data_file_over_the_size_limit_is_refused_before_reading(tmp_path, capsys, monkeypatch):
    data = write_csv(tmp_path / "data.csv")
    monkeypatch.setenv("NASW_MAX_DATA_BYTES", "100")
    code, _, err = nasw(["task", "init", "big", "--data", data, "--out", tmp_path / "tasks"], capsys)
    one_error_line(code, err, "data.csv", "more than the limit", "NASW_MAX_DATA_BYTES")


# -- #8: a task file nested without end ------------------------------------------------------------
@pytest.mark.parametrize(
    "deep",
    [
        "x = " + "[" * 100_000 + "]" * 100_000 + "\n",  # RecursionError inside tomllib
        "x = " + "{a = " * 40 + "1" + "}" * 40 + "\n",  # reads, but nests past the limit
    ],
    ids=["arrays-100000-deep", "tables-40-deep"],
)
def test_one_deeply_nested_task_file_hides_no_other(tmp_path, capsys, monkeypatch, deep):
    folder = tmp_path / "tasks"
    task_file(folder, "good", tiny_toml("good"))
    bad = task_file(folder, "deep", tiny_toml("deep") + deep.replace("x = ", "[meta_features]\nx = ", 1))
    monkeypatch.setenv("NASW_TASKS", str(folder))
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = nasw(["tasks"], capsys)
    assert code == 0, err
    assert any("good" in line and "trained" in line for line in out.splitlines())
    assert any("deep" in line and "broken" in line and "nest" in line for line in out.splitlines()), out
    assert "digits" in out  # the shipped tasks are still listed
    with pytest.raises(TaskError, match="nest"):
        load_task(str(bad))
    code, _, err = nasw(["search", "--task", bad, "--budget", 1, "--store", "memory://h22-deep"], capsys)
    one_error_line(code, err, "deep.toml", "nest")


@FUZZ
@given(depth=st.integers(1, 3000), kinds=st.lists(st.sampled_from(["[", "{a = "]), min_size=1, max_size=3))
def test_random_nesting_is_a_task_or_a_task_error(tmp_path, depth, kinds):
    opening = [kinds[i % len(kinds)] for i in range(depth)]
    closing = ["]" if o == "[" else "}" for o in reversed(opening)]
    path = task_file(tmp_path, "nest", tiny_toml("nest") + f"[fidelity]\nx = {''.join(opening)}1{''.join(closing)}\n")
    try:
        parse_task(path)
    except TaskError as exc:
        assert "\n" not in str(exc)


# -- #9: task init --force that fails ----------------------------------------------------------------
@pytest.fixture
def good_task(tmp_path, capsys):
    """A task written by ``nasw task init good``: (its folder, its bytes)."""
    folder = tmp_path / "tasks"
    code, _, err = nasw(["task", "init", "good", "--data", write_csv(tmp_path / "ok.csv"), "--out", folder], capsys)
    assert code == 0, err
    return folder, (folder / "good.toml").read_bytes()


def test_a_class_label_with_a_del_byte_writes_a_readable_task(tmp_path, capsys, good_task):
    folder, _ = good_task
    data = write_csv(tmp_path / "del.csv", labels=("x", "y\x7f"))
    code, out, err = nasw(["task", "init", "good", "--data", data, "--out", folder, "--force"], capsys)
    assert code == 0, err
    assert "\x7f" not in out  # shown escaped
    assert load_task(str(folder / "good.toml")).dataset["classes"] == ["x", "y\x7f"]


def test_a_failing_init_with_force_leaves_the_old_task_file(tmp_path, capsys, monkeypatch, good_task):
    from workbench import task_init

    folder, before = good_task
    monkeypatch.setattr(task_init, "render_task", lambda *a, **k: 'name = "good"\nbroken = [\n')
    code, _, err = nasw(["task", "init", "good", "--data", tmp_path / "ok.csv", "--out", folder, "--force"], capsys)
    one_error_line(code, err, "would not read back")
    assert (folder / "good.toml").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["good.toml"]  # no temporary file left


def test_an_escape_in_a_new_name_writes_nothing(tmp_path, capsys, good_task):
    folder, before = good_task
    for name in ("good\x1b[31m", "good\x7f", "_good", "go od", "g" * 101):
        code, _, err = nasw(["task", "init", name, "--data", tmp_path / "ok.csv", "--out", folder, "--force"], capsys)
        one_error_line(code, err, "letters, digits")
        assert "\x1b" not in err and "\x7f" not in err
    assert sorted(p.name for p in folder.iterdir()) == ["good.toml"]
    assert (folder / "good.toml").read_bytes() == before


# -- #12: control characters in task names and descriptions ---------------------------------------------
def test_escape_sequences_in_task_files_never_reach_the_terminal(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "tasks"
    evil = task_file(folder, "evil", tiny_toml("evil").replace('name = "evil"', 'name = "evil\\u001b[2J"'))
    loud = "x \x1b]0;title\x07 \x9b31m \u202eevil [bold]markup[/bold]"
    task_file(
        folder, "loud", tiny_toml("loud", "x").replace('description = "x"', f"description = {_toml_string(loud)}")
    )
    task_file(folder, "esc\x1b[31m", tiny_toml("x") + "[broken\n")  # a file name with an escape
    monkeypatch.setenv("NASW_TASKS", str(folder))
    monkeypatch.setenv("COLUMNS", "250")
    code, out, err = nasw(["tasks"], capsys)
    assert code == 0, err
    assert all(c.isprintable() or c == "\n" for c in out), repr(out)
    assert "[bold]markup[/bold]" in out  # plain text, not rich markup
    assert any("evil" in line and "broken" in line for line in out.splitlines()), out
    with pytest.raises(TaskError, match="letters, digits"):
        load_task(str(evil))
    code, _, err = nasw(["search", "--task", evil, "--budget", 1, "--store", "memory://h22-evil"], capsys)
    one_error_line(code, err, "letters, digits")
    assert "\x1b" not in err


@FUZZ
@given(name=st.text(max_size=12), description=st.text(max_size=40))
def test_random_names_and_descriptions_print_safely(tmp_path_factory, monkeypatch, name, description):
    from workbench.task import check_task_name, printable

    folder = tmp_path_factory.mktemp("tasks")
    text = tiny_toml("x", "x").replace('name = "x"', f"name = {_toml_string(name)}", 1)
    task_file(folder, "t", text.replace('description = "x"', f"description = {_toml_string(description)}", 1))
    try:
        task = parse_task(folder / "t.toml")
    except TaskError as exc:
        assert all(c.isprintable() for c in str(exc))
    else:
        assert check_task_name(task.name) == name and name.isprintable()
    assert all(c.isprintable() for c in printable(description))
    monkeypatch.setenv("NASW_TASKS", str(folder))
    code, out, err = nasw(["tasks"])
    assert code == 0, err
    assert all(c.isprintable() or c == "\n" for c in out), repr(out)


def _toml_string(text: str) -> str:
    return '"' + "".join(f"\\u{ord(c):04X}" if ord(c) < 0x20 or c in '\x7f"\\' else c for c in text) + '"'


# -- #13: declared sizes ---------------------------------------------------------------------------------
def _npy_header_only(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buf.getvalue() + bytes(64)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


def test_a_huge_declared_npy_or_npz_shape_is_a_data_error(tmp_path, capsys):
    folder = tmp_path / "npy"
    folder.mkdir()
    (folder / "x.npy").write_bytes(_npy_header_only((100_000_000, 300_000_000)))  # 3e16 values
    np.save(folder / "y.npy", np.arange(6) % 2)
    code, _, err = nasw(["task", "init", "huge", "--data", folder / "x.npy", "--out", tmp_path / "tasks"], capsys)
    one_error_line(code, err, "x.npy", "declares shape (100000000, 300000000)", "more than the limit")
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as archive:
        archive.writestr("x.npy", _npy_header_only((100_000_000, 300_000_000)))
        archive.writestr("y.npy", (folder / "y.npy").read_bytes())
    code, _, err = nasw(["task", "init", "huge", "--data", tmp_path / "huge.npz", "--out", tmp_path / "tasks"], capsys)
    one_error_line(code, err, "huge.npz: x", "declares shape", "more than the limit")


@pytest.mark.parametrize("side", [40_000, 10_000], ids=["over-twice-PIL-limit", "over-PIL-limit"])
def test_a_huge_declared_image_is_a_data_error(tmp_path, capsys, side):
    from PIL import Image

    root = tmp_path / "images"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(root / cls / f"{i}.png")
    (root / "a" / "9.png").write_bytes(_png_header_only(side, side))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = nasw(["task", "init", "imgs", "--data", root, "--out", tmp_path / "tasks"], capsys)
    one_error_line(code, err, "9.png", "million pixels", "more than the limit")
    assert not [w for w in caught if "DecompressionBomb" in type(w.message).__name__]


# -- #14: numeric task fields --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "section, values, message",
    [
        ("training", {"epochs": True}, "[training] epochs must be a positive integer"),
        ("training", {"epochs": 10**18}, "[training] epochs must be a positive integer (at most"),
        ("training", {"batch_size": False}, "[training] batch_size"),
        ("training", {"lr": float("inf")}, "[training] lr must be a finite number in [0, 10]"),
        ("training", {"lr": True}, "[training] lr"),
        ("training", {"weight_decay": 1e300}, "[training] weight_decay"),
        ("training", {"label_smoothing": 1.5}, "[training] label_smoothing must be a finite number in [0, 1)"),
        ("training", {"finetune_epochs": True}, "[training] finetune_epochs"),
        ("training", {"finetune_lr": float("inf")}, "[training] finetune_lr"),
        ("training", {"max_seconds": 1e300}, "[training] max_seconds"),
        ("training", {"grad_clip": 1e300}, "[training] grad_clip"),
        ("split", {"seed": True}, "[split] seed must be an integer in [0, 2147483647]"),
        ("split", {"seed": -1}, "[split] seed"),
        ("split", {"test": 0.5, "valid": 0.5}, "[split] test and valid together"),
        ("meta_features", {"n": float("inf")}, "[meta_features] values must be numbers"),
        ("fidelity", {"epochs": [1, float("inf")]}, "[fidelity] epochs must be at most"),
        ("fidelity", {"eta": 10**18}, "[fidelity] eta must be at most"),
    ],
)
def test_numeric_task_fields_have_types_and_bounds(tmp_path, capsys, monkeypatch, section, values, message):
    from helpers import task_toml, tiny_doc

    doc = tiny_doc("numbers")
    doc[section] = {**doc.get(section, {}), **values}
    path = task_file(tmp_path / "tasks", "numbers", task_toml(doc))
    with pytest.raises(TaskError) as exc:
        parse_task(path)
    assert message in str(exc.value)
    monkeypatch.setenv("NASW_TASKS", str(tmp_path / "tasks"))
    monkeypatch.setenv("COLUMNS", "300")
    code, out, err = nasw(["tasks"], capsys)
    assert code == 0, err
    assert any("numbers" in line and "broken" in line for line in out.splitlines()), out


def test_the_shipped_and_tiny_tasks_are_within_the_bounds():
    from helpers import tiny_task

    from workbench.task import list_tasks

    assert {"digits", "mnist1d", "nbgraph-cora"} <= {t.name for t in list_tasks()}
    tiny_task(training={"epochs": 100_000, "lr": 10, "finetune_shrink": 1, "max_seconds": 4})


# -- #17: a CSV with 100,000 columns -------------------------------------------------------------------
def test_a_csv_with_100000_columns_reads_in_seconds(tmp_path, capsys):
    n = 100_000
    header = ",".join(f"c{i}" for i in range(n)) + ",label"
    rows = [",".join(["1"] * n) + f",{j % 2}" for j in range(12)]
    data = tmp_path / "wide.csv"
    data.write_text("\n".join([header, *rows]) + "\n")
    start = time.perf_counter()
    code, _, err = nasw(["task", "init", "wide", "--data", data, "--out", tmp_path / "tasks"], capsys)
    took = time.perf_counter() - start
    assert code == 0, err
    assert took < 30, f"{took:.1f} s for {n} columns"  # quadratic: about a minute here


def test_a_duplicate_column_is_still_named(tmp_path, capsys):
    data = tmp_path / "dup.csv"
    data.write_text("a,b,A,label\n" + "".join(f"1,2,3,{i % 2}\n" for i in range(6)))
    code, _, err = nasw(["task", "init", "dup", "--data", data, "--out", tmp_path / "tasks"], capsys)
    one_error_line(code, err, "names column 'A' twice")


# -- #18: the umask ----------------------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_task_init_writes_with_the_umask(tmp_path, capsys, umask, mode):
    data = write_csv(tmp_path / "ok.csv")
    old = os.umask(umask)
    try:
        code, _, err = nasw(["task", "init", "shared", "--data", data, "--out", tmp_path / "tasks"], capsys)
        assert code == 0, err
        assert (tmp_path / "tasks" / "shared.toml").stat().st_mode & 0o777 == mode
        code, _, err = nasw(["task", "init", "shared", "--data", data, "--out", tmp_path / "tasks", "--force"], capsys)
        assert code == 0, err
        assert (tmp_path / "tasks" / "shared.toml").stat().st_mode & 0o777 == mode
    finally:
        os.umask(old)
