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
   after the reads) or its SGD error counts. At the end, SGD's outer-product update of
   every module (eq. 6), which the shells would apply on entering the next sample (the
   kernel's caller marks it done). Each module sees the same
   segments in the same order as in the scheduler, so state evolves identically; an
   empty message ends the chain as the scheduler drops it.

Spike totals per step go to ``stats[t, kind, l]`` (kind 0: forward out of layer ``l``,
1: errors reaching gate ``l``, 2: passed by it, 3: emitted by backward herder ``l``).

Traffic rows (optional): with ``log_mode > 0`` every consumed message segment appends a
row ``(actor, form, step, events_in, pos, n_out, live)`` to the integer table ``log`` from
row ``log_start`` on (grown by doubling; the kernel returns the table and its row count),
so the rows of many samples can accumulate in one table (``rows_by_actor``). ``actor`` is ``l - 1`` for
the forward quantizer of layer ``l`` and ``L + l - 2`` for the backward replica of layer
``l >= 2``; ``form`` is the shells' message form (``kernels/traffic.py``: forward,
count, gate, backward); ``pos`` of the ``n_out`` events sent on have sign +1. With
``log_mode == 2`` the messages the scheduler would drop because they are empty also
leave rows, with ``live = 0`` and no events, down the rest of their chain (one per
segment): the sample-wide SGD schedule sends those segments inside a message that is
not empty (``LocalBackend`` keeps them where it would).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from distspike.kernels.herding import (NO_UPDATE, UPDATE_AFTER, UPDATE_BEFORE, herd_rows_into, herd_segments_into,
                                       herd_vector_steps, scratch)
from distspike.kernels.traffic import BACKWARD, SENT_BATCH, SENT_MASK, SENT_NONE, put_message_row
from distspike.kernels.updates import (count_events, gate_and_update_into, launch_errors, penalize_columns,
                                       sgd_outer_counts, update_rows)

FWD_OUT, ERR_IN, ERR_PASSED, BWD_OUT = 0, 1, 2, 3  # same order as the shells' counters
# traffic-log message forms, as the shells log them
FORWARD_FORM, COUNT_FORM, GATE_FORM, BACKWARD_FORM = SENT_BATCH, SENT_NONE, BACKWARD | SENT_MASK, BACKWARD | SENT_BATCH
LOG_COLUMNS = ("actor", "form", "step", "events_in", "pos", "n_out", "live")
LOG_OFF, LOG_LIVE, LOG_DEAD = 0, 1, 2  # log_mode: no rows; rows of sent messages; also of dropped ones


@njit(cache=True)
def reserve(log, n, k):
    """``log``, or a copy doubled as often as needed, with room for ``k`` rows after row ``n``."""
    if n + k <= log.shape[0]:
        return log
    size = max(2 * log.shape[0], 64)
    while size < n + k:
        size *= 2
    bigger = np.zeros((size, log.shape[1]), log.dtype)
    for r in range(n):  # a loop, not ``bigger[:n] = log[:n]``: no compiled shape-mismatch message
        for c in range(log.shape[1]):
            bigger[r, c] = log[r, c]
    return bigger


#: explicit signatures: called with constants (forms, 0, True) from compiled code, a lazy dispatcher compiled
#: one specialization per combination of literal arguments (7 for ``log_row``, 2 for ``log_dead_chain``)
_LOG_ROW_SIG = "int64(int32[:, ::1], int64, int64, int64, int64, int64, int64, int64, int64)"
_LOG_DEAD_SIG = "int64(int32[:, ::1], int64, int64, int64, int64, int64, boolean)"


@njit(_LOG_ROW_SIG, cache=True)
def log_row(log, n, actor, form, step, n_in, pos, n_out, live):
    """Row ``n`` of the traffic table (``LOG_COLUMNS``; room made by ``reserve``); ``n + 1``."""
    log[n, 0], log[n, 1], log[n, 2], log[n, 3] = actor, form, step, n_in
    log[n, 4], log[n, 5], log[n, 6] = pos, n_out, live
    return n + 1


