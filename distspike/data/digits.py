"""scikit-learn's bundled 8x8 handwritten digits (no download needed)."""
from __future__ import annotations

import numpy as np

from .base import DataError, Dataset


def load_digits(test_fraction: float = 0.25) -> Dataset:
    """The 1797 8x8 digits, 64 features scaled to [0, 1] by /16, 10 classes.

    The split is deterministic and unshuffled: the first
    ``round(1797 * (1 - test_fraction))`` samples (1348 by default) in sklearn's
    file order are the training set, the rest the test set.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    n_train = int(round(len(y) * (1.0 - test_fraction)))
    if not 0 < n_train < len(y):
        raise DataError(f"test_fraction={test_fraction!r} leaves an empty train or test split")
    names = tuple(getattr(bunch, "feature_names", None) or ()) or None
    return Dataset("digits", x[:n_train], y[:n_train], x[n_train:], y[n_train:], n_classes=10, feature_names=names)
