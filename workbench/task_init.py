"""``nasw task init``: write a task file for a user's own dataset after inspecting it."""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.data.user import RawData, detect_format, read_data, to_splits
from workbench.errors import TaskError, UserError
from workbench.task import check_task_name, parse_task_dict, printable, resolve_data_path, tasks_dirs

DEFAULT_SPLIT = {"seed": 0, "test": 0.2, "valid": 0.15}


@dataclass(frozen=True)
class InitResult:
    """What :func:`init_task` wrote and inferred.

    Attributes:
        path: The task file written.
        raw: The dataset as read.
        text: The task file's TOML text.
        lines: What was inferred, one sentence a line, for people.
        warnings: Things the user should know (another task with the same name, ...).
    """

    path: Path
    raw: RawData
    text: str
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def data_domain(raw: RawData) -> str:
    """``tabular`` (CSV or `n x F` arrays), ``signals`` (`C x L`) or ``images`` (`C x H x W`)."""
    if len(raw.input_shape) == 3:
        return "images"
    if raw.kind == "csv" or raw.input_shape[0] == 1 and str(raw.details.get("layout", "")).startswith("n x F"):
        return "tabular"
    return "signals"


def suggest_settings(raw: RawData) -> dict[str, dict[str, Any]]:
    """A chain space, training settings and meta-features suited to the data's kind and size.

    Returns:
        ``{"split": ..., "space": ..., "training": ..., "meta_features": ...}``.
    """
    n = len(raw.y) + (0 if raw.y_test is None else len(raw.y_test))
    domain = data_domain(raw)
    if domain == "tabular":
        space = {
            "kind": "chain",
            "max_layers": 4,
            "kernels": [3],
            "widths": [16, 32],
            "dense_widths": [32, 64, 128],
            "max_dense": 2,
        }
    elif domain == "signals":
        space = {
            "kind": "chain",
            "max_layers": 5,
            "kernels": [3, 5, 7],
            "widths": [16, 32, 64],
            "dense_widths": [64, 128],
        }
    else:
        pixels = raw.input_shape[1] * raw.input_shape[2]
        space = {
            "kind": "chain",
            "max_layers": 6 if pixels > 32 * 32 else 5,
            "kernels": [3, 5],
            "widths": [16, 32, 64],
            "dense_widths": [64, 128],
        }
    epochs = 30 if n <= 1000 else 20 if n <= 10000 else 10
    batch = 32 if n < 500 else 64 if n < 5000 else 128
    # small datasets: validation and test sets need at least one example of every class
    k, n_given = len(raw.classes), len(raw.y)
    split: dict[str, Any] = {"seed": DEFAULT_SPLIT["seed"], "valid": _fraction(DEFAULT_SPLIT["valid"], k, n_given)}
    if raw.y_test is None:
        split["test"] = _fraction(DEFAULT_SPLIT["test"], k, n_given)
    return {
        "split": split,
        "space": space,
        "training": {"epochs": epochs, "batch_size": batch, "lr": 0.003, "weight_decay": 0.0001},
        "meta_features": {f"domain_{domain}": 1},
    }


