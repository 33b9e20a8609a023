"""Dataset splits and the loader registry."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from workbench.errors import UserError


@dataclass(frozen=True)
class Splits:
    """Fixed train / validation / test arrays of one dataset.

    Attributes:
        name: Dataset name.
        x_train, x_val, x_test: Inputs `n x C x L` or `n x C x H x W`, float32.
        y_train, y_val, y_test: Integer labels `n`, int64, in ``0 .. n_classes-1``.
        n_classes: Number of classes.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. `1 x 8 x 8`."""
        return tuple(self.x_train.shape[1:])

    def meta_features(self) -> dict[str, float]:
        """Numeric descriptors of the dataset, for choosing transfer sources."""
        n_train = len(self.y_train)
        counts = np.bincount(self.y_train, minlength=self.n_classes).astype(float)
        p = counts / counts.sum()
        entropy = float(-(p[p > 0] * np.log(p[p > 0])).sum())
        return {
            "n_train": float(n_train),
            "n_val": float(len(self.y_val)),
            "n_test": float(len(self.y_test)),
            "n_classes": float(self.n_classes),
            "n_features": float(np.prod(self.input_shape)),
            "channels": float(self.input_shape[0]),
            "spatial_dims": float(len(self.input_shape) - 1),
            "class_entropy": entropy,
            "x_mean": float(self.x_train.mean()),
            "x_std": float(self.x_train.std()),
        }


def split_arrays(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    test: float,
    valid: float,
    seed: int,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
) -> Splits:
    """Stratified fixed splits for a seed; a given test set is kept and only validation is carved."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(y).astype(np.int64)
    if x_test is None:
        x, x_test, y, y_test = train_test_split(x, y, test_size=test, random_state=seed, stratify=y)
    x_tr, x_va, y_tr, y_va = train_test_split(
        x, y, test_size=valid / (1.0 - (test if y_test is None else 0.0)), random_state=seed + 1, stratify=y
    )
    n_classes = int(max(y.max(), np.asarray(y_test).max())) + 1
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return Splits(name, f32(x_tr), y_tr, f32(x_va), y_va, f32(x_test), np.asarray(y_test).astype(np.int64), n_classes)


# loader name -> "module:function(seed, test, valid, **options) -> Splits"
_LOADERS: dict[str, str] = {
    "digits": "workbench.data.builtin:load_digits",
    "mnist1d": "workbench.data.builtin:load_mnist1d",
    "mnist5k": "workbench.data.builtin:load_mnist5k",
    # a user's own files (workbench.data.user; `nasw task init` writes tasks for them)
    "csv": "workbench.data.user:load_csv",
    "npz": "workbench.data.user:load_npz",
    "npy": "workbench.data.user:load_npy",
    "images": "workbench.data.user:load_images",
}


def loader_names() -> list[str]:
    """Names accepted in a task file's ``[dataset] loader``."""
    return sorted(_LOADERS)


def load_splits(loader: str, *, seed: int = 0, test: float = 0.2, valid: float = 0.15, **options: Any) -> Splits:
    """Load a dataset's fixed splits (cached per process: the second call is free)."""
    if loader not in _LOADERS:
        raise UserError(f"unknown dataset loader {loader!r}; expected one of {loader_names()}")
    if not (0 < test < 1 and 0 < valid < 1 and test + valid < 1):
        raise UserError(f"split fractions must satisfy 0 < test, valid and test + valid < 1; got {test}, {valid}")
    return _cached(loader, int(seed), float(test), float(valid), tuple(sorted(_hashable(options).items())))


def _hashable(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


@lru_cache(maxsize=16)
def _cached(loader: str, seed: int, test: float, valid: float, options: tuple) -> Splits:
    module, fn = _LOADERS[loader].split(":")
    func: Callable[..., Splits] = getattr(importlib.import_module(module), fn)
    return func(seed=seed, test=test, valid=valid, **dict(options))
