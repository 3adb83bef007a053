"""Packing of traffic-log rows into preallocated column buffers (pure numeric, numba).

A recorder keeps two buffers: ``ints`` of shape ``(capacity, 9)`` int64 with the
columns ``INT_COLUMNS`` and ``floats`` of shape ``(capacity, 2)`` float64 with
``FLOAT_COLUMNS``. One call packs all rows of one message, so logging costs one
compiled call per message whatever its number of segments. Integers are stored
wide; the writer clamps them to the file's column types.
"""
from __future__ import annotations

import numpy as np
from numba import njit

INT_COLUMNS = ("direction", "epoch", "sample", "step", "events_in", "events_out_pos", "events_out_neg",
               "bytes_in", "bytes_out")
FLOAT_COLUMNS = ("compute_s", "t_wall")
EVENT_BYTES = 5  # int32 index + int8 sign
HEADER_BYTES = 16  # source, layer, sample, step


@njit(cache=True)
def put_row(ints, floats, n, direction, epoch, sample, step, events_in, pos, neg, bytes_in, bytes_out,
            compute_s, t_wall):
    """Row ``n`` of the buffers from one message's figures."""
    r = ints[n]
    r[0] = direction
    r[1] = epoch
    r[2] = sample
    r[3] = step
    r[4] = events_in
    r[5] = pos
    r[6] = neg
    r[7] = bytes_in
    r[8] = bytes_out
    floats[n, 0] = compute_s
    floats[n, 1] = t_wall


@njit(cache=True)
def put_segment_rows(ints, floats, n, direction, epoch, sample, step, steps, in_bounds, out_sign, out_bounds,
                     has_out, compute_s, t_wall, header_bytes, event_bytes):
    """Rows ``n, n+1, ...``: one per segment of a message; returns the next free row.

    Segment ``p`` has ``in_bounds[p+1] - in_bounds[p]`` events in and, when
    ``has_out``, emitted ``out_sign[out_bounds[p]:out_bounds[p+1]]``. Its step is
    ``steps[p]`` (or ``step`` when ``steps`` is empty). The message's compute time is
    split evenly over its rows. Stops at the end of the buffer: the caller flushes
    and calls again from the returned segment (second value).
    """
    n_parts = in_bounds.shape[0] - 1
    share = compute_s / max(n_parts, 1)
    p = 0
    while p < n_parts and n < ints.shape[0]:
        n_in = in_bounds[p + 1] - in_bounds[p]
        pos = 0
        n_out = 0
        if has_out:
            for k in range(out_bounds[p], out_bounds[p + 1]):
                if out_sign[k] > 0:
                    pos += 1
            n_out = out_bounds[p + 1] - out_bounds[p]
        put_row(ints, floats, n, direction, epoch, sample, steps[p] if steps.shape[0] else step, n_in, pos,
                n_out - pos, header_bytes + event_bytes * n_in, header_bytes + event_bytes * n_out if has_out else 0,
                share, t_wall)
        n += 1
        p += 1
    return n, p
