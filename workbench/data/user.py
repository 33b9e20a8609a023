"""Bring your own dataset: CSV files, NumPy arrays and folders of images.

Four loaders (registered in :mod:`workbench.data.base` as ``csv``, ``npz``, ``npy`` and
``images``) read a user's files, check them thoroughly and return fixed stratified splits
(:func:`~workbench.data.base.split_arrays`, the same for a given seed). Every malformed or
inconsistent input raises :class:`~workbench.errors.DataError` with one line naming the file
and the problem.

Layouts:

* **CSV** (``.csv``, ``.tsv``): the first row is a header; every column but the label column is
  a numeric feature. The label column is ``label``, ``target`` or ``class`` (any case) unless
  named, else the last column. Labels may be strings or integers; they are mapped to
  ``0 .. k-1`` in sorted order (the mapping is recorded in the task file as ``classes``).
  Examples are `1 x F` (``F`` features, read as a 1-D signal by the chain space), standardised
  with the training split's mean and standard deviation.
* **NumPy** ``.npz``: arrays ``x`` (or ``X``) and ``y`` (or ``Y``), optionally ``x_test`` and
  ``y_test`` (then kept as the test set). ``.npy``: a features file with its labels in a
  sibling file (``x.npy`` + ``y.npy``, ``NAME_x.npy`` + ``NAME_y.npy``, ``features.npy`` +
  ``labels.npy``, or ``NAME.npy`` + ``NAME_labels.npy``), or a folder holding ``x.npy`` and
  ``y.npy`` (and optionally ``x_test.npy`` / ``y_test.npy``). Features of shape `n x F` become
  `n x 1 x F`; `n x C x L` is kept when ``C <= 4`` (a signal with few channels), `n x L x C`
  with ``C <= 4`` is transposed, any other `n x H x W` is a grayscale image `n x 1 x H x W`;
  `n x C x H x W` is kept and `n x H x W x C` (``C`` in 1, 3, 4) transposed. Standardised like
  CSV features.
* **Images**: a folder with one subfolder per class (the subfolder names are the class
  names) holding ``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.gif``, ``.tif(f)`` or ``.webp``
  files, all of one size unless ``resize = [H, W]`` is given. Read as grayscale `1 x H x W` when
  every image is grayscale, else RGB `3 x H x W`, scaled to ``[0, 1]``. Hidden files
  (``.DS_Store``) are skipped.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data.base import Splits, split_arrays
from workbench.errors import DataError

#: Extensions read as images.
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: Extensions read as CSV tables.
CSV_EXTS = (".csv", ".tsv")
#: Label column names looked for, in order of preference (case-insensitive).
LABEL_NAMES = ("label", "target", "class")
#: Fewest examples of one class: one each for training, validation and test.
MIN_PER_CLASS = 3
#: Cell values read as missing.
_MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


@dataclass(frozen=True)
class RawData:
    """A user's dataset read and checked, before splitting.

    Attributes:
        kind: ``csv``, ``npz``, ``npy`` or ``images``.
        path: The file or folder it was read from.
        x: Inputs `n x C x L` or `n x C x H x W`, float32 (not standardised).
        y: Labels `n`, int64, in ``0 .. k-1``.
        classes: The original label of each class index (as text).
        x_test: A test set that came with the data (`m x ...`), or None.
        y_test: Its labels `m`, or None.
        details: What was inferred, for people (label column, feature names, layout, ...).
    """

    kind: str
    path: str
    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. `1 x 13` or `3 x 32 x 32`."""
        return tuple(int(s) for s in self.x.shape[1:])

    def class_counts(self) -> dict[str, int]:
        """Examples per class (training data plus a given test set)."""
        counts = np.bincount(self.y, minlength=len(self.classes))
        if self.y_test is not None:
            counts = counts + np.bincount(self.y_test, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts)}