@njit(cache=True)
def n_positive(sign, mask):
    """How many of the events with ``mask`` set (all, when ``mask`` is empty) have sign +1."""
    n = 0
    for k in range(sign.shape[0]):
        if sign[k] > 0 and (mask.shape[0] == 0 or mask[k]):
            n += 1
    return n


@njit(_LOG_DEAD_SIG, cache=True)
def log_dead_chain(log, n, L, l, t, segments, gate_first):
    """Rows of an empty chain from layer ``l`` (0-based) down: ``segments`` rows per module; the next row.

    ``gate_first``: it starts at gate ``l + 1``, else at the backward replica of layer ``l + 1``.
    """
    no_events = 0
    while l >= 0:
        if gate_first:
            for p in range(segments):
                n = log_row(log, n, l, GATE_FORM, t, no_events, no_events, no_events, 0)
            if l == 0:
                break
        gate_first = True
        for p in range(segments):
            n = log_row(log, n, L + l - 1, BACKWARD_FORM, t, no_events, no_events, no_events, 0)
        l -= 1
    return n


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


#: columns of the per-sample index of a traffic table (``rows_by_actor``)
SAMPLE_COLUMNS = ("epoch", "sample", "start", "end", "sample_wide", "compute_ns", "wall_end_ns")


@njit(cache=True)
def _keys(log, a, b, n_actors, sample_wide, keys, counts):
    """The key of each row ``a..b-1`` of one sample (-1: not logged) and the rows per key (``counts``).

    Key ``2 * actor + direction``: without ``sample_wide`` the rows of sent messages
    (``live``), all with key ``2 * actor``. With it (SGD's per-message path,
    ``Scheduler._train_sample_wide``, sends every actor one forward-direction message with
    all ``T`` steps, empty or not, and at most one backward-direction message with all
    segments of the sample): all of an actor's forward-direction rows, then its
    backward-direction rows, the dropped ones too, if any of them was sent.
    """
    counts[:] = 0
    sent = np.zeros(2 * n_actors, np.bool_)
    for r in range(a, b):
        if log[r, 6]:
            sent[2 * log[r, 0] + (log[r, 1] & 1)] = True
    for r in range(a, b):
        key = 2 * log[r, 0] + (log[r, 1] & 1)
        keys[r] = -1
        if (sample_wide and (sent[key] or key % 2 == 0)) or (not sample_wide and log[r, 6]):
            keys[r] = key if sample_wide else 2 * log[r, 0]
            counts[keys[r]] += 1


