"""Herding kernels: hand-computed trajectories, firing order, the eq. 9 bound."""
import numpy as np
import pytest

from distspike.kernels.herding import (NO_UPDATE, UPDATE_AFTER, UPDATE_BEFORE, herd_rows, herd_vector,
                                       stochastic_sample)

H, ONE = np.float64(0.5), np.float64(1.0)
EMPTY = np.zeros(0)


def _vec_steps(v, steps, signed=True):
    phi = np.zeros(len(v))
    out = []
    for _ in range(steps):
        idx, sign, _ = herd_vector(phi, np.asarray(v, float), H, ONE, signed, 0)
        out.append(list(zip(idx.tolist(), sign.tolist())))
    return out, phi


def test_signed_vector_trajectory_by_hand():
    # phi: [.25,-.75,1.5] -> fire u2@1.5, u1@.75 -> [.25,.25,.5]
    #      [.5,-.5,2.0]   -> u2@2.0, u2@1.0   -> [.5,-.5,0]
    #      [.75,-1.25,1.5] -> u2@1.5, u1@1.25, u0@.75 -> [-.25,-.25,.5]
    spikes, phi = _vec_steps([0.25, -0.75, 1.5], 3)
    assert spikes == [[(2, 1), (1, -1)], [(2, 1), (2, 1)], [(2, 1), (1, -1), (0, 1)]]
    np.testing.assert_array_equal(phi, [-0.25, -0.25, 0.5])


def test_ties_fire_lower_index_first_and_multi_spikes_interleave():
    spikes, _ = _vec_steps([0.75, -0.75], 1)
    assert spikes == [[(0, 1), (1, -1)]]
    # u0 fires at 2.25 and 1.25, u1 at 1.75 and 0.75: order by potential 2.25, 1.75, 1.25, 0.75
    spikes, _ = _vec_steps([2.25, 1.75], 1, signed=False)
    assert spikes == [[(0, 1), (1, 1), (0, 1), (1, 1)]]


def test_rectified_vector_never_fires_negative():
    spikes, phi = _vec_steps([-0.75, 0.75], 2, signed=False)
    # u1: .75 fires -> -.25; then .5 is not above threshold
    assert spikes == [[(1, 1)], []]
    np.testing.assert_array_equal(phi, [-1.5, 0.5])


def test_rectified_rows_trajectory_by_hand():
    W = np.array([[0.75, 0.25], [-0.5, 1.5]])
    phi, S = np.zeros(2), np.zeros(2)
    idx = np.array([0, 1, 0], np.int32)
    sign = np.array([1, 1, -1], np.int8)
    off, out, osign, pot = herd_rows(W, phi, S, idx, sign, H, ONE, False, 0, True, EMPTY, NO_UPDATE)
    # e0: phi=[.75,.25] u0@.75; e1: phi=[-.75,1.75] u1@1.75,u1@.75; e2: phi=[-1.5,-.5]
    assert off.tolist() == [0, 1, 1] and out.tolist() == [0, 1, 1] and osign.tolist() == [1, 1, 1]
    np.testing.assert_array_equal(pot, [0.75, 1.75, 0.75])
    np.testing.assert_array_equal(phi, [-1.5, -0.5])
    np.testing.assert_array_equal(S, [-0.5, 1.5])


def test_signed_rows_with_block_offset_and_fsgd_update_before_each_read():
    WT = np.array([[1.0, -0.5], [0.25, 0.75]])  # rows are columns of W
    phi = np.zeros(2)
    delta = np.array([0.25, 0.0])
    idx = np.array([0, 0], np.int32)
    sign = np.array([1, 1], np.int8)
    # each event first updates row 0 by -delta, then reads it: [.75,-.5] then [.5,-.5]
    off, out, osign, _ = herd_rows(WT, phi, phi, idx, sign, H, ONE, True, 10, False, delta, UPDATE_BEFORE)
    assert out.tolist() == [10, 11] and osign.tolist() == [1, -1] and off.tolist() == [0, 1]
    np.testing.assert_array_equal(WT[0], [0.5, -0.5])
    np.testing.assert_array_equal(phi, [0.25, 0.0])


def test_fsgd_update_after_each_read():
    WT = np.array([[1.0, -0.5], [0.25, 0.75]])
    phi = np.zeros(2)
    delta = np.array([0.25, 0.0])
    idx = np.array([0, 0], np.int32)
    sign = np.array([1, 1], np.int8)
    # event 0 reads [1,-.5]: fires (0,+) -> phi [0,-.5]; row 0 becomes [.75,-.5]
    # event 1 reads [.75,-.5]: phi [.75,-1] fires (1,-) then (0,+) -> [-.25,0]; row 0 becomes [.5,-.5]
    off, out, osign, _ = herd_rows(WT, phi, phi, idx, sign, H, ONE, True, 10, False, delta, UPDATE_AFTER)
    assert out.tolist() == [10, 11, 10] and osign.tolist() == [1, -1, 1] and off.tolist() == [0, 1, 1]
    np.testing.assert_array_equal(WT[0], [0.5, -0.5])
    np.testing.assert_array_equal(phi, [-0.25, 0.0])


