"""A user's dataset read and checked, before splitting: :class:`RawData`, and the checks every
format shares (a readable file, labels mapped to ``0 .. k-1``, enough examples of each class).

The formats themselves are read by :mod:`workbench.data.csv_files`, :mod:`workbench.data.arrays`
and :mod:`workbench.data.image_folders`; :mod:`workbench.data.user` documents their layouts.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import DataError

#: Fewest examples of one class: one each for training, validation and test.
MIN_PER_CLASS = 3


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


# -- files --------------------------------------------------------------------------------
#: Environment variable that overrides :data:`MAX_DATA_BYTES`.
MAX_DATA_BYTES_ENV = "NASW_MAX_DATA_BYTES"
#: Largest data file read, and largest array a file may declare (counted as float64, the form
#: features are checked in), in bytes: a bound on the memory one dataset may take.
MAX_DATA_BYTES = 8 * 2**30

_NOT_REGULAR = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def max_data_bytes() -> int:
    """Most bytes one data file (or one array it declares) may take: ``$NASW_MAX_DATA_BYTES`` or
    :data:`MAX_DATA_BYTES`.

    Raises:
        DataError: The variable is not a positive number.
    """
    text = os.environ.get(MAX_DATA_BYTES_ENV)
    if not text:
        return MAX_DATA_BYTES
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 1 <= value < 2**63:
        raise DataError(f"{MAX_DATA_BYTES_ENV} must be a positive number of bytes, got {text!r}")
    return int(value)


def size_text(n: float) -> str:
    """Bytes for people: ``512 bytes``, ``3.2 MiB``, ``8.0 GiB``."""
    for unit, scale in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def check_size(n_bytes: float, where: str, what: str) -> None:
    """Refuse ``n_bytes`` over :func:`max_data_bytes` before anything of that size is allocated.

    Raises:
        DataError: Naming ``where``, what is that large and the limit.
    """
    limit = max_data_bytes()
    if n_bytes > limit:
        raise DataError(
            f"{where}: {what} takes {size_text(n_bytes)}, more than the limit of {size_text(limit)} "
            f"(set {MAX_DATA_BYTES_ENV} to raise it)"
        )


def regular_file_stat(p: Path, what: str = "data file") -> os.stat_result:
    """``p``'s status (links followed) when it is a regular file; never opens it, so a FIFO or a
    device is refused before it could block or be read without end.

    Raises:
        DataError: It does not exist, is a folder, a FIFO, a device or a socket.
    """
    try:
        st = p.stat()
    except FileNotFoundError:
        raise DataError(f"{p}: no such {what}") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot read the {what} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{p}: is a folder, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _NOT_REGULAR if test(st.st_mode)), "not a regular file")
        raise DataError(f"{p}: is {kind}, not a regular file; expected a {what}")
    return st


def check_file(path: str | os.PathLike[str], what: str = "data file") -> Path:
    """``path`` as a :class:`~pathlib.Path` when it is a readable regular file of at most
    :func:`max_data_bytes` bytes.

    Raises:
        DataError: It does not exist, is a folder, a FIFO, a device or a socket, is too large or
            cannot be read.
    """
    p = Path(path)
    st = regular_file_stat(p, what)
    if not os.access(p, os.R_OK):
        raise DataError(f"{p}: cannot read the {what} (permission denied)")
    check_size(st.st_size, str(p), f"the {what}")
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
