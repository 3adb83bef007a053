"""Tests of the conventional ReLU twin (distspike/relu.py)."""
import numpy as np
import pytest

from distspike.relu import (ReluMLP, dense_flops, init_weights, relu_backward, relu_forward,
                            sparse_flops)


def _loss(weights, x, y):
    """``E = 0.5 * ||h_L - y||^2``."""
    return 0.5 * float(np.sum((relu_forward(weights, x)[-1] - y) ** 2))


def _tiny_net():
    """A 5-4-3-2 net and sample where every ``|u| > 0.05`` and all outputs are active."""
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        weights = [rng.standard_normal((a, b)) for a, b in [(5, 4), (4, 3), (3, 2)]]  # (n_{l-1}, n_l)
        x = rng.random(5)  # (5,)
        us = [x @ weights[0]]
        for W in weights[1:]:
            us.append(np.maximum(us[-1], 0) @ W)
        if min(np.abs(u).min() for u in us) > 0.05 and (us[-1] > 0).all() and (us[1] > 0).any():
            return weights, x
    raise AssertionError("no suitable tiny net found")


def test_init_weights_draw_order():
    rng = np.random.default_rng(7)
    expect = [0.3 * rng.standard_normal((6, 4)), 0.3 * rng.standard_normal((4, 3))]
    for got, exp in zip(init_weights([6, 4, 3], w_init=0.3, seed=7), expect):
        np.testing.assert_array_equal(got, exp)
    np.testing.assert_array_equal(ReluMLP([6, 4, 3], w_init=0.3, seed=7).weights[1], expect[1])


def test_forward_batch_matches_single():
    weights, x = _tiny_net()
    X = np.stack([x, 2 * x, -x])  # (3, 5)
    batch = relu_forward(weights, X)
    for k in range(3):
        for hb, hs in zip(batch, relu_forward(weights, X[k])):
            np.testing.assert_allclose(hb[k], hs)
    assert (batch[-1] >= 0).all()


def test_backward_matches_finite_differences():
    weights, x = _tiny_net()
    y = np.array([0.0, 1.0])  # (2,)
    grads = relu_backward(weights, relu_forward(weights, x), y)
    eps = 1e-6
    for W, g in zip(weights, grads):
        assert g.shape == W.shape
        num = np.zeros_like(W)  # (n_{l-1}, n_l)
        for idx in np.ndindex(W.shape):
            old = W[idx]
            W[idx] = old + eps
            lp = _loss(weights, x, y)
            W[idx] = old - eps
            lm = _loss(weights, x, y)
            W[idx] = old
            num[idx] = (lp - lm) / (2 * eps)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)
    assert any(np.abs(g).max() > 1e-3 for g in grads)


def test_train_one_is_exact_sgd_step():
    weights, x = _tiny_net()
    net = ReluMLP.from_weights(weights, eta=0.05)
    y = net.one_hot(1)
    grads = relu_backward(weights, relu_forward(weights, x), y)
    net.train_one(x, y)
    for W_new, W_old, g in zip(net.weights, weights, grads):
        np.testing.assert_array_equal(W_new, W_old - 0.05 * g)


def test_train_epoch_matches_train_one_loop():
    rng = np.random.default_rng(0)
    X = rng.random((200, 12))  # (200, 12)
    X[X < 0.5] = 0
    labels = rng.integers(0, 4, 200)  # (200,)
    a = ReluMLP([12, 10, 8, 4], w_init=0.3, eta=0.05, seed=3)
    b = ReluMLP.from_weights(a.weights, eta=0.05)
    for x, lab in zip(X, labels):
        a.train_one(x, a.one_hot(lab))
    done = []
    b.train_epoch(X, labels, progress=done.append, chunk=64)
    assert sum(done) == 200
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_allclose(wb, wa, rtol=1e-12, atol=1e-14)
    assert any(np.abs(wa - w0).max() > 1e-3 for wa, w0 in
               zip(a.weights, init_weights([12, 10, 8, 4], 0.3, 3)))


def test_digits_online_training_learns():
    from sklearn.datasets import load_digits
    d = load_digits()
    X, y = d.data / 16.0, d.target
    net = ReluMLP([64, 50, 10], w_init=0.05, eta=0.13, seed=1234)
    curve = net.fit(X[:1347], y[:1347], X[1347:], y[1347:], epochs=5)
    assert [r["epoch"] for r in curve] == [1, 2, 3, 4, 5]
    assert set(curve[0]) == {"epoch", "train_error", "test_error", "seconds"}
    assert curve[-1]["test_error"] < 12.0  # chance is 90 %; measured 7.1 %
    assert curve[-1]["train_error"] < 12.0


def test_predict_and_error_shapes():
    net = ReluMLP([5, 4, 3], w_init=0.5, seed=2)
    X = np.random.default_rng(1).random((7, 5))  # (7, 5)
    S = net.predict(X)
    assert S.shape == (7, 3) and (S >= 0).all()
    assert net.predict(X[0]).shape == (1, 3)
    assert net.error(X, S.argmax(axis=1)) == 0.0


def test_dense_flops():
    assert dense_flops([3, 4, 2]) == 3 * 4 + 4 * 2
    assert dense_flops([784, 300, 300, 10]) == 784 * 300 + 300 * 300 + 300 * 10


def test_sparse_flops_hand_example():
    W1 = np.array([[1.0, -1.0, 0.0, 2.0],
                   [5.0, 5.0, 5.0, 5.0],
                   [1.0, -1.0, -1.0, 0.0]])  # (3, 4)
    W2 = np.ones((4, 2))  # (4, 2)
    x = np.array([1.0, 0.0, 2.0])  # nnz 2; u1 = [3, -3, -2, 2] -> nnz(h1) = 2
    assert sparse_flops([W1, W2], x) == 2 * 4 + 2 * 2
    assert sparse_flops([W1, W2], np.zeros(3)) == 0
    X = np.stack([x, np.zeros(3), np.array([0.0, 1.0, 0.0])])  # (3, 3); row 3: nnz 1, h1 all 5
    np.testing.assert_array_equal(sparse_flops([W1, W2], X), [12, 0, 4 + 8])
    assert sparse_flops([W1, W2], np.ones(3)) <= dense_flops([3, 4, 2])


def test_from_weights_copies():
    src = [np.ones((3, 2)), np.ones((2, 2))]
    net = ReluMLP.from_weights(src, eta=0.1)
    assert net.sizes == [3, 2, 2]
    src[0][:] = 7.0
    assert (net.weights[0] == 1.0).all()
    net.train_one(np.ones(3), net.one_hot(0))
    assert (src[1] == 1.0).all() and not (net.weights[1] == 1.0).all()


def test_bad_weight_shapes_rejected():
    with pytest.raises(ValueError):
        ReluMLP([3, 2, 2], weights=[np.ones((3, 2)), np.ones((3, 2))])
