"""The conventional ReLU twin of the spiking MLP (paper sections 3.3-3.7, 4.2, 4.3).

As ``T -> inf`` the spiking MLP ``n0-n1-...-nL`` (weights ``W_l`` of shape
``(n_{l-1}, n_l)``, no biases) computes, and trains, this network:

    h_0 = x
    u_l = h_{l-1} @ W_l                      l = 1..L
    h_l = relu(u_l) = [u_l > 0] * u_l        (eq. 5; the output layer is rectified too)
    E   = 0.5 * ||h_L - y||^2                (y one-hot)
    W_l <- W_l - eta * dE/dW_l               online: one sample at a time, dataset order

Initial weights ``W_l = w_init * N(0, 1)`` are drawn layer by layer from
``np.random.default_rng(seed)``, exactly as the spiking side draws them, so both
nets start from the same matrices for the same seed.

Pure numpy (+ numba for the online epoch loop); no Ray/Hydra imports.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
from numba import njit
from numba.typed import List as NumbaList

__all__ = [
    "init_weights", "relu_forward", "relu_backward", "dense_flops", "sparse_flops", "ReluMLP",
]


def init_weights(sizes: Sequence[int], w_init: float = 0.01, seed: int = 1234,
                 dtype=np.float64) -> list[np.ndarray]:
    """``W_l = w_init * N(0, 1)`` of shape ``(n_{l-1}, n_l)``, drawn layer by layer from one RNG."""
    rng = np.random.default_rng(seed)
    return [(w_init * rng.standard_normal((a, b))).astype(dtype)  # (n_{l-1}, n_l)
            for a, b in zip(sizes[:-1], sizes[1:])]


def relu_forward(weights: Sequence[np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    """Activations ``[h_0, h_1, ..., h_L]`` of a batch ``(n, n0)`` or a single vector ``(n0,)``.

    ``h_0 = x``, ``u_l = h_{l-1} @ W_l``, ``h_l = relu(u_l) = max(u_l, 0)``.
    Since ``h_l > 0`` iff ``u_l > 0``, the activations also give the ReLU derivative
    ``[u_l > 0]`` needed by :func:`relu_backward`.
    """
    acts = [np.asarray(x)]
    for W in weights:
        acts.append(np.maximum(acts[-1] @ W, 0))  # (n, n_l) or (n_l,)
    return acts


def relu_backward(weights: Sequence[np.ndarray], activations: Sequence[np.ndarray],
                  y: np.ndarray) -> list[np.ndarray]:
    """Gradients ``dE/dW_l`` of ``E = 0.5 * ||h_L - y||^2`` for ONE sample.

    ``delta_L = (h_L - y) * [u_L > 0]``,
    ``delta_{l-1} = (delta_l @ W_l.T) * [u_{l-1} > 0]``,
    ``grad_l = outer(h_{l-1}, delta_l)`` (shape of ``W_l``).
    ``[u > 0]`` is the step of eq. 5, read as ``[h > 0]`` from the activations.
    """
    h = activations
    delta = (h[-1] - y) * (h[-1] > 0)  # (n_L,)
    grads = [None] * len(weights)
    for l in range(len(weights), 0, -1):
        grads[l - 1] = np.outer(h[l - 1], delta)  # (n_{l-1}, n_l)
        if l > 1:
            delta = (weights[l - 1] @ delta) * (h[l - 1] > 0)  # (n_{l-1},)
    return grads


def dense_flops(sizes: Sequence[int]) -> int:
    """Multiply-adds of one full forward pass of one sample: ``sum_l n_{l-1} * n_l``.

    One multiply-add counts as ONE operation (double it for the "2 flops" convention).
    """
    return int(sum(a * b for a, b in zip(sizes[:-1], sizes[1:])))


def sparse_flops(weights: Sequence[np.ndarray], x: np.ndarray) -> np.ndarray | int:
    """Multiply-adds of a forward pass that skips the weight rows of zero activations.

    ``sum_l nnz(h_{l-1}) * n_l`` per sample (``h_0 = x``; one multiply-add = ONE op), the
    cost of the "sparse" ReLU dot in the paper's Fig. 3. For a batch ``(n, n0)`` returns
    an int array ``(n,)``; for a single vector an int.
    """
    acts = relu_forward(weights, x)
    ops = sum(np.count_nonzero(h, axis=-1) * W.shape[1] for h, W in zip(acts[:-1], weights))
    return ops.astype(np.int64) if np.ndim(ops) else int(ops)


@njit(cache=True)
def _forward_sparse(W, hin, hout):
    """``hout = relu(hin @ W)``, skipping the rows of ``W`` where ``hin == 0``."""
    hout[:] = 0
    for i in range(W.shape[0]):
        a = hin[i]
        if a != 0:
            for j in range(W.shape[1]):
                hout[j] += a * W[i, j]
    for j in range(hout.shape[0]):
        if not hout[j] > 0:
            hout[j] = 0


@njit(cache=True)
def _output_delta(hL, label, dL):
    """``dL = (h_L - onehot(label)) * [u_L > 0]``; returns ``any(dL != 0)``."""
    anyd = False
    for j in range(dL.shape[0]):
        yj = 1.0 if j == label else 0.0
        dL[j] = (hL[j] - yj) if hL[j] > 0 else 0.0
        anyd = anyd or dL[j] != 0
    return anyd


@njit(cache=True)
def _backprop_delta(W, d, hin, dout):
    """``dout = (W @ d) * [hin > 0]``, computing only the active rows; returns ``any(dout != 0)``."""
    nz = np.flatnonzero(d)  # (k,)
    anyd = False
    for i in range(W.shape[0]):
        s = 0.0
        if hin[i] > 0:
            for j in nz:
                s += W[i, j] * d[j]
        dout[i] = s
        anyd = anyd or s != 0
    return anyd


@njit(cache=True)
def _update_sparse(W, hin, d, eta):
    """``W -= eta * outer(hin, d)``, touching only the rows where ``hin != 0``."""
    for i in range(W.shape[0]):
        a = eta * hin[i]
        if a != 0:
            for j in range(W.shape[1]):
                W[i, j] -= a * d[j]


@njit(cache=True)
def _sgd_epoch(Ws, hs, ds, X, labels, eta):
    """Online SGD over the rows of ``X`` in order (one forward, backward and update per sample).

    ``Ws`` are updated in place; ``hs[l]`` (``(n_l,)``) and ``ds[l]`` (``(n_{l+1},)``) are
    preallocated activation and delta buffers. Deltas of all layers are computed from the
    pre-update weights, then each ``W_l -= eta * outer(h_{l-1}, delta_l)``.
    """
    L = len(Ws)
    for n in range(X.shape[0]):
        hs[0][:] = X[n]
        for l in range(L):
            _forward_sparse(Ws[l], hs[l], hs[l + 1])
        live = _output_delta(hs[L], labels[n], ds[L - 1])
        for l in range(L - 1, -1, -1):
            if not live:  # delta_l == 0: no update here, and all lower deltas vanish
                break
            nxt = _backprop_delta(Ws[l], ds[l], hs[l], ds[l - 1]) if l > 0 else False
            _update_sparse(Ws[l], hs[l], ds[l], eta)
            live = nxt


class ReluMLP:
    """ReLU MLP (every layer rectified, no biases) trained online with plain SGD on squared error.

    Caveat of this model (shared by the spiking net): an output unit whose ``u_L <= 0``
    on the samples of its own class gets no gradient from them (``[u_L > 0] = 0``) and
    never learns that class; with an unlucky seed or too large ``eta`` whole classes stay
    at 100 % error. ``train_epoch`` is the numba kernel (measured 4-20x faster than the
    numpy loop on 784-300-300-10); ``train_one`` is the numpy reference.
    """

    def __init__(self, sizes: Sequence[int], w_init: float = 0.01, eta: float = 0.01,
                 seed: int = 1234, weights: Sequence[np.ndarray] | None = None, dtype=np.float64):
        self.sizes = [int(s) for s in sizes]
        self.eta, self.dtype = float(eta), np.dtype(dtype)
        if weights is None:
            weights = init_weights(self.sizes, w_init, seed, self.dtype)
        self.weights = [np.array(W, dtype=self.dtype, order="C") for W in weights]  # copies
        self._check_shapes()

    @classmethod
    def from_weights(cls, weights: Sequence[np.ndarray], **kw) -> "ReluMLP":
        """A net using (copies of) ``weights``; sizes are read from their shapes."""
        sizes = [weights[0].shape[0]] + [W.shape[1] for W in weights]
        return cls(sizes, weights=weights, **kw)

    def _check_shapes(self):
        for l, W in enumerate(self.weights, 1):
            if W.shape != (self.sizes[l - 1], self.sizes[l]):
                raise ValueError(f"W_{l} has shape {W.shape}, expected {(self.sizes[l - 1], self.sizes[l])}")

    def one_hot(self, label: int) -> np.ndarray:
        """``y`` with a 1 at ``label`` (shape ``(n_L,)``)."""
        y = np.zeros(self.sizes[-1], self.dtype)  # (n_L,)
        y[int(label)] = 1
        return y

    def train_one(self, x: np.ndarray, y_onehot: np.ndarray) -> None:
        """One SGD step ``W_l -= eta * dE/dW_l`` on one sample (numpy reference path)."""
        acts = relu_forward(self.weights, np.asarray(x, self.dtype))
        grads = relu_backward(self.weights, acts, np.asarray(y_onehot, self.dtype))
        for W, g in zip(self.weights, grads):
            W -= self.dtype.type(self.eta) * g

    def train_epoch(self, X: np.ndarray, Y_labels: np.ndarray,
                    progress: Callable[[int], None] | None = None, chunk: int = 1000) -> float:
        """One online pass over ``X`` in dataset order (numba); returns samples per second.

        Same arithmetic as repeated :meth:`train_one` up to summation order. ``progress(k)``
        is called after every ``chunk`` samples with the number ``k`` just done.
        """
        X = np.ascontiguousarray(X, self.dtype)  # (n, n0)
        labels = np.ascontiguousarray(Y_labels, np.int64)  # (n,)
        Ws, hs, ds = self._buffers()
        t0 = time.perf_counter()
        for lo in range(0, X.shape[0], chunk):
            _sgd_epoch(Ws, hs, ds, X[lo:lo + chunk], labels[lo:lo + chunk], self.dtype.type(self.eta))
            if progress is not None:
                progress(min(chunk, X.shape[0] - lo))
        return X.shape[0] / max(time.perf_counter() - t0, 1e-12)

    def _buffers(self):
        """Typed lists of the weights (shared, updated in place) and of activation/delta buffers."""
        Ws, hs, ds = NumbaList(), NumbaList(), NumbaList()
        for W in self.weights:
            Ws.append(W)
            ds.append(np.zeros(W.shape[1], self.dtype))  # (n_l,)
        for n in self.sizes:
            hs.append(np.zeros(n, self.dtype))  # (n_l,)
        return Ws, hs, ds

    def predict(self, X: np.ndarray, batch: int = 10000) -> np.ndarray:
        """Output activations ``h_L`` (scores) for each row of ``X``: shape ``(n, n_L)``."""
        X = np.atleast_2d(np.asarray(X, self.dtype))  # (n, n0)
        out = [relu_forward(self.weights, X[lo:lo + batch])[-1] for lo in range(0, X.shape[0], batch)]
        return np.concatenate(out) if out else np.zeros((0, self.sizes[-1]), self.dtype)  # (n, n_L)

    def error(self, X: np.ndarray, labels: np.ndarray) -> float:
        """Classification error in percent (argmax of the scores; ties go to the lowest index)."""
        return 100.0 * float(np.mean(self.predict(X).argmax(axis=1) != np.asarray(labels)))

    def fit(self, X, y, Xte, yte, epochs: int, progress: Callable[[int], None] | None = None) -> list[dict]:
        """Train ``epochs`` online epochs; learning curve ``[{epoch, train_error, test_error, seconds}]``.

        ``seconds`` is the training time of that epoch (evaluation excluded).
        """
        curve = []
        for ep in range(1, epochs + 1):
            t0 = time.perf_counter()
            self.train_epoch(X, y, progress)
            sec = time.perf_counter() - t0
            curve.append(dict(epoch=ep, train_error=self.error(X, y), test_error=self.error(Xte, yte),
                              seconds=sec))
        return curve
