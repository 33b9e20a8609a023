"""CSV tables (``.csv``, ``.tsv``): a header row, numeric feature columns and a label column.

The layout is documented in :mod:`workbench.data.user`.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data.raw import RawData, check_file, check_size, encode_labels, max_data_bytes
from workbench.errors import DataError

#: Extensions read as CSV tables.
CSV_EXTS = (".csv", ".tsv")
#: Label column names looked for, in order of preference (case-insensitive).
LABEL_NAMES = ("label", "target", "class")
#: Cell values read as missing.
_MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}


def _read_text(p: Path) -> str:
    limit = max_data_bytes()
    try:
        with open(p, "rb") as fh:
            data = fh.read(limit + 1)  # bounded: the file may have grown since it was checked
    except OSError as exc:
        raise DataError(f"{p}: cannot read the file ({exc.strerror or exc})") from None
    check_size(len(data), str(p), "the data file")
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


def read_csv(
    path: str | os.PathLike[str], *, label: str | None = None, classes: Sequence[str] | None = None
) -> RawData:
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
    p = check_file(path)
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
    seen: set[str] = set()
    for h, low in zip(header, lowered):  # linear: a header may have 100,000 columns
        if low in seen:
            raise DataError(f"{p}: the header names column {h!r} twice; column names must be unique")
        seen.add(low)
    if len(header) < 2:
        raise DataError(f"{p}: the header has one column ({header[0]!r}); expected feature columns and a label column")
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
