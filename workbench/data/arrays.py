"""NumPy arrays: a ``.npz`` archive, or a features ``.npy`` with its labels ``.npy``.

The layouts (the array names, the label files looked for, how feature shapes are read) are
documented in :mod:`workbench.data.user`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data.raw import RawData, check_file, check_size, encode_labels
from workbench.errors import DataError


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
        both, cls = encode_labels(
            np.concatenate([ys.astype(object), yt.astype(object)])
            if ys.dtype != yt.dtype
            else np.concatenate([ys, yt]),
            f"{path}: {yn}/{ytn}",
            classes,
        )
        code, code_t = both[: len(ys)], both[len(ys) :]
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


def _check_header(fh: Any, where: str) -> int | None:
    """Read an ``.npy`` header from ``fh`` and refuse, before anything is allocated, an array
    of Python objects or one whose declared shape holds more than the data limit.

    A stream that is not an ``.npy`` array is left for :func:`numpy.load` to judge.

    Returns:
        The bytes the array's data takes as stored, or None when the header is not readable.

    Raises:
        DataError: Pickled objects, or a declared size over :func:`~workbench.data.raw.max_data_bytes`.
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(fh)
    except (ValueError, OSError, EOFError, TypeError, SyntaxError):
        return None  # not an .npy header: numpy.load says what is wrong
    if dtype.hasobject:
        raise DataError(f"{where}: holds Python objects (a pickled array); save plain numeric arrays")
    n = math.prod(int(d) for d in shape)
    check_size(8 * n, where, f"declares shape {tuple(int(d) for d in shape)} of {n} values, which as float64")
    return n * dtype.itemsize


def _load_npy(p: Path, what: str) -> np.ndarray:
    check_file(p, what)
    try:
        with open(p, "rb") as fh:
            stored = _check_header(fh, str(p))
            if stored is not None and fh.tell() + stored > os.fstat(fh.fileno()).st_size:
                raise DataError(f"{p}: is truncated: its header declares {stored} bytes of data, the file holds less")
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

    p = check_file(path)
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
            members = set(archive.zip.namelist())
            for k in (xk, yk, xtk, ytk):
                if k is not None:
                    info = archive.zip.getinfo(f"{k}.npy" if f"{k}.npy" in members else k)
                    check_size(info.file_size, f"{p}: {k}", "the uncompressed array")
                    with archive.zip.open(info) as fh:
                        _check_header(fh, f"{p}: {k}")
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
        "npz",
        p,
        arrays[xk],
        arrays[yk],
        arrays.get(xtk) if xtk else None,
        arrays.get(ytk) if ytk else None,
        (xk, yk, xtk or "x_test", ytk or "y_test"),
        classes,
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
    check_file(p)
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