def _fraction(default: float, n_classes: int, n: int) -> float:
    """``default``, raised (to two decimals) so that a stratified part holds every class once."""
    return max(default, math.ceil(100 * n_classes / max(n, 1)) / 100)


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and every control character TOML forbids raw
    (U+0000-U+001F, U+007F) escaped."""
    out = (_TOML_ESCAPES.get(c) or (f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F else c) for c in text)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_table(name: str, values: Mapping[str, Any], comments: Mapping[str, str] | None = None) -> list[str]:
    out = [f"[{name}]"]
    for key, value in values.items():
        line = f"{key} = {_toml_value(value)}"
        note = (comments or {}).get(key)
        out.append(f"{line:<32} # {note}" if note else line)
    return out + [""]


def _stored_path(data: Path, folder: Path) -> str:
    """The data path as written: relative to the task file's folder when the data lives in the
    project (the folder above ``tasks/``), else absolute."""
    project = folder.parent
    try:
        data.relative_to(project)
    except ValueError:
        return data.as_posix()
    return Path(os.path.relpath(data, folder)).as_posix()


def render_task(
    name: str, dataset: Mapping[str, Any], settings: Mapping[str, Mapping[str, Any]], description: str
) -> str:
    """The TOML text of a task file."""
    lines = [
        f"# Written by `nasw task init {name}`; edit freely (see README.md, 'Adding a task').",
        f"name = {_toml_value(name)}",
        f"description = {_toml_value(description)}",
        'kind = "trained"',
        "",
    ]
    lines += _toml_table(
        "dataset",
        dataset,
        {"path": "relative to this file's folder, or absolute"}
        if not Path(str(dataset["path"])).is_absolute()
        else None,
    )
    lines += _toml_table("split", settings["split"], {"seed": "fixed stratified splits for this seed"})
    lines += _toml_table("metric", {"objective": "val_accuracy", "report": "test_accuracy"})
    lines += _toml_table("space", settings["space"])
    lines += _toml_table("training", settings["training"])
    lines += _toml_table("meta_features", settings["meta_features"])
    return "\n".join(lines).rstrip() + "\n"


def _shape(shape: Sequence[int]) -> str:
    return " x ".join(str(s) for s in shape)


def describe(raw: RawData) -> list[str]:
    """What was inferred from the data, for people (names from the data shown terminal-safe)."""
    counts = raw.class_counts()
    shown = ", ".join(f"{printable(k, 60)} ({v})" for k, v in list(counts.items())[:12])
    if len(counts) > 12:
        shown += f", ... ({len(counts) - 12} more)"
    n = len(raw.y) + (0 if raw.y_test is None else len(raw.y_test))
    out = [f"data: {printable(raw.path)} ({raw.kind}), {n} examples"]
    if raw.kind == "csv":
        feats = raw.details["features"]
        names = ", ".join(printable(f, 60) for f in feats[:8]) + (
            f", ... ({len(feats) - 8} more)" if len(feats) > 8 else ""
        )
        out.append(f"label column: {raw.details['label']!r}; {len(feats)} numeric feature columns: {names}")
    elif raw.kind in ("npz", "npy"):
        out.append(f"layout: {raw.details['layout']}")
    else:
        d = raw.details
        out.append(f"images: {d['mode']}, {d['size'][1]}x{d['size'][0]} pixels{' (resized)' if d['resized'] else ''}")
    out.append(f"classes: {len(counts)}: {shown}")
    out.append(f"input shape: {_shape(raw.input_shape)} ({data_domain(raw)})")
    if raw.y_test is not None:
        out.append(f"test set: the {len(raw.y_test)} examples given with the data")
    return out


def _check_text(text: str, name: str, folder: Path) -> None:
    """The task file's text reads back as this task (TOML, UTF-8, a valid task).

    Raises:
        UserError: Saying what would not read back.
    """
    import tomllib

    try:
        text.encode("utf-8")
        doc = tomllib.loads(text)
        parse_task_dict(resolve_data_path(doc, folder), where=f"{name}.toml", strict_name=True)
    except (UnicodeEncodeError, tomllib.TOMLDecodeError, TaskError) as exc:
        raise UserError(
            f"the task file for {name!r} would not read back ({printable(str(exc), 300)}); nothing written"
        ) from None


def write_atomically(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` through a temporary file in the same folder and one
    ``os.replace``: readers see the old file or the new one, never a part; a failure leaves the
    old file as it was. The file's mode is ``0666`` less the umask, as for any new file.

    Raises:
        UserError: The folder or the file cannot be written.
    """
    data = text.encode("utf-8")
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            candidate = target.with_name(f".{target.stem}-{secrets.token_hex(4)}.tmp")
            try:  # O_EXCL: never an existing file or link; mode 0o666 & ~umask, applied by the kernel
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            except FileExistsError:
                continue
            tmp = candidate
            break
        else:  # pragma: no cover - 100 random names taken
            raise FileExistsError(f"no free temporary name next to {target}")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise UserError(f"cannot write {printable(str(target))}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def init_task(
    name: str,
    data: str | os.PathLike[str],
    *,
    label: str | None = None,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    resize: Sequence[int] | None = None,
) -> InitResult:
    """Inspect a dataset and write ``NAME.toml`` into ``out`` (default ``./tasks``).

    Args:
        name: Task name (the MLflow experiment name): no spaces or slashes.
        data: A CSV file, ``.npz`` / ``.npy`` file, or a folder of images (one subfolder per class).
        label: CSV: label column; ``.npz``: labels key; ``.npy``: labels file.
        out: Folder to write the task file into (created if needed).
        force: Overwrite an existing task file.
        resize: Images: `H x W` to resize to.

    Returns:
        The written file and what was inferred.

    Raises:
        UserError: A bad name, an existing file without ``force``.
        DataError: Malformed data (naming the file and the problem).
    """
    check_task_name(name, "nasw task init")  # before anything is read or written
    if name.lower().endswith(".toml"):
        raise UserError(f"a task name does not end in .toml (the file is NAME.toml), got {name!r}")
    folder = Path(out) if out is not None else Path.cwd() / "tasks"
    target = folder / f"{name}.toml"
    if target.exists() and not force:
        raise UserError(f"{target} already exists; pass --force to overwrite it")
    data_path = Path(data).expanduser()
    kind = detect_format(data_path)
    raw = read_data(data_path, kind, label=label, resize=resize)
    settings = suggest_settings(raw)
    to_splits(
        raw,
        seed=settings["split"]["seed"],
        test=settings["split"].get("test", DEFAULT_SPLIT["test"]),
        valid=settings["split"]["valid"],
        standardize=False,
    )  # the split must be possible
    folder_abs = folder.resolve() if folder.exists() else Path(os.path.abspath(folder))
    dataset: dict[str, Any] = {"loader": kind, "path": _stored_path(data_path.resolve(), folder_abs)}
    if kind == "csv":
        dataset["label"] = raw.details["label"]
    elif kind == "npz" and label is not None:
        dataset["label"] = label
    elif kind == "npy":
        labels_file = Path(raw.details["labels_file"]).resolve()
        dataset["labels"] = os.path.relpath(labels_file, Path(raw.path).resolve().parent)
    elif kind == "images" and resize is not None:
        dataset["resize"] = [int(resize[0]), int(resize[1])]
    dataset["classes"] = list(raw.classes)
    n = len(raw.y) + (0 if raw.y_test is None else len(raw.y_test))
    description = (
        f"{data_path.name}: {n} examples, {len(raw.classes)} classes, input "
        f"{_shape(raw.input_shape)} (made by nasw task init)"
    )
    text = render_task(name, dataset, settings, description)
    _check_text(text, name, folder_abs)  # before anything is written: a failure leaves any old file
    write_atomically(target, text)
    warnings = []
    for d in tasks_dirs():
        other = d / f"{name}.toml"
        if other.is_file() and other.resolve() != target.resolve():
            warnings.append(
                f"another task file is also named {name!r}: {other}; searches of both would share "
                "one MLflow experiment, consider another name"
            )
            break
    sp, tr = settings["space"], settings["training"]
    lines = describe(raw) + [
        f"split: seed {settings['split']['seed']}, validation {settings['split']['valid']:.0%}"
        + (f", test {settings['split']['test']:.0%}" if "test" in settings["split"] else ", test = the given test set")
        + (", features standardised with training statistics" if kind != "images" else ""),
        f"space: chain, up to {sp['max_layers']} layers, kernels {sp['kernels']}, widths {sp['widths']}, "
        f"dense {sp['dense_widths']}",
        f"training: {tr['epochs']} epochs, batch {tr['batch_size']}, lr {tr['lr']}",
    ]
    return InitResult(path=target, raw=raw, text=text, lines=lines, warnings=warnings)