# -- formats ------------------------------------------------------------------------------
def detect_format(path: str | os.PathLike[str]) -> str:
    """The loader name for a data path: ``csv``, ``npz``, ``npy`` or ``images``.

    Raises:
        DataError: The path does not exist or has an extension no loader reads.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    ext = p.suffix.lower()
    if p.is_dir():
        if ext in (*CSV_EXTS, ".npz", ".npy"):
            raise DataError(f"{p}: is a folder, expected a {ext} file")
        if (p / "x.npy").is_file() or (p / "X.npy").is_file():
            return "npy"
        return "images"
    if ext in CSV_EXTS:
        return "csv"
    if ext in (".npz", ".npy"):
        return ext[1:]
    raise DataError(
        f"{p}: unknown data format {ext or '(no extension)'!r}; expected a .csv/.tsv file, a .npz or .npy "
        "file, or a folder of images with one subfolder per class"
    )


def read_data(
    path: str | os.PathLike[str],
    kind: str | None = None,
    *,
    label: str | None = None,
    classes: Sequence[str] | None = None,
    resize: Sequence[int] | int | None = None,
    labels: str | None = None,
) -> RawData:
    """Read and check a user's dataset.

    Args:
        path: The file or folder.
        kind: The format (default: by :func:`detect_format`).
        label: CSV: the label column; ``.npz``: the key of the labels array; ``.npy``: the
            labels file.
        classes: The class names recorded in a task file: labels are mapped in this order and
            any other label is an error.
        resize: Images: resize every image to `H x W` (an int for square images).
        labels: ``.npy``: the labels file (same as ``label``).

    Raises:
        DataError: With the file and the problem.
    """
    kind = kind or detect_format(path)
    if kind == "csv":
        raw = read_csv(path, label=label, classes=classes)
    elif kind == "npz":
        raw = read_npz(path, y_key=label, classes=classes)
    elif kind == "npy":
        raw = read_npy(path, labels=labels or label, classes=classes)
    elif kind == "images":
        if label is not None:
            raise DataError(f"{path}: --label does not apply to a folder of images (the subfolders are the classes)")
        raw = read_images(path, resize=resize, classes=classes)
    else:
        raise DataError(f"{path}: unknown data format {kind!r}; expected csv, npz, npy or images")
    check_classes(raw)
    return raw


def _check_file(path: str | os.PathLike[str], what: str = "data file") -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such {what}")
    if p.is_dir():
        raise DataError(f"{p}: is a folder, expected a {what}")
    if not os.access(p, os.R_OK):
        raise DataError(f"{p}: cannot read the {what} (permission denied)")
    return p


# -- labels -------------------------------------------------------------------------------
def _label_text(value: Any) -> str:
    """Canonical text of a label: integral numbers without a decimal point."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


