"""One compiled call per training sample: depth-first routing, un-held errors, one shard per layer.

Pure numeric code (numpy + numba only). ``train_sample_depth`` runs exactly the event-level
recursion that ``core/scheduler.py`` runs for ``routing=dfs`` with ``hold_error=false``
(``Scheduler.fine``: every batch split into single events on a LIFO work list; paper
App. F, Table 4 right; ``core/router.py``'s ``_depth``), calling the same module kernels on
the same state arrays, without returning to Python between events. Per time step ``t``:

1. the input root: the input quantizer's spikes of step ``t``, one event at a time;
2. the target root: the target quantizer's spikes of step ``t``, straight to gate ``L``.

Each root settles before the next one starts. A work item is one event ``(kind, layer,
unit, sign)``; handling it emits a batch of events whose first one is handled (with
everything it causes) before the second, and so on:

- forward ``l``: ``c_l[i] += s`` (forward quantizer; and the backward replica's counts
  for ``l >= 2``), then ``herd_rows`` of the one row (eq. 4, Alg. 7); its spikes go to
  forward ``l + 1``, or from layer ``L`` to gate ``L`` (un-held errors);
- gate ``l``: passes ``(j, s)`` iff ``S_j >= 0`` at that moment (eq. 5), with the FSGD
  column update (eq. 7, ``lr * g_t * relu(c_l)`` of the counts so far) or the SGD error
  count ``e_j += s`` (eq. 6); a passed spike goes to backward ``l`` (``l >= 2``);
- backward ``l``: the SGD error count of the replica, then ``herd_rows`` of its one
  column with the FSGD step placed before or after that read (``read_first``, as
  ``BackwardQuantizer.backward(interleave=True)``); its spikes go to gate ``l - 1``.

With one event per message, per-event and per-batch FSGD placement coincide. SGD's
outer-product update stays with the shells (applied when they enter the next sample).
Spike totals per step go to ``stats[t, kind, l]`` as in ``kernels/fused.py``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from distspike.kernels.fused import BWD_OUT, ERR_IN, ERR_PASSED, FWD_OUT, herd_sample_inputs, relu_delta
from distspike.kernels.herding import NO_UPDATE, UPDATE_AFTER, UPDATE_BEFORE, _herd_events, scratch
from distspike.kernels.updates import gate_and_update_into

FORWARD, GATE, BACKWARD = 0, 1, 2  # kinds of work items (the scheduler's "fwd", "gate", "bwd")


@njit(cache=True)
def _push(stack, n, kind, layer, idx, sign, count):
    """Push ``count`` events ``(idx[k], sign[k])`` for ``(kind, layer)`` so that event 0 pops first.

    ``stack`` rows are ``(kind, layer, unit, sign)``; returns ``(stack, n)`` (grown by doubling).
    """
    if n + count > stack.shape[0]:
        size = max(2 * stack.shape[0], 64)
        while size < n + count:
            size *= 2
        bigger = np.empty((size, 4), np.int64)
        for r in range(n):  # a loop, not ``bigger[:n] = stack[:n]``: no compiled shape-mismatch message
            for c in range(4):
                bigger[r, c] = stack[r, c]
        stack = bigger
    for r in range(count):
        k = count - 1 - r
        stack[n, 0], stack[n, 1], stack[n, 2], stack[n, 3] = kind, layer, idx[k], sign[k]
        n += 1
    return stack, n


@njit(cache=True)
def _settle(Ws, Ss, phis, cs, es, WTs, bphis, bcs, bes, stack, n, t, thresh, unit, fractional, mode, stats,
            lr, sc, one_idx, one_sign, fdel, bdel, no_delta):
    """Handle work items depth-first until the list is empty; returns ``(stack, sc)``."""
    L = len(Ws)
    # typed values, not literals: one compile of each herding kernel per dtype (``herding.py``)
    false, true, zero, one, no_update = np.bool_(False), np.bool_(True), np.int64(0), np.int64(1), np.int64(NO_UPDATE)
    passed = np.zeros(1, np.bool_)  # the gate's mask of its one event, written in place
    while n > 0:
        n -= 1
        kind, l, i, s = stack[n, 0], stack[n, 1], stack[n, 2], stack[n, 3]
        one_idx[0] = i
        one_sign[0] = s
        if kind == FORWARD:
            cs[l][i] += s
            if l >= 1:
                bcs[l][i] += s
            m, sc = _herd_events(Ws[l], phis[l], Ss[l], one_idx, one_sign, zero, one, thresh, unit, false, zero, true,
                                 no_delta, no_update, sc, zero)
            stats[t, FWD_OUT, l + 1] += m
            if l + 1 < L:
                stack, n = _push(stack, n, FORWARD, l + 1, sc[5], sc[6], m)
            else:
                stack, n = _push(stack, n, GATE, l, sc[5], sc[6], m)
        elif kind == GATE:
            stats[t, ERR_IN, l + 1] += 1
            delta = relu_delta(cs[l], lr, fdel[l]) if fractional else no_delta
            gate_and_update_into(Ws[l], Ss[l], es[l], delta, one_idx, one_sign, zero, one, zero, fractional, passed)
            if passed[0]:
                stats[t, ERR_PASSED, l + 1] += 1
                if l >= 1:
                    stack, n = _push(stack, n, BACKWARD, l, one_idx, one_sign, 1)
        else:
            if fractional:
                delta = relu_delta(bcs[l], lr, bdel[l])
            else:
                delta = no_delta
                bes[l][i] += s
            m, sc = _herd_events(WTs[l], bphis[l], bphis[l], one_idx, one_sign, zero, one, thresh, unit, true, zero,
                                 false, delta, mode, sc, zero)
            stats[t, BWD_OUT, l + 1] += m
            stack, n = _push(stack, n, GATE, l - 1, sc[5], sc[6], m)
    return stack, sc


@njit(cache=True, nogil=True)
def train_sample_depth(Ws, Ss, phis, cs, es, WTs, bphis, bcs, bes, in_idx, in_sign, in_bounds, tg_idx, tg_sign,
                       tg_bounds, thresh, unit, fractional, read_first, stats, step_lr):
    """All ``T`` steps of one un-held depth-first SGD or FSGD (``fractional``) training sample.

    Arrays as in ``fused.train_sample`` (``Ws[l]`` ... forward quantizer of layer ``l+1``;
    ``WTs[l]`` ... backward replica of layer ``l+1``, entry 0 unused); input and target spikes
    of step ``t`` are ``[bounds[t], bounds[t+1])`` of their arrays; FSGD steps of step ``t``
    use ``step_lr[t]``.
    """
    L = len(Ws)
    mode = NO_UPDATE if not fractional else UPDATE_AFTER if read_first else UPDATE_BEFORE
    width = np.int64(1)
    for l in range(L):
        width = max(width, phis[l].shape[0], bphis[l].shape[0])
    sc = scratch(phis[0], width)
    one_idx = np.zeros(1, np.int32)
    one_sign = np.zeros(1, np.int8)
    no_delta = np.zeros(0, Ws[0].dtype)
    fdel = [np.empty(cs[l].shape[0], Ws[0].dtype) for l in range(L)]  # delta buffers (FSGD)
    bdel = [np.empty(bcs[l].shape[0], Ws[0].dtype) for l in range(L)]
    stack = np.empty((64, 4), np.int64)
    for t in range(in_bounds.shape[0] - 1):
        a, b = in_bounds[t], in_bounds[t + 1]
        stack, n = _push(stack, 0, FORWARD, 0, in_idx[a:b], in_sign[a:b], b - a)
        stack, sc = _settle(Ws, Ss, phis, cs, es, WTs, bphis, bcs, bes, stack, n, t, thresh, unit, fractional,
                            mode, stats, step_lr[t], sc, one_idx, one_sign, fdel, bdel, no_delta)
        a, b = tg_bounds[t], tg_bounds[t + 1]
        stack, n = _push(stack, 0, GATE, L - 1, tg_idx[a:b], tg_sign[a:b], b - a)
        stack, sc = _settle(Ws, Ss, phis, cs, es, WTs, bphis, bcs, bes, stack, n, t, thresh, unit, fractional,
                            mode, stats, step_lr[t], sc, one_idx, one_sign, fdel, bdel, no_delta)


@njit(cache=True, nogil=True)
def herd_and_train_depth(x, in_phi, in_total, neg_y, tg_phi, tg_total, steps, Ws, Ss, phis, cs, es, WTs, bphis, bcs,
                         bes, thresh, unit, fractional, read_first, stats, step_lr):
    """``train_sample_depth`` with the input and target quantizers run in the same call (Alg. 1).

    As ``fused.herd_and_train``: both quantizers start from zero and herd all ``steps`` steps
    up front (their spikes depend on nothing else); input spikes of step ``t`` are added to
    ``stats[t, FWD_OUT, 0]``.
    """
    in_idx, in_sign, in_bounds, tg_idx, tg_sign, tg_bounds = herd_sample_inputs(
        x, in_phi, in_total, neg_y, tg_phi, tg_total, steps, thresh, unit, stats)
    train_sample_depth(Ws, Ss, phis, cs, es, WTs, bphis, bcs, bes, in_idx, in_sign, in_bounds, tg_idx, tg_sign,
                       tg_bounds, thresh, unit, fractional, read_first, stats, step_lr)
