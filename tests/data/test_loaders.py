"""Dataset loaders: offline, fixed splits per seed, sane shapes and labels."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.data.base import load_splits
from workbench.errors import UserError


@pytest.mark.parametrize("name, shape", [("digits", (1, 8, 8)), ("mnist1d", (1, 40)), ("mnist5k", (1, 28, 28))])
def test_loader_shapes_and_disjoint_fixed_splits(name, shape):
    s = load_splits(name, seed=0)
    assert s.input_shape == shape and s.n_classes == 10
    assert s.x_train.dtype == np.float32 and s.y_train.dtype == np.int64
    assert len(s.y_val) > 0 and len(s.y_test) > 0
    again = load_splits(name, seed=0)
    assert np.array_equal(s.y_val, again.y_val)
    mf = s.meta_features()
    assert mf["n_classes"] == 10 and mf["n_features"] == np.prod(shape)


def test_other_seed_other_split():
    a, b = load_splits("digits", seed=0), load_splits("digits", seed=1)
    assert not np.array_equal(a.y_val, b.y_val)
    # no example is in two splits
    rows = lambda x: {r.tobytes() for r in x}  # noqa: E731
    assert not rows(a.x_train) & rows(a.x_test)


def test_bad_loader_and_fractions():
    with pytest.raises(UserError, match="unknown dataset loader"):
        load_splits("cifar100")
    with pytest.raises(UserError, match="split fractions"):
        load_splits("digits", test=0.6, valid=0.5)
