"""Tests for distspike.data.digits, the Dataset container and load_dataset dispatch."""
from __future__ import annotations

import numpy as np
import pytest

from distspike.data import DataError, Dataset, load_dataset
from distspike.data.digits import load_digits


def test_digits_shapes_dtypes_range():
    d = load_digits()
    assert (d.n_train, d.n_test, d.n_features, d.n_classes) == (1348, 449, 64, 10)
    assert d.x_train.dtype == np.float64 and d.y_train.dtype == np.int64
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    assert 0.0 <= d.x_test.min() and d.x_test.max() <= 1.0
    assert set(np.unique(d.y_train)) == set(range(10))
    assert len(d.feature_names) == 64


def test_digits_split_is_unshuffled_prefix():
    from sklearn.datasets import load_digits as sk_load

    sk = sk_load()
    d = load_digits(test_fraction=0.5)
    assert d.n_train == 898
    np.testing.assert_array_equal(np.concatenate([d.x_train, d.x_test]), sk.data / 16.0)
    np.testing.assert_array_equal(np.concatenate([d.y_train, d.y_test]), sk.target)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "0.2", True])
def test_digits_bad_test_fraction(bad):
    with pytest.raises(DataError, match=repr(bad).replace(".", r"\.")):
        load_digits(test_fraction=bad)


def test_load_dataset_dispatch_and_errors():
    assert load_dataset("digits").n_train == 1348
    assert load_dataset("digits", root="/ignored", test_fraction=0.2).n_test == 359
    with pytest.raises(DataError, match="'cifar10'"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="'bogus'"):
        load_dataset("digits", bogus=1)


def test_subset_keeps_order():
    d = load_digits()
    s = d.subset(n_train=10)
    assert (s.n_train, s.n_test) == (10, 449)
    np.testing.assert_array_equal(s.x_train, d.x_train[:10])
    np.testing.assert_array_equal(s.y_train, d.y_train[:10])
    assert d.subset(0, 0).n_train == 0
    with pytest.raises(DataError, match="n_train=2000"):
        d.subset(n_train=2000)
    with pytest.raises(DataError, match="n_test=-1"):
        d.subset(n_test=-1)


def test_dataset_validation():
    x, y = np.zeros((3, 2)), np.array([0, 1, 1])
    d = Dataset("t", x.astype(np.float32), y.astype(np.uint8), x, y, n_classes=2)
    assert d.x_train.dtype == np.float64 and d.y_train.dtype == np.int64
    with pytest.raises(DataError, match="labels"):
        Dataset("t", x, np.array([0, 1, 2]), x, y, n_classes=2)
    with pytest.raises(DataError, match="integer dtype"):
        Dataset("t", x, y.astype(float), x, y, n_classes=2)
    with pytest.raises(DataError, match="3 rows.*2"):
        Dataset("t", x, y[:2], x, y, n_classes=2)
    with pytest.raises(DataError, match="2-D"):
        Dataset("t", x.ravel(), y, x, y, n_classes=2)
    with pytest.raises(DataError, match="features"):
        Dataset("t", x, y, np.zeros((3, 5)), y, n_classes=2)
    with pytest.raises(DataError, match="feature_names"):
        Dataset("t", x, y, x, y, n_classes=2, feature_names=("a",))
    with pytest.raises(Exception):
        d.name = "other"  # frozen
