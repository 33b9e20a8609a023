"""Bring your own dataset: CSV files, NumPy arrays and folders of images.

This module is the front door: :func:`detect_format`, :func:`read_data`, :func:`to_splits` and
the four loaders. Each format is read in its own module (:mod:`~workbench.data.csv_files`,
:mod:`~workbench.data.arrays`, :mod:`~workbench.data.image_folders`), and the checks they share
live in :mod:`~workbench.data.raw`; their public names are importable from here too.

Four loaders (registered in :mod:`workbench.data.base` as ``csv``, ``npz``, ``npy`` and
``images``) read a user's files, check them thoroughly and return fixed stratified splits
(:func:`~workbench.data.base.split_arrays`, the same for a given seed). Every malformed or
inconsistent input raises :class:`~workbench.errors.DataError` with one line naming the file
and the problem.

Only regular files are read (and folders, for images): a FIFO, a device or a socket is refused
without being opened. Sizes are checked before anything is allocated: a file, the shape an
``.npy`` header declares (counted as float64) and the decoded images together may take at most
``$NASW_MAX_DATA_BYTES`` (8 GiB by default); one image at most PIL's decompression-bomb limit
(about 89 million pixels).

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

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workbench.data.arrays import read_npy, read_npz
from workbench.data.base import Splits, split_arrays
from workbench.data.csv_files import CSV_EXTS, LABEL_NAMES, read_csv
from workbench.data.image_folders import IMAGE_EXTS, read_images
from workbench.data.raw import MIN_PER_CLASS, RawData, check_classes, encode_labels, regular_file_stat
from workbench.errors import DataError

__all__ = [
    "CSV_EXTS",
    "IMAGE_EXTS",
    "LABEL_NAMES",
    "MIN_PER_CLASS",
    "RawData",
    "check_classes",
    "detect_format",
    "encode_labels",
    "load_csv",
    "load_images",
    "load_npy",
    "load_npz",
    "read_csv",
    "read_data",
    "read_images",
    "read_npy",
    "read_npz",
    "to_splits",
]


# -- formats ------------------------------------------------------------------------------
def detect_format(path: str | os.PathLike[str]) -> str:
    """The loader name for a data path: ``csv``, ``npz``, ``npy`` or ``images``.

    Raises:
        DataError: The path does not exist, is neither a regular file nor a folder (a FIFO, a
            device) or has an extension no loader reads.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    ext = p.suffix.lower()
    if not p.is_dir():
        regular_file_stat(p)
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
    raw = read_data(
        path, "images", resize=list(resize) if isinstance(resize, tuple) else resize, classes=_classes(classes)
    )
    return to_splits(raw, seed=seed, test=test, valid=valid, standardize=standardize)
