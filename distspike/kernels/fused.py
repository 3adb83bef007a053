"""One compiled call per training sample: held errors, breadth-first, one shard per layer.

Pure numeric code (numpy + numba only). ``train_sample`` runs exactly the message
schedule of ``core/scheduler.py`` for this configuration, calling the same module
kernels in the same order on the same state arrays, without returning to Python
between messages. Per time step ``t`` (paper section 3.8, Alg. 8):

1. forward root: for ``l = 1..L``: counts ``c_l += s`` of the incoming spikes (forward
   quantizer, and the backward replica for ``l >= 2``), then ``herd_rows`` (eq. 4);
   the output of layer ``L`` goes to the error counter;
2. the target spikes of step ``t`` to the error counter, then ``launch`` (one root per
   error spike, in unit order; semantics.md);
3. the roots travel as the single-event segments of one message down the chain
   ``gate L -> bwd L -> gate L-1 -> ... -> gate 1``: gate ``S_j >= 0`` with the FSGD
   column update (eq. 5, 7) or the SGD error count ``e_j += s`` (eq. 6), then the
   backward replica's herder, with its FSGD updates placed per batch (``read_first``:
   after the reads) or its SGD error counts. SGD's outer-product update stays with the
   shells (applied when they enter the next sample). Each module sees the same
   segments in the same order as in the scheduler, so state evolves identically; an
   empty message ends the chain as the scheduler drops it.

Spike totals per step go to ``stats[t, kind, l]`` (kind 0: forward out of layer ``l``,
1: errors reaching gate ``l``, 2: passed by it, 3: emitted by backward herder ``l``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from distspike.kernels.herding import NO_UPDATE, UPDATE_AFTER, UPDATE_BEFORE, herd_rows, herd_segments
from distspike.kernels.updates import count_events, gate_and_update, launch_errors

FWD_OUT, ERR_IN, ERR_PASSED, BWD_OUT = 0, 1, 2, 3  # same order as the shells' counters


@njit(cache=True)
def relu_delta(c, lr, out):
    """``out = lr * relu(c)`` (eq. 6/7), element by element as ``update_delta`` computes it."""
    for i in range(c.shape[0]):
        v = c[i]
        out[i] = (v if v > 0 else 0) * lr
    return out


@njit(cache=True)
def select_segments(idx, sign, bounds, mask):
    """The events with ``mask`` set, segment boundaries carried over (``Segments.select``)."""
    n = 0
    new_bounds = np.zeros(bounds.shape[0], np.int64)
    out_idx = np.empty(idx.shape[0], np.int32)
    out_sign = np.empty(idx.shape[0], np.int8)
    for p in range(bounds.shape[0] - 1):
        for k in range(bounds[p], bounds[p + 1]):
            if mask[k]:
                out_idx[n] = idx[k]
                out_sign[n] = sign[k]
                n += 1
        new_bounds[p + 1] = n
    return out_idx[:n], out_sign[:n], new_bounds


@njit(cache=True)
def train_sample(Ws, Ss, phis, cs, es, WTs, bphis, bcs, bes, in_idx, in_sign, in_bounds, tg_idx, tg_sign,
                 tg_bounds, counts, thresh, unit, lr, fractional, read_first, stats):
    """All ``T`` steps of one SGD or FSGD (``fractional``) training sample; returns nothing.

    ``Ws[l], Ss[l], phis[l], cs[l], es[l]``: forward quantizer of layer ``l+1`` (weights
    ``(n_l, n_{l+1})``, sums, herder, input counts, error counts); ``WTs[l], bphis[l],
    bcs[l], bes[l]``: backward replica of layer ``l+1`` (``l >= 1``; entry 0 is unused). Input
    and target spikes of step ``t`` are ``[bounds[t], bounds[t+1])`` of their arrays;
    ``counts`` is the error counter's state.
    """
    L = len(Ws)
    per_batch = NO_UPDATE if not fractional else UPDATE_AFTER if read_first else UPDATE_BEFORE
    none = np.zeros(2, np.int64)
    for t in range(in_bounds.shape[0] - 1):
        idx = in_idx[in_bounds[t]:in_bounds[t + 1]]
        sign = in_sign[in_bounds[t]:in_bounds[t + 1]]
        for l in range(L):
            if idx.shape[0] == 0:
                break
            count_events(cs[l], idx, sign, 0)
            if l >= 1:
                count_events(bcs[l], idx, sign, 0)
            no_delta = np.zeros(0, Ws[l].dtype)
            _, idx, sign, _ = herd_rows(Ws[l], phis[l], Ss[l], idx, sign, thresh, unit, False, 0, True,
                                        no_delta, NO_UPDATE)
            stats[t, FWD_OUT, l + 1] += idx.shape[0]
        out_bounds = none.copy()
        out_bounds[1] = idx.shape[0]  # the forward chain's last output: layer L's spikes, or none
        tb = np.zeros(2, np.int64)
        tb[0], tb[1] = tg_bounds[t], tg_bounds[t + 1]
        idx, sign, _ = launch_errors(counts, idx, sign, out_bounds, tg_idx, tg_sign, tb)
        bounds = np.arange(idx.shape[0] + 1).astype(np.int64)
        for l in range(L - 1, -1, -1):
            if idx.shape[0] == 0:
                break
            delta = relu_delta(cs[l], lr, np.empty(cs[l].shape[0], Ws[l].dtype))
            mask = np.zeros(idx.shape[0], np.bool_)
            for p in range(bounds.shape[0] - 1):
                a, b = bounds[p], bounds[p + 1]
                mask[a:b] = gate_and_update(Ws[l], Ss[l], es[l], delta, idx[a:b], sign[a:b], 0, fractional)
            stats[t, ERR_IN, l + 1] += idx.shape[0]
            idx, sign, bounds = select_segments(idx, sign, bounds, mask)
            stats[t, ERR_PASSED, l + 1] += idx.shape[0]
            if l == 0 or idx.shape[0] == 0:
                break
            bdelta = relu_delta(bcs[l], lr, np.empty(bcs[l].shape[0], WTs[l].dtype))
            if not fractional:
                count_events(bes[l], idx, sign, 0)
            no_hist = np.zeros((0, bphis[l].shape[0]), WTs[l].dtype)
            no_rows = np.zeros(0, np.int64)
            _, idx, sign, _, bounds = herd_segments(WTs[l], bphis[l], bphis[l], idx, sign, bounds, thresh, unit,
                                                    True, 0, False, bdelta, NO_UPDATE, per_batch, no_hist, no_rows)
            stats[t, BWD_OUT, l + 1] += idx.shape[0]
