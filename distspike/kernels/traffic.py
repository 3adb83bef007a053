"""Traffic-log rows from consumed messages (pure numeric, numba).

A recorder keeps two column-major buffers: ``ints`` of shape ``(9, capacity)`` int64
with the columns ``INT_COLUMNS`` and ``floats`` of shape ``(2, capacity)`` float64 with
``FLOAT_COLUMNS``. Integers are stored wide; the writer clamps them to the file's
column types. Times are ``perf_counter_ns`` integers until they become columns.

A message has a ``form``: its direction (bit 0: 0 forward, 1 backward), what it sent
(``SENT_NONE``: nothing, ``SENT_BATCH``: a batch of signed spikes, ``SENT_MASK``: a
pass mask over its own events, i.e. a gate). For a message (or segment of one) with
``events_in`` events in that emitted ``n_out`` events, ``pos`` of them with sign +1:

- ``events_out_pos = pos``, ``events_out_neg = n_out - pos`` (a gate: the events it
  let pass, by their sign),
- ``bytes_in = HEADER_BYTES + EVENT_BYTES * events_in``; ``bytes_out`` likewise from
  ``n_out`` when something is sent, else 0,
- ``compute_s = (t1 - t0) / P``: the message's compute time split evenly over its
  ``P`` rows (segments),
- ``t_wall``: the wall-clock time at the end of the message, ``t1`` shifted by the
  wall clock's offset ``wall_ns``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

INT_COLUMNS = ("direction", "epoch", "sample", "step", "events_in", "events_out_pos", "events_out_neg",
               "bytes_in", "bytes_out")
FLOAT_COLUMNS = ("compute_s", "t_wall")
EVENT_BYTES = 5  # int32 index + int8 sign
HEADER_BYTES = 16  # source, layer, sample, step

# message forms: direction | what was sent
BACKWARD = 1
SENT_NONE, SENT_BATCH, SENT_MASK = 0, 2, 4
#: fields of a staged one-row message, in order
STAGED = ("form", "epoch", "sample", "step", "events_in", "pos", "n_out", "t0_ns", "t1_ns")


@njit(cache=True)
def put_row(ints, floats, n, direction, epoch, sample, step, events_in, pos, neg, bytes_in, bytes_out,
            compute_s, t_wall):
    """Row ``n`` of the buffers from one message's figures."""
    ints[0, n] = direction
    ints[1, n] = epoch
    ints[2, n] = sample
    ints[3, n] = step
    ints[4, n] = events_in
    ints[5, n] = pos
    ints[6, n] = neg
    ints[7, n] = bytes_in
    ints[8, n] = bytes_out
    floats[0, n] = compute_s
    floats[1, n] = t_wall


@njit(cache=True)
def put_message_row(ints, floats, n, form, epoch, sample, step, n_in, pos, n_out, seconds, t1_ns, wall_ns,
                    header_bytes, event_bytes):
    sent = (form & (SENT_BATCH | SENT_MASK)) != 0
    put_row(ints, floats, n, form & BACKWARD, epoch, sample, step, n_in, pos, n_out - pos,
            header_bytes + event_bytes * n_in, header_bytes + event_bytes * n_out if sent else 0,
            seconds, (t1_ns + wall_ns) * 1e-9)


@njit(cache=True)
def put_staged_rows(ints, floats, n, staged, start, wall_ns, header_bytes, event_bytes):
    """Rows ``n, n+1, ...`` from staged one-row messages ``staged[start:]`` (``(M, 9)``, fields ``STAGED``).

    Stops at the end of the buffers; returns ``(next free row, next staged message)``.
    """
    m = start
    while m < staged.shape[0] and n < ints.shape[1]:
        s = staged[m]
        put_message_row(ints, floats, n, s[0], s[1], s[2], s[3], s[4], s[5], s[6], (s[8] - s[7]) * 1e-9, s[8],
                         wall_ns, header_bytes, event_bytes)
        n += 1
        m += 1
    return n, m


@njit(cache=True)
def put_segment_rows(ints, floats, n, form, epoch, sample, step, steps, in_bounds, vals, mask, out_bounds, start,
                     t0_ns, t1_ns, wall_ns, header_bytes, event_bytes):
    """Rows ``n, n+1, ...``: one per segment ``start, start+1, ...`` of a message.

    Segment ``p`` brought ``in_bounds[p+1] - in_bounds[p]`` events. What it sent:
    ``SENT_BATCH``: ``vals[out_bounds[p]:out_bounds[p+1]]`` (signs); ``SENT_MASK``: the
    events of its input whose ``mask`` is set (``vals`` are the input signs); else
    nothing. Its step is ``steps[p]`` (``step`` when ``steps`` is empty). Stops at the
    end of the buffers; returns ``(next free row, next segment)``.
    """
    n_parts = in_bounds.shape[0] - 1
    seconds = (t1_ns - t0_ns) * 1e-9 / max(n_parts, 1)
    sent = form & (SENT_BATCH | SENT_MASK)
    p = start
    while p < n_parts and n < ints.shape[1]:
        a, b = in_bounds[p], in_bounds[p + 1]
        if sent == SENT_BATCH:
            a, b = out_bounds[p], out_bounds[p + 1]
        pos = 0
        n_out = 0
        if sent:
            for k in range(a, b):
                if sent == SENT_MASK and not mask[k]:
                    continue
                n_out += 1
                if vals[k] > 0:
                    pos += 1
        put_message_row(ints, floats, n, form, epoch, sample, steps[p] if steps.shape[0] else step,
                         in_bounds[p + 1] - in_bounds[p], pos, n_out, seconds, t1_ns, wall_ns, header_bytes,
                         event_bytes)
        n += 1
        p += 1
    return n, p
