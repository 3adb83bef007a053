"""Weight-update kernels: the one-call SGD step from counts equals delta-then-outer-product, bit for bit."""
import numpy as np
import pytest

from distspike.kernels.updates import sgd_outer, sgd_outer_counts, update_delta


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize("transposed", [False, True])
def test_sgd_outer_counts_equals_update_delta_then_sgd_outer(dtype, transposed):
    rng = np.random.default_rng(7)
    lr = np.dtype(dtype).type(1 if dtype is np.int64 else 0.01 / 100)
    for _ in range(10):
        c = rng.integers(-3, 8, 40)  # signed input spike counts
        e = rng.integers(-3, 4, 25) * (rng.random(25) < 0.3)  # passed error counts, mostly zero
        shape = (25, 40) if transposed else (40, 25)
        W = (rng.normal(0, 1, shape) * (1000 if dtype is np.int64 else 1)).astype(dtype)
        want, got = W.copy(), W.copy()
        sgd_outer(want, update_delta(c, lr, dtype), e, transposed=transposed)
        sgd_outer_counts(got, c, lr, e, transposed)
        assert np.array_equal(got, want)


def test_sgd_outer_counts_without_errors_changes_nothing():
    W = np.ones((4, 3))
    sgd_outer_counts(W, np.array([1, 2, 3, 4]), 0.5, np.zeros(3, np.int64), False)
    np.testing.assert_array_equal(W, np.ones((4, 3)))