@njit(cache=True, nogil=True)
def rows_by_actor(log, samples, n_actors, ints, floats, scratch, header_bytes, event_bytes):
    """The traffic rows of many fused samples, actor by actor, in the recorders' layout.

    ``samples`` indexes the table ``log``: one row per sample (``SAMPLE_COLUMNS``), rows
    ``start..end-1`` of ``log`` are its messages. Actor ``a``'s rows go to columns
    ``cuts[a]:cuts[a+1]`` of ``ints`` (``INT_COLUMNS``) and ``floats`` (``FLOAT_COLUMNS``,
    ``kernels/traffic.py``), sample by sample, each sample's in the per-message path's
    order (``_keys``); returns ``cuts``. A sample's ``compute_ns`` is split evenly over its
    logged rows; ``t_wall`` is its ``wall_end_ns``. ``ints``, ``floats`` and ``scratch``
    (``(3, n)`` int64) need as many columns as ``log`` has rows (reused arrays: fresh
    memory costs page faults).
    """
    keys, src, src_sample = scratch[0], scratch[1], scratch[2]
    counts = np.zeros(2 * n_actors, np.int64)
    cuts = np.zeros(n_actors + 1, np.int64)
    kept = np.zeros(samples.shape[0], np.int64)  # rows logged per sample
    for s in range(samples.shape[0]):
        _keys(log, samples[s, 2], samples[s, 3], n_actors, samples[s, 4] != 0, keys, counts)
        for k in range(2 * n_actors):
            cuts[k // 2 + 1] += counts[k]
            kept[s] += counts[k]
    for a in range(n_actors):
        cuts[a + 1] += cuts[a]
    # where each output row comes from (table row, sample), then the rows in output order: few memory streams
    fill = cuts[:-1].copy()
    at = np.empty(2 * n_actors, np.int64)
    for s in range(samples.shape[0]):
        a, b = samples[s, 2], samples[s, 3]
        _keys(log, a, b, n_actors, samples[s, 4] != 0, keys, counts)
        for actor in range(n_actors):  # the forward-direction key first, then the backward one
            at[2 * actor] = fill[actor]
            at[2 * actor + 1] = fill[actor] + counts[2 * actor]
            fill[actor] += counts[2 * actor] + counts[2 * actor + 1]
        for r in range(a, b):
            k = keys[r]
            if k >= 0:
                src[at[k]] = r
                src_sample[at[k]] = s
                at[k] += 1
    for j in range(cuts[-1]):
        r, s = src[j], src_sample[j]
        put_message_row(ints, floats, j, log[r, 1], samples[s, 0], samples[s, 1], log[r, 2], log[r, 3], log[r, 4],
                        log[r, 5], samples[s, 5] * 1e-9 / kept[s], samples[s, 6], 0, header_bytes, event_bytes)
    return cuts


@njit(cache=True, nogil=True)
def train_sample(Ws, Ss, phis, cs, es, WTs, bphis, bcs, bes, in_idx, in_sign, in_bounds, tg_idx, tg_sign,
                 tg_bounds, counts, thresh, unit, lr, fractional, read_first, stats, log, log_start, log_mode,
                 step_lr, penalty_lr, penalized):
    """All ``T`` steps of one SGD or FSGD (``fractional``) training sample; returns ``(log, rows)``.

    FSGD error spikes of step ``t`` use ``step_lr[t]`` (``Numerics.step_lr``); ``penalized``:
    after each layer's forward batch, its emitted spikes update their own columns (forward
    copy and replica) by ``penalty_lr * relu(c)`` (``ForwardQuantizer`` docstring).

    ``Ws[l], Ss[l], phis[l], cs[l], es[l]``: forward quantizer of layer ``l+1`` (weights
    ``(n_l, n_{l+1})``, sums, herder, input counts, error counts); ``WTs[l], bphis[l],
    bcs[l], bes[l]``: backward replica of layer ``l+1`` (``l >= 1``; entry 0 is unused). Input
    and target spikes of step ``t`` are ``[bounds[t], bounds[t+1])`` of their arrays;
    ``counts`` is the error counter's state. ``log``/``log_start``/``log_mode``: traffic rows (module docstring).
    """
    L = len(Ws)
    per_batch = NO_UPDATE if not fractional else UPDATE_AFTER if read_first else UPDATE_BEFORE
    none = np.zeros(2, np.int64)
    no_mask = np.zeros(0, np.bool_)
    n = log_start
    # the herders' flags as typed values, not literals (``herding.py``: one compile per dtype)
    false, true, no_lo, no_update = np.bool_(False), np.bool_(True), np.int64(0), np.int64(NO_UPDATE)
    # herders' buffers, allocated once per sample: layer l's forward output sits in ``fsc[l % 2]`` until
    # layer l + 1 has read it; the backward herders' output is copied (select_segments) before the next one runs
    width = np.int64(1)
    for l in range(L):
        width = max(width, phis[l].shape[0], bphis[l].shape[0])
    fsc0, fsc1, bsc = scratch(phis[0], width), scratch(phis[0], width), scratch(phis[0], width)
    # the herders' unused arguments, made once: no FSGD step forward, no sums kept backward
    no_delta, no_hist, no_rows = np.zeros(0, Ws[0].dtype), np.zeros((0, 1), Ws[0].dtype), np.zeros(0, np.int64)
    for t in range(in_bounds.shape[0] - 1):
        idx = in_idx[in_bounds[t]:in_bounds[t + 1]]
        sign = in_sign[in_bounds[t]:in_bounds[t + 1]]
        if log_mode != LOG_OFF:  # room for the step's rows: 2 per layer forward, 2 per layer and error root back
            log = reserve(log, n, 2 * L)
        for l in range(L):
            live = idx.shape[0] > 0
            if not live and log_mode != LOG_DEAD:
                break
            n_in = idx.shape[0]
            if live:
                count_events(cs[l], idx, sign, no_lo)
                if l >= 1:
                    count_events(bcs[l], idx, sign, no_lo)
                if l % 2 == 0:
                    _, idx, sign, _, fsc0 = herd_rows_into(Ws[l], phis[l], Ss[l], idx, sign, thresh, unit, false,
                                                           no_lo, true, no_delta, no_update, fsc0)
                else:
                    _, idx, sign, _, fsc1 = herd_rows_into(Ws[l], phis[l], Ss[l], idx, sign, thresh, unit, false,
                                                           no_lo, true, no_delta, no_update, fsc1)
                stats[t, FWD_OUT, l + 1] += idx.shape[0]
                if penalized:
                    pen = relu_delta(cs[l], penalty_lr, np.empty(cs[l].shape[0], Ws[l].dtype))
                    penalize_columns(Ws[l], pen, idx, sign, no_lo)
                    if l >= 1:
                        update_rows(WTs[l], relu_delta(bcs[l], penalty_lr, np.empty(bcs[l].shape[0], WTs[l].dtype)),
                                    idx, sign)
            if log_mode != LOG_OFF:
                if l >= 1:
                    n = log_row(log, n, L + l - 1, COUNT_FORM, t, n_in, 0, 0, live)
                n = log_row(log, n, l, FORWARD_FORM, t, n_in, n_positive(sign, no_mask), idx.shape[0], live)
        out_bounds = none.copy()
        out_bounds[1] = idx.shape[0]  # the forward chain's last output: layer L's spikes, or none
        tb = np.zeros(2, np.int64)
        tb[0], tb[1] = tg_bounds[t], tg_bounds[t + 1]
        idx, sign, _ = launch_errors(counts, idx, sign, out_bounds, tg_idx, tg_sign, tb)
        bounds = np.empty(idx.shape[0] + 1, np.int64)  # one segment per root: 0, 1, ..., n (not np.arange:
        for k in range(bounds.shape[0]):                # one numpy implementation less to compile)
            bounds[k] = k
        if idx.shape[0] == 0:
            continue  # no roots: no message
        if log_mode != LOG_OFF:
            log = reserve(log, n, 2 * L * idx.shape[0])
        for l in range(L - 1, -1, -1):
            if idx.shape[0] == 0:
                if log_mode == LOG_DEAD:
                    n = log_dead_chain(log, n, L, l, t, bounds.shape[0] - 1, True)
                break
            delta = relu_delta(cs[l], step_lr[t], np.empty(cs[l].shape[0], Ws[l].dtype))
            mask = np.zeros(idx.shape[0], np.bool_)
            for p in range(bounds.shape[0] - 1):
                a, b = bounds[p], bounds[p + 1]
                gate_and_update_into(Ws[l], Ss[l], es[l], delta, idx, sign, a, b, no_lo, fractional, mask)
                if log_mode != LOG_OFF:
                    n_out = 0
                    for k in range(a, b):
                        n_out += mask[k]
                    n = log_row(log, n, l, GATE_FORM, t, b - a, n_positive(sign[a:b], mask[a:b]), n_out, 1)
            stats[t, ERR_IN, l + 1] += idx.shape[0]
            idx, sign, bounds = select_segments(idx, sign, bounds, mask)
            stats[t, ERR_PASSED, l + 1] += idx.shape[0]
            if l == 0:
                break
            if idx.shape[0] == 0:
                if log_mode == LOG_DEAD:
                    n = log_dead_chain(log, n, L, l, t, bounds.shape[0] - 1, False)
                break
            bdelta = relu_delta(bcs[l], step_lr[t], np.empty(bcs[l].shape[0], WTs[l].dtype))
            if not fractional:
                count_events(bes[l], idx, sign, no_lo)
            seg_in = bounds
            _, idx, sign, _, bounds, bsc = herd_segments_into(WTs[l], bphis[l], bphis[l], idx, sign, bounds, thresh,
                                                              unit, true, no_lo, false, bdelta, no_update, per_batch,
                                                              no_hist, no_rows, bsc)
            stats[t, BWD_OUT, l + 1] += idx.shape[0]
            if log_mode != LOG_OFF:
                for p in range(bounds.shape[0] - 1):
                    a, b = bounds[p], bounds[p + 1]
                    n = log_row(log, n, L + l - 1, BACKWARD_FORM, t, seg_in[p + 1] - seg_in[p],
                                     n_positive(sign[a:b], no_mask), b - a, 1)
    if not fractional:  # SGD: W -= outer(lr relu(c), e) of every forward copy and replica (eq. 6)
        for l in range(L):
            sgd_outer_counts(Ws[l], cs[l], lr, es[l], false)
            if l >= 1:
                sgd_outer_counts(WTs[l], bcs[l], lr, bes[l], true)
    return log, n


@njit(cache=True, nogil=True)
def herd_sample_inputs(x, in_phi, in_total, neg_y, tg_phi, tg_total, steps, thresh, unit, stats):
    """A sample's input and target spikes (Alg. 1): both quantizers start from zero
    (``VectorQuantizer.reset``) and herd all ``steps`` steps of ``x`` and ``neg_y`` up front
    (``herd_vector_steps``; their spikes depend on nothing else). The input spikes of step ``t``
    are added to ``stats[t, FWD_OUT, 0]``. Returns input (idx, sign, bounds), then target's."""
    in_phi[:] = 0
    in_total[:] = 0
    tg_phi[:] = 0
    tg_total[:] = 0
    signed = np.bool_(True)  # typed, not a literal: the one compile a Python call also uses (``herding.py``)
    in_idx, in_sign, in_bounds = herd_vector_steps(in_phi, in_total, x, steps, thresh, unit, signed)
    tg_idx, tg_sign, tg_bounds = herd_vector_steps(tg_phi, tg_total, neg_y, steps, thresh, unit, signed)
    for t in range(steps):
        stats[t, FWD_OUT, 0] += in_bounds[t + 1] - in_bounds[t]
    return in_idx, in_sign, in_bounds, tg_idx, tg_sign, tg_bounds


@njit(cache=True, nogil=True)
def herd_and_train(x, in_phi, in_total, neg_y, tg_phi, tg_total, steps, Ws, Ss, phis, cs, es, WTs, bphis, bcs, bes,
                   counts, thresh, unit, lr, fractional, read_first, stats, log, log_start, log_mode, step_lr,
                   penalty_lr, penalized):
    """``train_sample`` with the input and target quantizers run in the same call (Alg. 1, Alg. 8).

    Both quantizers start the sample from zero (``VectorQuantizer.reset``) and herd all
    ``steps`` steps of ``x`` and ``neg_y`` up front (``herd_vector_steps``: their spikes
    depend on nothing else), exactly as ``VectorQuantizer.steps`` does from Python; the
    input spikes of step ``t`` are added to ``stats[t, FWD_OUT, 0]``. Returns ``(log, rows)``.
    """
    in_idx, in_sign, in_bounds, tg_idx, tg_sign, tg_bounds = herd_sample_inputs(
        x, in_phi, in_total, neg_y, tg_phi, tg_total, steps, thresh, unit, stats)
    return train_sample(Ws, Ss, phis, cs, es, WTs, bphis, bcs, bes, in_idx, in_sign, in_bounds, tg_idx, tg_sign,
                        tg_bounds, counts, thresh, unit, lr, fractional, read_first, stats, log, log_start, log_mode,
                        step_lr, penalty_lr, penalized)