def test_integer_herding_uses_scaled_threshold():
    K = np.int64(100)
    phi = np.zeros(2, np.int64)
    idx, sign, _ = herd_vector(phi, np.array([51, -150], np.int64), K // 2, K, True, 0)
    # |-150| fires at 150 -> -50 (not above 50); 51 fires -> -49
    assert list(zip(idx.tolist(), sign.tolist())) == [(1, -1), (0, 1)]
    np.testing.assert_array_equal(phi, [-49, -50])


@pytest.mark.parametrize("steps", [1, 2, 5, 17, 64])
def test_l1_error_below_d_over_2T(steps):
    rng = np.random.default_rng(steps)
    for _ in range(25):
        v = rng.uniform(-2, 2, 40)
        phi = np.zeros(40)
        counts = np.zeros(40)
        for _ in range(steps):
            i, s, _ = herd_vector(phi, v, H, ONE, True, 0)
            np.add.at(counts, i, s)
        assert np.abs(v - counts / steps).sum() < 40 / (2 * steps)
        assert np.all(np.abs(phi) <= 0.5)


def test_stochastic_sampler_is_unbiased():
    rng = np.random.default_rng(0)
    v = np.array([0.5, -0.25, 0.0, 1.0])
    idx, sign = stochastic_sample(v, 20000, rng)
    counts = np.zeros(4)
    np.add.at(counts, idx, sign)
    np.testing.assert_allclose(counts / 20000, v, atol=0.02)
    assert 2 not in idx.tolist()


@pytest.mark.parametrize("n", [1, 2, 5, 32, 33, 200])
def test_firing_order_into_a_buffer_is_the_stable_sort(n):
    """The allocation-free firing order (insertion sort for few spikes) is the mergesort's permutation,
    ties (equal |potential|, also of opposite signs) included."""
    from distspike.kernels.herding import _fire_order, _fire_order_into
    rng = np.random.default_rng(n)
    for _ in range(20):
        pots = rng.choice([0.75, -0.75, 1.5, -1.25, 2.0, 0.625], n) + rng.integers(0, 2, n) * rng.random(n)
        order = np.full(n + 3, -1, np.int64)
        _fire_order_into(pots, order)
        np.testing.assert_array_equal(order[:n], _fire_order(pots, pots))


@pytest.mark.parametrize("n", [33, 48, 100, 257])
def test_firing_order_merge_with_scratch_is_the_stable_sort(n):
    """With room for a scratch (``2n``), many spikes are ordered by the allocation-free merge sort: the same
    permutation as the mergesort, ties of equal |potential| (also of opposite signs) in their listed order."""
    from distspike.kernels.herding import _fire_order, _fire_order_into
    rng = np.random.default_rng(n)
    for _ in range(20):
        pots = rng.choice([0.75, -0.75, 1.5, -1.25, 2.0, 0.625], n) + rng.integers(0, 2, n) * rng.random(n)
        order = np.full(2 * n, -1, np.int64)
        _fire_order_into(pots, order)
        np.testing.assert_array_equal(order[:n], _fire_order(pots, pots))


@pytest.mark.parametrize("n", [33, 100, 500])
def test_firing_order_bucket_sort_is_the_stable_sort(n):
    """Many spikes of spread-out potentials (an input step's) are ordered by the bucket sort: the mergesort's
    permutation, exact ties (equal |potential|, of either sign) in their listed order; crowded buckets say so."""
    from distspike.kernels.herding import _bucket_order, _fire_order
    rng = np.random.default_rng(n)
    for _ in range(50):
        pots = rng.uniform(0.5, 1.5, n) * rng.choice([-1.0, 1.0], n)
        pots[rng.integers(0, n, n // 4)] = pots[rng.integers(0, n, n // 4)]  # exact ties
        order = np.full(n, -1, np.int64)
        assert _bucket_order(pots, order, n)
        np.testing.assert_array_equal(order, _fire_order(pots, pots))
    order = np.zeros(n, np.int64)
    assert _bucket_order(np.full(n, 0.75), order, n) and order.tolist() == list(range(n))  # all tied
    crowded = np.concatenate([[100.0], 0.75 + np.sort(rng.random(n - 1)) * 1e-9])  # one outlier; the rest in one bucket, ascending
    assert not _bucket_order(crowded, order, n)
    ints = rng.integers(-3000, 3000, n)  # integer mode: int64 potentials
    assert _bucket_order(ints, order, n)
    np.testing.assert_array_equal(order, _fire_order(ints, ints))
