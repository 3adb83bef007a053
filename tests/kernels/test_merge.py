"""``kernels/merge.py``: the k-way merge of sorted shard outputs is the stable sort of their union."""
from __future__ import annotations

import numpy as np
import pytest

from distspike.kernels.merge import merge_order


def _parts(rng, k: int, segments: int, dtype):
    """``k`` parts of ``segments`` segments, each sorted by ``(off, -|pot|, idx)``; few distinct
    values, so keys tie across parts (and ``|pot|`` ties within one ``off``)."""
    off, pot, idx, seg, bounds = [], [], [], [], np.zeros((k, segments + 1), np.int64)
    for j in range(k):
        sizes = rng.integers(0, 6, segments) * rng.integers(0, 2, segments)  # empty segments too
        bounds[j, 1:] = np.cumsum(sizes)
        n = int(sizes.sum())
        s = np.repeat(np.arange(segments), sizes)
        o = rng.integers(0, 3, n)
        p = (rng.integers(1, 4, n) * rng.choice([-1, 1], n)).astype(dtype)
        i = rng.integers(0, 5, n) + 10 * j  # shards own disjoint units
        order = np.lexsort((i, -np.abs(p), o, s))
        off.append(o[order]), pot.append(p[order]), idx.append(i[order]), seg.append(s[order])
    starts = np.zeros(k + 1, np.int64)
    np.cumsum([len(o) for o in off], out=starts[1:])
    cat = np.concatenate
    return cat(off).astype(np.int32), cat(pot), cat(idx).astype(np.int32), cat(seg), starts, bounds


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_merge_equals_the_stable_sort_of_the_union(k, dtype):
    rng = np.random.default_rng(10 * k + np.dtype(dtype).itemsize)
    for segments in (1, 4):
        off, pot, idx, seg, starts, bounds = _parts(rng, k, segments, dtype)
        expected = np.lexsort((idx, -np.abs(pot), off, seg))  # stable: equal keys keep the parts' order
        np.testing.assert_array_equal(merge_order(off, pot, idx, starts, bounds), expected)


def test_a_part_out_of_order_is_rejected():
    off = np.array([0, 1, 0, 2], np.int32)  # part 1 is (1, 0, ...): not sorted by off
    pot = np.ones(4)
    idx = np.array([0, 5, 6, 1], np.int32)
    starts, bounds = np.array([0, 1, 4]), np.array([[0, 1], [0, 3]])
    with pytest.raises(ValueError, match="not in firing order"):
        merge_order(off, pot, idx, starts, bounds)


def test_a_part_sorted_by_potential_within_one_input_event():
    off = np.zeros(3, np.int32)
    idx = np.array([4, 2, 3], np.int32)  # |pot| 3, 2, 2: the tie goes to the lower unit
    starts, bounds = np.array([0, 3]), np.array([[0, 3]])
    np.testing.assert_array_equal(merge_order(off, np.array([3.0, -2.0, 2.0]), idx, starts, bounds), [0, 1, 2])
    with pytest.raises(ValueError, match="not in firing order"):  # |pot| rises: 2 then 3
        merge_order(off, np.array([2.0, 3.0, 1.0]), idx, starts, bounds)


@pytest.mark.parametrize("bounds", [[[0, 2]], [[0, 4]], [[1, 3]], [[0, 2, 1, 3]]])
def test_bounds_that_do_not_span_the_part_are_rejected(bounds):
    """Missing events, events past the part (which would index the next part), a nonzero start,
    falling bounds: all rejected before any event is merged."""
    off, pot, idx = np.zeros(3, np.int32), np.ones(3), np.arange(3, dtype=np.int32)
    with pytest.raises(ValueError, match="do not rise from 0 to its number of events"):
        merge_order(off, pot, idx, np.array([0, 3]), np.array(bounds))