def encode_labels(
    values: Sequence[Any] | np.ndarray, where: str, classes: Sequence[str] | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map labels to ``0 .. k-1``.

    Numbers sort numerically, text lexicographically; with ``classes`` (from a task file) that
    order is used and any other label is an error.

    Args:
        values: `n` labels (integers, integral floats, booleans or strings).
        where: The file (and column) for messages.
        classes: The recorded class names, or None.

    Returns:
        ``(y, classes)``: int64 codes and the label text of each code.

    Raises:
        DataError: Non-integral numbers (regression targets) or labels outside ``classes``.
    """
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            raise DataError(f"{where}: label {i} is {arr[i]!r}; every example needs a label")
        frac = arr != np.round(arr)
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise DataError(
                f"{where}: labels must be class names or integers, but label {i} is {arr[i]!r} "
                "(continuous targets are regression; nasw does classification)"
            )
    if arr.dtype.kind not in "biufUSO":
        raise DataError(f"{where}: labels must be integers or text, got dtype {arr.dtype}")
    texts = [_label_text(v.decode() if isinstance(v, bytes) else v) for v in arr.tolist()]
    if classes is not None:
        order = [str(c) for c in classes]
        index = {name: i for i, name in enumerate(order)}
        unknown = sorted({t for t in texts if t not in index})
        if unknown:
            raise DataError(
                f"{where}: labels {unknown[:5]} are not among the task's classes {order[:10]}; "
                "the data changed since the task was made (re-run `nasw task init --force`)"
            )
        return np.asarray([index[t] for t in texts], dtype=np.int64), tuple(order)
    uniq = sorted(set(texts))
    if arr.dtype.kind in "biuf":
        uniq = sorted(uniq, key=lambda t: float(t))
    index = {name: i for i, name in enumerate(uniq)}
    return np.asarray([index[t] for t in texts], dtype=np.int64), tuple(uniq)


def check_classes(raw: RawData) -> None:
    """At least two classes, each with :data:`MIN_PER_CLASS` examples; test labels known.

    Raises:
        DataError: Naming the class and the count.
    """
    counts = raw.class_counts()
    present = {k: v for k, v in counts.items() if v > 0}
    if len(present) < 2:
        only = next(iter(present), "?")
        raise DataError(
            f"{raw.path}: only one class ({only!r}, {len(raw.y)} examples); classification needs at least two"
        )
    if raw.y_test is not None:
        train_counts = np.bincount(raw.y, minlength=len(raw.classes))
        few = [raw.classes[k] for k in range(len(raw.classes)) if train_counts[k] < 2]
        if few:
            raise DataError(
                f"{raw.path}: class {few[0]!r} has fewer than 2 training examples (outside the given test set); "
                "each class needs at least 2 to carve a stratified validation split"
            )
        return
    few = sorted(((n, name) for name, n in counts.items() if n < MIN_PER_CLASS))
    if few:
        n, name = few[0]
        raise DataError(
            f"{raw.path}: class {name!r} has only {n} example{'s' if n != 1 else ''}; each class needs at least "
            f"{MIN_PER_CLASS} (one each for training, validation and test) for a stratified split"
        )


# -- CSV ----------------------------------------------------------------------------------
def _read_text(p: Path) -> str:
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{p}: cannot read the file ({exc.strerror or exc})") from None
    if b"\x00" in data[:4096]:
        raise DataError(f"{p}: is a binary file, not CSV text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{p}: is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); save it as UTF-8"
        ) from None


def _delimiter(p: Path, first_line: str) -> str:
    if p.suffix.lower() == ".tsv":
        return "\t"
    if "," not in first_line:
        for d in (";", "\t"):
            if d in first_line:
                return d
    return ","


def read_csv(path: str | os.PathLike[str], *, label: str | None = None, classes: Sequence[str] | None = None) -> RawData:
    """Read a CSV file with a header row, numeric feature columns and a label column.

    Args:
        path: The ``.csv`` (comma, or semicolon/tab when the header has no comma) or ``.tsv``.
        label: The label column's name (case-insensitive); default ``label`` / ``target`` /
            ``class``, else the last column.
        classes: Recorded class names (see :func:`encode_labels`).

    Returns:
        `n x 1 x F` float32 features and the labels.

    Raises:
        DataError: Naming the file, line and column of the problem.
    """
    p = _check_file(path)
    text = _read_text(p)
    if not text.strip():
        raise DataError(f"{p}: the file is empty; expected a header row and one row per example")
    first = text.lstrip("\r\n").splitlines()[0]
    reader = csv.reader(io.StringIO(text), delimiter=_delimiter(p, first), skipinitialspace=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip() for cell in row]
                continue
            rows.append([cell.strip() for cell in row])
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{p}: malformed CSV on line {reader.line_num}: {exc}") from None
    if header is None:
        raise DataError(f"{p}: the file holds no values; expected a header row and one row per example")
    for i, name in enumerate(header):
        if not name:
            raise DataError(f"{p}: column {i + 1} of the header has no name")
    lowered = [h.lower() for h in header]
    dup = next((h for i, h in enumerate(header) if lowered[i] in lowered[:i]), None)
    if dup is not None:
        raise DataError(f"{p}: the header names column {dup!r} twice; column names must be unique")
    if len(header) < 2:
        raise DataError(
            f"{p}: the header has one column ({header[0]!r}); expected feature columns and a label column"
        )
    if not rows:
        raise DataError(f"{p}: has a header but no data rows")
    for row, line in zip(rows, lines):
        if len(row) != len(header):
            raise DataError(f"{p}: line {line} has {len(row)} fields, the header has {len(header)}")
    if label is not None:
        if label.lower() not in lowered:
            raise DataError(f"{p}: no label column {label!r}; the columns are {header}")
        li = lowered.index(label.lower())
    else:
        li = next((lowered.index(n) for n in LABEL_NAMES if n in lowered), len(header) - 1)
    label_name = header[li]
    raw_labels = [row[li] for row in rows]
    missing = [line for v, line in zip(raw_labels, lines) if v.lower() in _MISSING]
    if len(missing) == len(rows):
        raise DataError(f"{p}: label column {label_name!r} is empty (no labels on any line)")
    if missing:
        raise DataError(f"{p}: line {missing[0]} has no label in column {label_name!r}")
    labels: list[Any] = raw_labels
    try:
        nums = np.asarray(raw_labels, dtype=np.float64)
    except ValueError:
        nums = None
    if nums is not None:
        labels = nums  # type: ignore[assignment]
    where = f"{p}: label column {label_name!r}"
    try:
        y, names = encode_labels(labels, where, classes)
    except DataError as exc:
        msg = str(exc)
        m = re.search(r"label (\d+) is", msg)
        if m:  # name the line rather than the index
            msg = msg.replace(f"label {m.group(1)} is", f"line {lines[int(m.group(1))]} is", 1)
        raise DataError(msg) from None
    feature_idx = [i for i in range(len(header)) if i != li]
    x = np.empty((len(rows), len(feature_idx)), dtype=np.float64)
    for j, ci in enumerate(feature_idx):
        col = [row[ci] for row in rows]
        try:
            x[:, j] = np.asarray(col, dtype=np.float64)
        except ValueError:
            for value, line in zip(col, lines):
                if value.lower() in _MISSING:
                    raise DataError(f"{p}: line {line} has no value in column {header[ci]!r}") from None
                try:
                    float(value)
                except ValueError:
                    raise DataError(
                        f"{p}: column {header[ci]!r} is not numeric: line {line} holds {value!r} "
                        "(feature columns must be numbers; encode categories as numbers first)"
                    ) from None
            raise  # pragma: no cover - numpy and float() disagree
        bad = ~np.isfinite(x[:, j])
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            what = "a missing value (NaN)" if math.isnan(x[k, j]) else f"an infinite value ({col[k]})"
            raise DataError(f"{p}: line {lines[k]} has {what} in column {header[ci]!r}")
    return RawData(
        kind="csv",
        path=str(p),
        x=x.astype(np.float32)[:, None, :],
        y=y,
        classes=names,
        details={"label": label_name, "features": [header[i] for i in feature_idx]},
    )


# -- NumPy arrays -------------------------------------------------------------------------
def _layout(x: np.ndarray, where: str) -> tuple[np.ndarray, str]:
    """Bring features to `n x C x L` or `n x C x H x W` (see the module docstring)."""
    if x.ndim == 2:
        return x[:, None, :], "n x F features, read as 1 x F"
    if x.ndim == 3:
        a, b = x.shape[1:]
        if a <= 4 < b:
            return x, "n x C x L signals"
        if b <= 4 < a:
            return np.transpose(x, (0, 2, 1)), "n x L x C signals, channels moved first"
        return x[:, None, :, :], "n x H x W grayscale images"
    if x.ndim == 4:
        if x.shape[1] in (1, 3, 4) or x.shape[3] not in (1, 3, 4):
            return x, "n x C x H x W images"
        return np.transpose(x, (0, 3, 1, 2)), "n x H x W x C images, channels moved first"
    raise DataError(
        f"{where}: features must have 2 to 4 dimensions (n x F, n x C x L, n x H x W or n x C x H x W); "
        f"got shape {tuple(x.shape)}"
    )


def _features(x: Any, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: features must be numbers, got dtype {x.dtype}")
    if x.ndim < 2:
        raise DataError(
            f"{where}: features must be one row per example (n x F or more dimensions); got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise DataError(f"{where}: holds no examples (shape {tuple(x.shape)})")
    if min(x.shape[1:]) == 0:
        raise DataError(f"{where}: examples are empty (shape {tuple(x.shape)})")
    x = x.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(len(x), -1).any(axis=1))[0])
        raise DataError(f"{where}: example {i} holds NaN or infinite values ({int(bad.sum())} in all)")
    return x


def _labels(y: Any, where: str, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be one per example (shape n), got shape {tuple(y.shape)}")
    if len(y) != n:
        raise DataError(f"{where}: {n} examples but {len(y)} labels; x and y must have the same length")
    return y


def _finish_arrays(
    kind: str,
    path: Path,
    x: Any,
    y: Any,
    x_test: Any,
    y_test: Any,
    names: tuple[str, str, str, str],
    classes: Sequence[str] | None,
) -> RawData:
    xn, yn, xtn, ytn = names
    xs = _features(x, f"{path}: {xn}")
    xs, layout = _layout(xs, f"{path}: {xn}")
    ys = _labels(y, f"{path}: {yn}", len(xs))
    if (x_test is None) != (y_test is None):
        have, lack = (xtn, ytn) if x_test is not None else (ytn, xtn)
        raise DataError(f"{path}: has {have} but no {lack}; give both or neither")
    xt = yt = None
    if x_test is not None:
        xt = _features(x_test, f"{path}: {xtn}")
        xt, _ = _layout(xt, f"{path}: {xtn}")
        if xt.shape[1:] != xs.shape[1:]:
            raise DataError(
                f"{path}: {xtn} examples have shape {tuple(xt.shape[1:])} but {xn} examples {tuple(xs.shape[1:])}"
            )
        yt = _labels(y_test, f"{path}: {ytn}", len(xt))
    if yt is None:
        code, cls = encode_labels(ys, f"{path}: {yn}", classes)
        code_t = None
    else:
        both, cls = encode_labels(np.concatenate([ys.astype(object), yt.astype(object)]) if ys.dtype != yt.dtype
                                  else np.concatenate([ys, yt]), f"{path}: {yn}/{ytn}", classes)
        code, code_t = both[: len(ys)], both[len(ys):]
    return RawData(
        kind=kind,
        path=str(path),
        x=xs.astype(np.float32),
        y=code,
        classes=cls,
        x_test=None if xt is None else xt.astype(np.float32),
        y_test=code_t,
        details={"layout": layout},
    )


def _load_npy(p: Path, what: str) -> np.ndarray:
    _check_file(p, what)
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickle" in str(exc).lower():
            raise DataError(f"{p}: holds Python objects (a pickled array); save plain numeric arrays") from None
        raise DataError(f"{p}: is not a readable NumPy .npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{p}: is not a readable NumPy .npy file ({exc})") from None


def read_npz(
    path: str | os.PathLike[str], *, y_key: str | None = None, classes: Sequence[str] | None = None
) -> RawData:
    """Read ``x``/``X`` and ``y``/``Y`` (and optionally ``x_test``/``y_test``) from a ``.npz``.

    Raises:
        DataError: A missing key, unreadable archive, pickled objects, a length mismatch, ...
    """
    import zipfile

    p = _check_file(path)
    try:
        with np.load(p, allow_pickle=False) as archive:
            keys = list(archive.files)
            xk = next((k for k in ("x", "X") if k in keys), None)
            yk = y_key if y_key is not None else next((k for k in ("y", "Y") if k in keys), None)
            if xk is None:
                raise DataError(f"{p}: has no features array 'x' (or 'X'); its arrays are {keys}")
            if yk is None or yk not in keys:
                wanted = repr(yk) if yk is not None else "'y' (or 'Y')"
                raise DataError(f"{p}: has no labels array {wanted}; its arrays are {keys}")
            xtk = next((k for k in ("x_test", "X_test") if k in keys), None)
            ytk = next((k for k in ("y_test", "Y_test") if k in keys), None)
            arrays = {k: archive[k] for k in (xk, yk, xtk, ytk) if k is not None}
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(f"{p}: holds Python objects (pickled arrays); save plain numeric arrays") from None
        raise DataError(f"{p}: is not a readable NumPy .npz archive ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{p}: is not a readable NumPy .npz archive ({exc})") from None
    return _finish_arrays(
        "npz", p, arrays[xk], arrays[yk], arrays.get(xtk) if xtk else None, arrays.get(ytk) if ytk else None,
        (xk, yk, xtk or "x_test", ytk or "y_test"), classes,
    )


def _sibling_labels(p: Path) -> Path | None:
    stem = p.stem
    cands = []
    if stem in ("x", "X"):
        cands.append(p.with_name(("y" if stem == "x" else "Y") + p.suffix))
    if re.search(r"[_.-][xX]$", stem):
        cands.append(p.with_name(stem[:-1] + ("y" if stem[-1] == "x" else "Y") + p.suffix))
    if stem.lower() == "features":
        cands.append(p.with_name("labels.npy"))
    cands += [p.with_name(f"{stem}_labels.npy"), p.with_name(f"{stem}.labels.npy")]
    return next((c for c in cands if c.is_file()), None)


def read_npy(
    path: str | os.PathLike[str], *, labels: str | None = None, classes: Sequence[str] | None = None
) -> RawData:
    """Read a features ``.npy`` and its labels ``.npy`` (see the module docstring).

    Args:
        path: The features file, or a folder with ``x.npy`` and ``y.npy``.
        labels: The labels file (default: the sibling file named after ``path``).
        classes: Recorded class names.

    Raises:
        DataError: A missing labels file, unreadable arrays, a length mismatch, ...
    """
    p = Path(path)
    if p.is_dir():
        p = next((p / n for n in ("x.npy", "X.npy") if (p / n).is_file()), p / "x.npy")
    _check_file(p)
    if p.suffix.lower() != ".npy":
        raise DataError(f"{p}: expected a .npy file of features")
    if labels is not None:
        lp = Path(labels)
        if not lp.is_absolute():
            lp = p.parent / lp
    else:
        found = _sibling_labels(p)
        if found is None:
            raise DataError(
                f"{p}: no labels file found next to it (looked for y.npy, NAME_y.npy, labels.npy, "
                f"{p.stem}_labels.npy); name one with --label FILE"
            )
        lp = found
    x = _load_npy(p, "features file")
    y = _load_npy(lp, "labels file")
    xt = yt = None
    if p.stem in ("x", "X"):
        xtp, ytp = p.with_name(p.stem + "_test.npy"), p.with_name(("y" if p.stem == "x" else "Y") + "_test.npy")
        if xtp.is_file() or ytp.is_file():
            xt = _load_npy(xtp, "test features file")
            yt = _load_npy(ytp, "test labels file")
    raw = _finish_arrays("npy", p, x, y, xt, yt, (p.name, lp.name, "x_test.npy", "y_test.npy"), classes)
    return dataclasses.replace(raw, details={**raw.details, "labels_file": str(lp)})


# -- images -------------------------------------------------------------------------------
def _size(resize: Sequence[int] | int | None, where: Path) -> tuple[int, int] | None:
    if resize is None:
        return None
    if isinstance(resize, (int, np.integer)) and not isinstance(resize, bool):
        resize = [int(resize), int(resize)]
    if (
        not isinstance(resize, (list, tuple))
        or len(resize) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 1 <= v <= 4096 for v in resize)
    ):
        raise DataError(f"{where}: resize must be [height, width] in pixels (1..4096), got {resize!r}")
    return int(resize[0]), int(resize[1])


def read_images(
    path: str | os.PathLike[str],
    *,
    resize: Sequence[int] | int | None = None,
    classes: Sequence[str] | None = None,
) -> RawData:
    """Read a folder with one subfolder of images per class.

    Args:
        path: The folder.
        resize: `H x W` to resize every image to (an int for square images); without it all
            images must share one size.
        classes: Recorded class names (subfolders not listed are an error).

    Raises:
        DataError: An empty folder or class folder, a stray or unreadable file, mismatched sizes, ...
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: expected a folder with one subfolder of images per class")
    size = _size(resize, root)
    try:
        entries = sorted(e for e in root.iterdir() if not e.name.startswith("."))
    except OSError as exc:
        raise DataError(f"{root}: cannot list the folder ({exc.strerror or exc})") from None
    stray = [e for e in entries if not e.is_dir()]
    if stray:
        raise DataError(
            f"{stray[0]}: unexpected file in the image folder; expected only subfolders, one per class"
        )
    if not entries:
        raise DataError(f"{root}: holds no class subfolders; expected one subfolder of images per class")
    images: list[tuple[Path, Any]] = []
    labels: list[str] = []
    for folder in entries:
        files = sorted(f for f in folder.iterdir() if not f.name.startswith("."))
        if not files:
            raise DataError(f"{folder}: class folder holds no images")
        for f in files:
            if f.is_dir():
                raise DataError(f"{f}: unexpected folder inside class folder {folder.name!r}; expected image files")
            if f.suffix.lower() not in IMAGE_EXTS:
                raise DataError(
                    f"{f}: not an image file (expected {', '.join(IMAGE_EXTS)}) in class folder {folder.name!r}"
                )
            try:
                with Image.open(f) as im:
                    im.load()
                    img = im.copy()
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
                reason = "permission denied" if isinstance(exc, PermissionError) else "corrupt or not an image"
                raise DataError(f"{f}: cannot read the image ({reason}: {exc})") from None
            images.append((f, img))
            labels.append(folder.name)
    gray = all(img.mode in _GRAY_MODES for _, img in images)
    mode = "L" if gray else "RGB"
    first_path, first = images[0]
    target = size or (first.height, first.width)
    arrays = []
    for f, img in images:
        if size is None and (img.height, img.width) != target:
            raise DataError(
                f"{f}: is {img.width}x{img.height} pixels but {first_path.relative_to(root)} is "
                f"{first.width}x{first.height}; all images must share one size (or set resize = [H, W] "
                "in the task's [dataset], e.g. with `nasw task init --resize 32x32`)"
            )
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            a = np.asarray(img, dtype=np.float64)
            hi = 65535.0 if img.mode.startswith("I") and a.max() > 255 else 255.0
            img = Image.fromarray(np.clip(a / hi * 255.0, 0, 255).astype(np.uint8))
        img = img.convert(mode)
        if size is not None and (img.height, img.width) != size:
            img = img.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(img, dtype=np.float32) / 255.0
        arrays.append(a[None] if a.ndim == 2 else np.transpose(a, (2, 0, 1)))
    y, names = encode_labels(labels, str(root), classes)
    return RawData(
        kind="images",
        path=str(root),
        x=np.stack(arrays),
        y=y,
        classes=names,
        details={"mode": "grayscale" if gray else "RGB", "size": list(target), "resized": size is not None},
    )


# -- splits -------------------------------------------------------------------------------
def to_splits(raw: RawData, *, seed: int, test: float, valid: float, standardize: bool) -> Splits:
    """Fixed stratified splits of checked data, optionally standardised with training statistics.

    Raises:
        DataError: The split is impossible (too few examples for the fractions).
    """
    name = Path(raw.path).stem or Path(raw.path).name
    try:
        splits = split_arrays(
            name, raw.x, raw.y, test=test, valid=valid, seed=seed, x_test=raw.x_test, y_test=raw.y_test
        )
    except ValueError as exc:
        raise DataError(
            f"{raw.path}: cannot split {len(raw.y)} examples of {len(raw.classes)} classes into stratified "
            f"training/validation/test sets with test={test}, valid={valid} ({str(exc).splitlines()[0]}); "
            "add examples or change the [split] fractions"
        ) from None
    n_classes = max(splits.n_classes, len(raw.classes))
    if not standardize:
        return dataclasses.replace(splits, n_classes=n_classes)
    mean = splits.x_train.mean(axis=0, keepdims=True)
    std = splits.x_train.std(axis=0, keepdims=True)
    std = np.where(std > 1e-8, std, 1.0).astype(np.float32)

    def z(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((a - mean) / std, dtype=np.float32)

    return dataclasses.replace(
        splits, x_train=z(splits.x_train), x_val=z(splits.x_val), x_test=z(splits.x_test), n_classes=n_classes
    )


def _classes(classes: Sequence[str] | None) -> list[str] | None:
    return None if classes is None else [str(c) for c in classes]


def load_csv(
    *,
    seed: int,
    test: float,
    valid: float,
    path: str,
    label: str | None = None,
    classes: Sequence[str] | None = None,
    standardize: bool = True,
) -> Splits:
    """Splits of a CSV file (:func:`read_csv`), features standardised with training statistics."""
    raw = read_data(path, "csv", label=label, classes=_classes(classes))
    return to_splits(raw, seed=seed, test=test, valid=valid, standardize=standardize)


def load_npz(
    *,
    seed: int,
    test: float,
    valid: float,
    path: str,
    label: str | None = None,
    classes: Sequence[str] | None = None,
    standardize: bool = True,
) -> Splits:
    """Splits of a ``.npz`` archive (:func:`read_npz`); a given ``x_test``/``y_test`` is the test set."""
    raw = read_data(path, "npz", label=label, classes=_classes(classes))
    return to_splits(raw, seed=seed, test=test, valid=valid, standardize=standardize)


def load_npy(
    *,
    seed: int,
    test: float,
    valid: float,
    path: str,
    labels: str | None = None,
    classes: Sequence[str] | None = None,
    standardize: bool = True,
) -> Splits:
    """Splits of a features ``.npy`` and its labels ``.npy`` (:func:`read_npy`)."""
    raw = read_data(path, "npy", labels=labels, classes=_classes(classes))
    return to_splits(raw, seed=seed, test=test, valid=valid, standardize=standardize)


def load_images(
    *,
    seed: int,
    test: float,
    valid: float,
    path: str,
    resize: Sequence[int] | int | None = None,
    classes: Sequence[str] | None = None,
    standardize: bool = False,
) -> Splits:
    """Splits of a folder of images, one subfolder per class (:func:`read_images`), in ``[0, 1]``."""
    raw = read_data(path, "images", resize=list(resize) if isinstance(resize, tuple) else resize,
                    classes=_classes(classes))
    return to_splits(raw, seed=seed, test=test, valid=valid, standardize=standardize)
