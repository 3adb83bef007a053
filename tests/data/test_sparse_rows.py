"""``SparseRows`` (MNIST's images, kept as their nonzero bytes and a bit per pixel) reads exactly as the dense
``ScaledRows`` of the same integers: every row, slice, gather, element, block and digest."""
from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest

from distspike.data import mnist
from distspike.data.base import Dataset, ScaledRows, SparseRows


def _images(n: int, seed: int = 0) -> np.ndarray:
    """``n`` 28x28 uint8 images, about four in five pixels zero (as in MNIST), some rows all zero."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 256, (n, 784), dtype=np.uint8)
    x[rng.random((n, 784)) < 0.8] = 0
    x[::97] = 0
    return x


def _sparse(x: np.ndarray) -> tuple[SparseRows, int]:
    """``x`` through the loader's block-by-block reader (its blocks are 1,337 rows of 784 bytes)."""
    return mnist._read_sparse(io.BytesIO(x.tobytes()), (len(x), 28, 28), hashlib.md5())


def test_every_read_is_the_dense_one_bit_for_bit():
    x = _images(3000)  # three reader blocks
    sparse, got = _sparse(x)
    dense = ScaledRows(x, 255.0)
    assert got == x.nbytes and sparse.shape == dense.shape == (3000, 784) and len(sparse) == 3000
    assert sparse.raw.dtype == np.uint8 and sparse.raw.size == np.count_nonzero(x)
    assert np.asarray(sparse).tobytes() == np.asarray(dense).tobytes()
    for k in (0, 1, 97, 1336, 1337, 2999, -1, -3000):
        assert sparse[k].dtype == np.float64 and sparse[k].tobytes() == dense[k].tobytes()
    with pytest.raises(IndexError):
        sparse[3000]
    idx = np.random.default_rng(1).permutation(3000)[:700]
    mask = np.arange(3000) % 7 == 3
    for key in (slice(10, 2000), slice(2990, 5000), slice(5, 5), slice(100, 3000, 3), slice(None, None, -1), idx, mask,
                [4, 4, 0]):
        part, want = sparse[key], dense[key]
        assert isinstance(part, SparseRows) and part.shape == want.shape
        assert np.asarray(part).tobytes() == np.asarray(want).tobytes()
        assert [r.tobytes() for r in part] == [r.tobytes() for r in want]
    view = sparse[1000:2000]
    assert view.raw is sparse.raw and np.shares_memory(view.mask, sparse.mask)  # a slice copies nothing
    assert sparse[5, 300] == dense[5, 300] and np.array_equal(sparse[:, 300], dense[:, 300])
    assert np.array_equal(sparse[7, 100:200], dense[7, 100:200]) and np.array_equal(sparse[idx, 3], dense[idx, 3])
    assert (sparse.min(), sparse.max()) == (dense.min(), dense.max())
    assert sparse[97:98].max() == 0.0 and sparse[:1].min() == 0.0
    assert all(a.tobytes() == b.tobytes() for a, b in zip(sparse.chunks(512), dense.chunks(512)))
    labels = np.zeros(3000, np.int64)
    assert (Dataset("d", sparse, labels, sparse[:100], labels[:100], n_classes=1).digest()
            == Dataset("d", dense, labels, dense[:100], labels[:100], n_classes=1).digest())


def test_a_short_stream_counts_the_bytes_it_had():
    x = _images(1500)
    data = x.tobytes()[:-100]  # the last row cut short
    sparse, got = mnist._read_sparse(io.BytesIO(data), (1500, 28, 28), hashlib.md5())
    assert got == len(data) and len(sparse) == 1499
    assert np.asarray(sparse).tobytes() == np.asarray(ScaledRows(x[:1499], 255.0)).tobytes()
