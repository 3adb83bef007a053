"""Backward gate and weight updates (paper sections 3.6-3.7): pure numeric kernels.

The same expressions are evaluated by every replica of a weight matrix (the forward
copy ``W`` with shape ``(n_in, n_out)`` and the transposed backward copy ``W.T``), so
replicas that see the same events stay bit-for-bit identical.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from distspike.kernels.herding import _grow


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

    The FSGD column step skips the rows whose ``delta_i`` is zero (``W - 0`` is ``W``;
    skipping also keeps the sign of a zero weight, as the oracle does): a column of the
    row-major ``W`` is one cache line per row, and at layer 1 most inputs did not spike.
    """
    passed = np.zeros(in_idx.shape[0], np.bool_)
    gate_and_update_into(W, S, e, delta, in_idx, in_sign, np.int64(0), in_idx.shape[0], lo, fractional, passed)
    return passed


@njit(cache=True)
def gate_and_update_into(W, S, e, delta, in_idx, in_sign, a, b, lo, fractional, passed):
    """``gate_and_update`` of events ``a..b-1``, their mask written to ``passed[a:b]`` (no allocation)."""
    nb = S.shape[0]
    for k in range(a, b):
        j = in_idx[k] - lo
        if j < 0 or j >= nb or S[j] < 0:
            passed[k] = False
            continue
        passed[k] = True
        s = in_sign[k]
        if not fractional:
            e[j] += s
        elif s > 0:  # rows with delta_i = 0 (inputs that did not spike) are left alone: a column is strided
            for i in range(W.shape[0]):
                d = delta[i]
                if d != 0:
                    W[i, j] = W[i, j] - d
        else:
            for i in range(W.shape[0]):
                d = delta[i]
                if d != 0:
                    W[i, j] = W[i, j] + d


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
        gate_and_update_into(W, S_rows[rows[p]], e, delta, in_idx, in_sign, a, b, lo, fractional, passed)
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
def penalize_columns(W, delta, in_idx, in_sign, lo):
    """Regularization steps of a batch of emitted spikes on a block's columns: ``W[:, j-lo] -= s * delta``.

    The forward-copy twin of ``update_rows`` (same values, same order per element), for
    the spikes ``(j, s)`` a forward quantizer block ``[lo, lo + W.shape[1])`` just emitted.
    """
    for k in range(in_idx.shape[0]):
        j = in_idx[k] - lo
        if j < 0 or j >= W.shape[1]:
            continue
        if in_sign[k] > 0:
            for i in range(W.shape[0]):
                W[i, j] = W[i, j] - delta[i]
        else:
            for i in range(W.shape[0]):
                W[i, j] = W[i, j] + delta[i]


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
    _sgd_outer(W, delta, e.astype(W.dtype), transposed)


@njit(cache=True)
def _sgd_outer(W, delta, e, transposed):
    """``W[i, j] -= delta_i * e_j`` (or ``W[j, i]`` when ``transposed``) where both are nonzero (eq. 6).

    The product is rounded before the subtraction, as ``W -= np.outer(delta, e)`` does.
    """
    cols = np.flatnonzero(e)
    for i in range(delta.shape[0]):
        d = delta[i]
        if d == 0:
            continue
        for c in range(cols.shape[0]):
            j = cols[c]
            step = d * e[j]
            if transposed:
                W[j, i] = W[j, i] - step
            else:
                W[i, j] = W[i, j] - step


@njit(cache=True)
def sgd_outer_counts(W, c, lr, e, transposed):
    """``sgd_outer(W, update_delta(c, lr, W.dtype), e, transposed)`` in one call, allocating almost nothing.

    The same values, rounded the same way: ``delta_i = dtype(max(c_i, 0)) * lr`` (``lr`` of ``W``'s
    dtype; 1 in integer mode, where the product is exact), ``e_j`` cast to ``W``'s dtype, and
    ``W[i, j] -= delta_i * e_j`` where both are nonzero (eq. 6). Nothing is done when ``e`` is all zero.
    """
    cols = np.flatnonzero(e)
    if cols.shape[0] == 0:
        return
    ev = np.empty(cols.shape[0], W.dtype)
    for k in range(cols.shape[0]):
        ev[k] = e[cols[k]]
    rows = np.empty(c.shape[0], np.int64)  # the i with delta_i != 0
    cw = np.empty(c.shape[0], W.dtype)  # their c_i in W's dtype: delta_i = cw * lr, as typed as ever
    n = 0
    for i in range(c.shape[0]):
        if c[i] <= 0:
            continue
        cw[n] = c[i]
        if cw[n] * lr == 0:
            continue
        rows[n] = i
        n += 1
    if transposed:  # W[j, i]: one row j per passed error, written along the row (not down a column)
        for k in range(cols.shape[0]):
            j = cols[k]
            for r in range(n):
                i = rows[r]
                W[j, i] = W[j, i] - (cw[r] * lr) * ev[k]
    else:
        for r in range(n):
            i = rows[r]
            d = cw[r] * lr
            for k in range(cols.shape[0]):
                j = cols[k]
                W[i, j] = W[i, j] - d * ev[k]


@njit(cache=True)
def launch_errors(counts, out_idx, out_sign, out_bounds, tgt_idx, tgt_sign, tgt_bounds):
    """Held-error counter (semantics.md) over one or more time steps, in one call.

    Step ``t``: ``count_j += s`` for its output spikes ``out[out_bounds[t]:out_bounds[t+1]]``
    and target spikes (likewise), then launch ``|count_j|`` roots ``(j, sign(count_j))``
    for every unit in index order and clear the counts. Returns ``(idx, sign, step)``
    of the roots, one event each, in launch order.
    """
    cap = 16
    r_idx = np.empty(cap, np.int32)
    r_sign = np.empty(cap, np.int8)
    r_step = np.empty(cap, np.int64)
    n = 0
    for t in range(out_bounds.shape[0] - 1):
        for k in range(out_bounds[t], out_bounds[t + 1]):
            counts[out_idx[k]] += out_sign[k]
        for k in range(tgt_bounds[t], tgt_bounds[t + 1]):
            counts[tgt_idx[k]] += tgt_sign[k]
        for j in range(counts.shape[0]):
            c = counts[j]
            if c == 0:
                continue
            s = 1 if c > 0 else -1
            for _ in range(abs(c)):
                if n >= r_idx.shape[0]:  # doubled by the herders' _grow (compiled already, no np.concatenate)
                    r_idx = _grow(r_idx, n + 1)
                    r_sign = _grow(r_sign, n + 1)
                    r_step = _grow(r_step, n + 1)
                r_idx[n] = j
                r_sign[n] = s
                r_step[n] = t
                n += 1
            counts[j] = 0
    return r_idx[:n], r_sign[:n], r_step[:n]
