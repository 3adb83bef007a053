"""Backward gate and weight updates (paper sections 3.6-3.7): pure numeric kernels.

The same expressions are evaluated by every replica of a weight matrix (the forward
copy ``W`` with shape ``(n_in, n_out)`` and the transposed backward copy ``W.T``), so
replicas that see the same events stay bit-for-bit identical.
"""
from __future__ import annotations

import numpy as np
from numba import njit


def update_delta(c: np.ndarray, lr, dtype) -> np.ndarray:
    """Per-input step size ``delta = lr * relu(c)`` of eq. 6/7.

    ``c`` are the signed input spike counts of this sample (or, for smooth updates,
    the running pre-activation sum of the previous layer). In integer mode
    ``lr = 1`` and ``delta = relu(c)``: no multiplication.
    """
    dtype = np.dtype(dtype)
    r = np.maximum(c, 0).astype(dtype)  # (n_in,)
    if dtype.kind in "iu":
        return r
    return r * dtype.type(lr)


@njit(cache=True)
def gate_and_update(W, S, e, delta, in_idx, in_sign, lo, fractional):
    """Backward gate of a block ``[lo, lo + n_blk)`` of layer units, with its updater.

    An error spike ``(j, s)`` passes iff ``S_j >= 0`` (the ReLU derivative, eq. 5, read
    from the running pre-activation sum at that moment). A passed spike updates the
    weights: FSGD ``W[:, j] -= s * delta`` at once (eq. 7); SGD counts ``e_j += s``
    for the end-of-sample outer product (eq. 6). Events outside the block are left
    to their own shard. Returns a boolean mask of the passed events of this block.
    """
    nb = S.shape[0]
    passed = np.zeros(in_idx.shape[0], np.bool_)
    for k in range(in_idx.shape[0]):
        j = in_idx[k] - lo
        if j < 0 or j >= nb or S[j] < 0:
            continue
        passed[k] = True
        s = in_sign[k]
        if not fractional:
            e[j] += s
        elif s > 0:
            for i in range(W.shape[0]):
                W[i, j] = W[i, j] - delta[i]
        else:
            for i in range(W.shape[0]):
                W[i, j] = W[i, j] + delta[i]
    return passed


@njit(cache=True)
def gate_segments(W, S_rows, e, delta, in_idx, in_sign, bounds, rows, lo, fractional):
    """``gate_and_update`` over the segments of one message, in order (one call per message).

    Segment ``p`` (events ``bounds[p]:bounds[p+1]``) is gated against ``S_rows[rows[p]]``:
    the pre-activation sums as they stood when that segment would have arrived as a
    message of its own (eq. 5). Returns the mask of passed events.
    """
    passed = np.zeros(in_idx.shape[0], np.bool_)
    for p in range(bounds.shape[0] - 1):
        a, b = bounds[p], bounds[p + 1]
        passed[a:b] = gate_and_update(W, S_rows[rows[p]], e, delta, in_idx[a:b], in_sign[a:b], lo, fractional)
    return passed


@njit(cache=True)
def segment_signs(sign, bounds):
    """Events and positive events per segment: ``(n, n_pos)``, each ``(n_parts,)`` int64."""
    n_parts = bounds.shape[0] - 1
    n = np.empty(n_parts, np.int64)
    pos = np.zeros(n_parts, np.int64)
    for p in range(n_parts):
        n[p] = bounds[p + 1] - bounds[p]
        for k in range(bounds[p], bounds[p + 1]):
            if sign[k] > 0:
                pos[p] += 1
    return n, pos


@njit(cache=True)
def update_rows(mat, delta, in_idx, in_sign):
    """Apply the FSGD steps of a whole batch to a transposed copy: ``mat[j] -= s * delta``."""
    for k in range(in_idx.shape[0]):
        row = mat[in_idx[k]]
        if in_sign[k] > 0:
            for i in range(row.shape[0]):
                row[i] = row[i] - delta[i]
        else:
            for i in range(row.shape[0]):
                row[i] = row[i] + delta[i]


@njit(cache=True)
def count_events(counts, in_idx, in_sign, lo):
    """Signed spike counts ``c_i += s`` of the events that fall in ``[lo, lo + len(counts))``."""
    n = counts.shape[0]
    for k in range(in_idx.shape[0]):
        i = in_idx[k] - lo
        if 0 <= i < n:
            counts[i] += in_sign[k]


def sgd_outer(W: np.ndarray, delta: np.ndarray, e: np.ndarray, transposed: bool = False) -> None:
    """End-of-sample SGD step ``W -= outer(lr * relu(c), e)`` (paper eq. 6).

    With ``transposed`` the copy is ``W.T`` and the step is ``W.T -= outer(e, delta)``;
    every element is the same product ``delta_i * e_j`` either way. Only the rows with
    ``delta_i != 0`` and columns with ``e_j != 0`` change, so only those are touched.
    """
    rows = np.flatnonzero(delta)
    cols = np.flatnonzero(e)
    if not rows.size or not cols.size:
        return
    step = np.outer(delta[rows], e[cols].astype(W.dtype))  # (n_rows, n_cols)
    if transposed:
        W[np.ix_(cols, rows)] -= step.T
    else:
        W[np.ix_(rows, cols)] -= step
