"""Herding quantizers: compiled per-event loops over explicit state.

Pure numeric code (numpy + numba only). Every function takes its state arrays
explicitly and mutates them in place; none keeps hidden state.

Units. ``unit`` is the size of one spike and ``thresh`` the firing threshold:
``unit = 1, thresh = 0.5`` in float mode; ``unit = K, thresh = K // 2`` in integer
mode (paper section 5, ``K = T^2 / eta``; for integer ``phi``, ``phi > K/2`` holds
exactly when ``phi > K // 2``).

Spike order inside one herding step (semantics.md): a herder over threshold on
several units emits them in descending order of the potential at which each spike
fires (``phi = 2.3`` fires at 2.3, then at 1.3), ties broken by the lower unit
index. That is exactly the paper's ``argmax`` loop (Alg. 1, 2, 6, 7). Each unit's
firing potentials are computed by the same repeated subtraction the loop does, so
the merge below reproduces the loop bit for bit.

Outputs of the event-driven kernels are parallel arrays ``(off, idx, pot)``: the
position ``off`` of the input event that caused the spike, the unit ``idx`` (global,
i.e. already shifted by the block offset ``lo`` of a shard) and the potential
``pot`` it fired at. ``(off, -|pot|, idx)`` is the key that merges the outputs of
several shards of one layer into the order of the unsharded layer.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_FIRE_CAP = 64  # initial capacity of output buffers; they grow by doubling
MAX_SPIKES_PER_UNIT = 1e6  # a potential this many units above threshold means the run diverged
# Where the FSGD step ``mat[i] -= s * delta`` (eq. 7) of an input event goes relative to the
# read of row ``i`` (the backward weights' column): none, before the read, after the read.
NO_UPDATE, UPDATE_BEFORE, UPDATE_AFTER = 0, 1, 2
# Compile once per dtype, not once per literal (issue 21): numba compiles a callee (and its whole call
# tree) once more for every combination of *literal* arguments it gets from compiled code: a constant
# (``False``, ``0``, ``NO_UPDATE``), or a counter started at ``0`` before it is passed on (typing first
# sees ``Literal[int](0)``, compiles for it, then again for ``int64``). So compiled callers pass
# ``np.bool_(...)`` / ``np.int64(...)`` and start counters at ``np.int64(0)``: every kernel is then
# compiled once, for the same types a Python call gives it (bool, int64), and the prediction path
# reuses what the training sample compiled. Arrays are copied by loops, not slice assignment
# (``b[:n] = a``): numba compiles a shape-mismatch error message (string formatting, ~2 CPU s) into
# every function that has one.


@njit(cache=True)
def _grow(a, n):
    """Return a copy of ``a`` with capacity at least ``n`` (doubling)."""
    cap = max(2 * a.shape[0], n, 16)
    b = np.empty(cap, a.dtype)
    for i in range(a.shape[0]):  # ``b[:len(a)] = a`` (a loop: see the module's compile note)
        b[i] = a[i]
    return b


@njit(cache=True)
def _fire_order(pots, units):
    """Order of spikes by descending |potential|, ties by unit (argmax-loop order).

    ``pots``/``units`` are listed unit-ascending, each unit's potentials in firing
    order, so a stable sort on ``-|pot|`` breaks ties by the lower unit index.
    """
    return np.argsort(-np.abs(pots), kind="mergesort")


@njit(cache=True)
def _fire_order_into(pots, order):
    """``order[:n]`` = ``_fire_order(pots, .)``, the same stable permutation, into a reused buffer.

    Few spikes (the common case: one unit crossed, whose spikes are already in order)
    are placed by a stable insertion sort, which allocates nothing; many by the bucket
    sort ``_bucket_order`` (an input step's ~100), or, when its buckets come out
    crowded, the stable merge sort ``_merge_order`` (in ``order`` when it has room for
    the merge's scratch, else in a new buffer).
    """
    n = pots.shape[0]
    if n > 32:
        if _bucket_order(pots, order, n):
            return
        if order.shape[0] >= 2 * n:  # room for the merge's scratch: no allocation
            _merge_order(pots, order, n)
        else:
            room = np.empty(2 * n, np.int64)
            _merge_order(pots, room, n)
            for i in range(n):
                order[i] = room[i]
        return
    for i in range(n):
        key = abs(pots[i])
        j = i
        while j > 0 and abs(pots[order[j - 1]]) < key:  # strictly less: equal keys keep their order
            order[j] = order[j - 1]
            j -= 1
        order[j] = i


@njit(cache=True)
def _bucket_order(pots, order, n):
    """``order[:n]`` = ``_fire_order(pots, .)`` by a bucket sort; False (``order`` unspecified) if crowded.

    Bucket ``b = floor((max - |pot|) * (n - 1) / (max - min))`` of ``n``: rounded
    subtraction and multiplication are monotone, so a larger ``|pot|`` never lands in a
    later bucket. Positions enter their buckets in listed order, and each bucket is
    insertion-sorted on strictly larger keys: the stable order, exactly (equal keys, as
    saturated pixels give, cost no moves). 0.56 us against 1.2 for the merge sort on an
    MNIST input step's ~100 spikes (issue 21). Past ``8 n`` moves (a skewed spread, many
    distinct keys in few buckets) it gives up: insertion sort is quadratic.
    """
    keys = np.empty(n, pots.dtype)
    hi = abs(pots[0])
    lo = hi
    for i in range(n):
        k = abs(pots[i])
        keys[i] = k
        hi = max(hi, k)
        lo = min(lo, k)
    if not hi > lo:  # all equal: the listed order
        for i in range(n):
            order[i] = i
        return True
    scale = (n - 1) / (hi - lo)
    bucket = np.empty(n, np.int64)
    end = np.zeros(n + 1, np.int64)
    for i in range(n):
        b = min(max(np.int64((hi - keys[i]) * scale), 0), n - 1)
        bucket[i] = b
        end[b + 1] += 1
    for b in range(n):
        end[b + 1] += end[b]
    for i in range(n):  # bucket b fills order[end[b]:end[b+1]] in listed order
        b = bucket[i]
        order[end[b]] = i
        end[b] += 1
    a = 0
    budget = 8 * n  # moves of the insertion sorts; past it the spread is skewed: the merge sort takes over
    for b in range(n):  # end[b] is now bucket b's end
        for r in range(a + 1, end[b]):
            q = order[r]
            key = keys[q]
            j = r
            while j > a and keys[order[j - 1]] < key:
                order[j] = order[j - 1]
                j -= 1
            order[j] = q
            budget -= r - j
            if budget < 0:
                return False
        a = end[b]
    return True


@njit(cache=True)
def _merge_order(pots, order, n):
    """``order[:n]`` = ``_fire_order(pots, .)`` by a stable merge sort; ``order[n:2n]`` is its scratch.

    The keys ``|pot|`` are copied once and sorted along with the positions, so a
    comparison reads two keys, not two positions and then their potentials (2.7 -> 1.4 us
    for the ~100 input spikes of an MNIST step, issue 21). Runs of 16 are placed by
    insertion sort, then merged pairwise; an element of the right run goes first only
    if its key is strictly larger (stable, as the mergesort).
    """
    keys = np.empty(2 * n, pots.dtype)
    run = 16
    for lo in range(0, n, run):
        for i in range(lo, min(lo + run, n)):
            key = abs(pots[i])
            j = i
            while j > lo and keys[j - 1] < key:
                keys[j] = keys[j - 1]
                order[j] = order[j - 1]
                j -= 1
            keys[j] = key
            order[j] = i
    src, dst, width = 0, n, run
    while width < n:
        for lo in range(0, n, 2 * width):
            mid, hi = min(lo + width, n), min(lo + 2 * width, n)
            i, j, k = lo, mid, lo
            while i < mid and j < hi:
                if keys[src + j] > keys[src + i]:
                    keys[dst + k] = keys[src + j]
                    order[dst + k] = order[src + j]
                    j += 1
                else:
                    keys[dst + k] = keys[src + i]
                    order[dst + k] = order[src + i]
                    i += 1
                k += 1
            while i < mid:
                keys[dst + k] = keys[src + i]
                order[dst + k] = order[src + i]
                i += 1
                k += 1
            while j < hi:
                keys[dst + k] = keys[src + j]
                order[dst + k] = order[src + j]
                j += 1
                k += 1
        src, dst, width = dst, src, 2 * width
    if src != 0:
        for i in range(n):
            order[i] = order[n + i]


@njit(cache=True)
def _fire_candidates(phi, cand, m, thresh, unit, signed, tmp_pot, tmp_idx, order):
    """Fire every spike of the candidate units ``cand[:m]`` (argmax loop of Alg. 1/2).

    For a candidate ``j`` with potential ``p``: while ``|p| > thresh`` (``p > thresh``
    when rectified) emit ``(j, sign(p))`` at potential ``p`` and set ``p -= sign(p) *
    unit``. Returns ``(n, order, tmp_pot, tmp_idx)``: ``n`` spikes listed in
    ``tmp_*`` unit-ascending, and ``order[:n]`` the permutation giving firing order
    (``order`` is the buffer passed in, or a larger one).

    The spikes are counted first and the buffers grown once: a buffer that may be
    replaced inside the firing loop makes numba reload it at every store (~15x slower).
    """
    need = np.int64(0)
    for c in range(m):
        p = phi[cand[c]]
        if not abs(p) < MAX_SPIKES_PER_UNIT * unit:  # also catches inf and nan
            raise OverflowError("herding potential is not finite or would fire over 1e6 spikes at once: the weights diverged")
        while (p > thresh) or (signed and -p > thresh):
            need += 1
            if p > 0:
                p = p - unit
            else:
                p = p + unit
    if need > tmp_pot.shape[0]:
        tmp_pot = _grow(tmp_pot, need)
        tmp_idx = _grow(tmp_idx, need)
    if 2 * need > order.shape[0]:  # the firing order and the merge's scratch
        order = _grow(order, 2 * need)
    n = _fire_fill(phi, cand, m, thresh, unit, signed, tmp_pot, tmp_idx)
    _fire_order_into(tmp_pot[:n], order)
    return n, order, tmp_pot, tmp_idx


@njit(cache=True)
def _fire_fill(phi, cand, m, thresh, unit, signed, tmp_pot, tmp_idx):
    """The firing loop of ``_fire_candidates`` into buffers known to be large enough."""
    n = 0
    for c in range(m):
        j = cand[c]
        p = phi[j]
        while (p > thresh) or (signed and -p > thresh):
            tmp_pot[n] = p
            tmp_idx[n] = j
            n += 1
            if p > 0:
                p = p - unit
            else:
                p = p + unit
        phi[j] = p
    return n


@njit(cache=True)
def _emit(out_off, out_idx, out_sign, out_pot, n_out, k, order, tmp_pot, tmp_idx, n, lo):
    """Append ``n`` fired spikes in firing ``order``, caused by input event ``k``; new count."""
    for r in range(n):
        q = order[r]
        out_off[n_out] = k
        out_idx[n_out] = tmp_idx[q] + lo
        out_pot[n_out] = tmp_pot[q]
        out_sign[n_out] = 1 if tmp_pot[q] > 0 else -1
        n_out += 1
    return n_out


@njit(cache=True)
def herd_vector(phi, v, thresh, unit, signed, lo):
    """One step of (signed or rectified) herding of a whole vector.

    Signed (Alg. 1/6): ``phi <- phi + v``; while ``max|phi| > 1/2``: ``i = argmax|phi|``,
    ``s = sign(phi_i)``, ``phi_i -= s``, fire ``(i, s)``. Rectified (Alg. 2/7) fires
    only on ``phi > 1/2`` with ``s = +1``. Returns ``(idx, sign, pot)`` in firing order.
    """
    d = phi.shape[0]
    cand = np.empty(d, np.int64)
    m = np.int64(0)
    for j in range(d):
        p = phi[j] + v[j]
        phi[j] = p
        if p > thresh or (signed and -p > thresh):
            cand[m] = j
            m += 1
    tmp_pot = np.empty(max(2 * m, 16), phi.dtype)
    tmp_idx = np.empty(max(2 * m, 16), np.int32)
    order = np.empty(max(2 * m, 16), np.int64)
    n, order, tmp_pot, tmp_idx = _fire_candidates(phi, cand, m, thresh, unit, signed, tmp_pot, tmp_idx, order)
    idx = np.empty(n, np.int32)
    sign = np.empty(n, np.int8)
    pot = np.empty(n, phi.dtype)
    for r in range(n):
        k = order[r]
        idx[r] = tmp_idx[k] + lo
        pot[r] = tmp_pot[k]
        sign[r] = 1 if tmp_pot[k] > 0 else -1
    return idx, sign, pot


@njit(cache=True)
def herd_vector_steps(phi, total, v, steps, thresh, unit, signed):
    """``steps`` herding steps of the same vector, in one call (input/target quantizer, Alg. 1).

    Step ``t``: ``total += v`` (running sum of the fed vectors), then the step of
    ``herd_vector`` (``phi <- phi + v``; fire while ``max|phi| > 1/2``). The quantizer's
    spikes depend on nothing else, so a whole sample's can be made at once; the work
    buffers are allocated once per call. Returns ``(idx, sign, bounds)``: step ``t``
    fired ``idx[bounds[t]:bounds[t+1]]`` in firing order.
    """
    d = phi.shape[0]
    bounds = np.zeros(steps + 1, np.int64)
    cand = np.empty(d, np.int64)
    tmp_pot = np.empty(max(2 * d, 16), phi.dtype)
    tmp_idx = np.empty(max(2 * d, 16), np.int32)
    order = np.empty(max(2 * d, 16), np.int64)
    out_idx = np.empty(max(steps * d, 16), np.int32)
    out_sign = np.empty(max(steps * d, 16), np.int8)
    n = np.int64(0)
    for t in range(steps):
        m = np.int64(0)
        for j in range(d):  # candidates stored branch-free: about one unit in eight crosses, unpredictably
            total[j] = total[j] + v[j]
            p = phi[j] + v[j]
            phi[j] = p
            over = p > thresh
            if signed:
                over = over | (-p > thresh)
            cand[m] = j
            m += np.int64(over)
        k, order, tmp_pot, tmp_idx = _fire_candidates(phi, cand, m, thresh, unit, signed, tmp_pot, tmp_idx, order)
        if n + k > out_idx.shape[0]:
            out_idx = _grow(out_idx, n + k)
            out_sign = _grow(out_sign, n + k)
        _emit_signed(out_idx, out_sign, n, order, tmp_pot, tmp_idx, k)
        n += k
        bounds[t + 1] = n
    return out_idx[:n], out_sign[:n], bounds


@njit(cache=True)
def _emit_signed(out_idx, out_sign, n, order, tmp_pot, tmp_idx, k):
    """``out[n:n+k]`` = the ``k`` fired spikes ``(unit, sign)`` in firing ``order``."""
    for r in range(k):
        q = order[r]
        out_idx[n + r] = tmp_idx[q]
        out_sign[n + r] = 1 if tmp_pot[q] > 0 else -1


@njit(cache=True)
def scratch(phi, width):
    """Work and output buffers of ``herd_rows_into`` for herders of at most ``width`` units.

    ``(cand, tmp_pot, tmp_idx, order, out_off, out_idx, out_sign, out_pot)``; the kernels
    grow them by doubling and return the grown tuple, so one tuple serves many calls.
    """
    return (np.empty(width, np.int64), np.empty(16, phi.dtype), np.empty(16, np.int32), np.empty(32, np.int64),
            np.empty(_FIRE_CAP, np.int32), np.empty(_FIRE_CAP, np.int32), np.empty(_FIRE_CAP, np.int8),
            np.empty(_FIRE_CAP, phi.dtype))


@njit(cache=True)
def _herd_events(mat, phi, acc, in_idx, in_sign, a, b, thresh, unit, signed, lo, track_acc, delta, update, sc,
                 n_out):
    """Events ``a..b-1`` of ``herd_rows`` appended to ``sc``'s outputs from row ``n_out`` on; ``(n_out, sc)``.

    ``off`` of a spike is the position ``k`` of its event in ``in_idx``. Rectified herders
    also add the rows to ``acc`` (the forward quantizer's sums ``S``). The add loops
    (one per herder kind and sign, each only ORing a flag, so they vectorise) are written
    out here and read the row as ``mat[i, j]``: through a helper taking the row view
    ``mat[i]``, layer 1 of 784-300-300-10 took 124 us per MNIST sample in float64
    where it takes 93 now (issue 21). Candidates are then collected in a second scan,
    only when some unit crossed (a quarter of layer 1's events), branch-free: which
    unit crossed is not predictable.
    """
    cand, tmp_pot, tmp_idx, order, out_off, out_idx, out_sign, out_pot = sc
    d = phi.shape[0]
    for k in range(a, b):
        i = in_idx[k]
        if update == UPDATE_BEFORE:
            update_row(mat, delta, i, in_sign[k])
        flag = False
        if not signed:  # a forward quantizer: rectified, ``phi += s*mat[i]`` and ``acc += s*mat[i]`` (eq. 4)
            if in_sign[k] > 0:
                for j in range(d):
                    r = mat[i, j]
                    acc[j] = acc[j] + r
                    p = phi[j] + r
                    phi[j] = p
                    flag |= p > thresh
            else:
                for j in range(d):
                    r = mat[i, j]
                    acc[j] = acc[j] - r
                    p = phi[j] - r
                    phi[j] = p
                    flag |= p > thresh
        elif in_sign[k] > 0:  # a backward herder: signed, ``phi += s*mat[i]`` (``acc`` unused)
            for j in range(d):
                p = phi[j] + mat[i, j]
                phi[j] = p
                flag |= (p > thresh) | (p < -thresh)
        else:
            for j in range(d):
                p = phi[j] - mat[i, j]
                phi[j] = p
                flag |= (p > thresh) | (p < -thresh)
        if update == UPDATE_AFTER:
            update_row(mat, delta, i, in_sign[k])
        if not flag:
            continue
        m = np.int64(0)
        if signed:
            for j in range(d):
                p = phi[j]
                cand[m] = j
                m += np.int64((p > thresh) | (-p > thresh))
        else:
            for j in range(d):
                cand[m] = j
                m += np.int64(phi[j] > thresh)
        if m == 1:  # the common case: one unit crossed; if it fires once, no count, sort or scratch
            j = cand[0]
            p = phi[j]
            q = p - unit if p > 0 else p + unit
            if abs(p) < MAX_SPIKES_PER_UNIT * unit and not ((q > thresh) or (signed and -q > thresh)):
                phi[j] = q
                if n_out + 1 > out_off.shape[0]:
                    out_off = _grow(out_off, n_out + 1)
                    out_idx = _grow(out_idx, n_out + 1)
                    out_sign = _grow(out_sign, n_out + 1)
                    out_pot = _grow(out_pot, n_out + 1)
                out_off[n_out] = k
                out_idx[n_out] = j + lo
                out_pot[n_out] = p
                out_sign[n_out] = 1 if p > 0 else -1
                n_out += 1
                continue
        n, order, tmp_pot, tmp_idx = _fire_candidates(phi, cand, m, thresh, unit, signed, tmp_pot, tmp_idx, order)
        if n_out + n > out_off.shape[0]:
            out_off = _grow(out_off, n_out + n)
            out_idx = _grow(out_idx, n_out + n)
            out_sign = _grow(out_sign, n_out + n)
            out_pot = _grow(out_pot, n_out + n)
        n_out = _emit(out_off, out_idx, out_sign, out_pot, n_out, k, order, tmp_pot, tmp_idx, n, lo)
    return n_out, (cand, tmp_pot, tmp_idx, order, out_off, out_idx, out_sign, out_pot)


@njit(cache=True)
def herd_rows(mat, phi, acc, in_idx, in_sign, thresh, unit, signed, lo, track_acc, delta, update):
    """Event-driven stream herding of the rows ``s_k * mat[i_k]`` (Alg. 6/7, eq. 4).

    For each input event ``k`` in order: ``phi <- phi + s_k * mat[i_k, :]`` (and the
    running sum ``acc`` likewise when ``track_acc``), then fire every spike the
    argmax loop fires *after this event* (semantics.md: herding after every row,
    so a unit may fire on a positive partial sum, paper eq. 12). Rectified for the
    forward quantizers, signed for the backward ones (columns of ``W`` are rows of
    its transposed replica). ``update`` (depth-first order of updater and backward
    weights): the FSGD step ``mat[i_k] -= s_k * delta`` (eq. 7) of each event is
    applied just before (``UPDATE_BEFORE``) or just after (``UPDATE_AFTER``) row
    ``i_k`` is read; ``NO_UPDATE``: none. Returns ``(off, idx, sign, pot)``.
    """
    off, idx, sign, pot, _ = herd_rows_into(mat, phi, acc, in_idx, in_sign, thresh, unit, signed, lo, track_acc,
                                            delta, update, scratch(phi, phi.shape[0]))
    return off, idx, sign, pot


@njit(cache=True)
def herd_rows_into(mat, phi, acc, in_idx, in_sign, thresh, unit, signed, lo, track_acc, delta, update, sc):
    """``herd_rows`` in the buffers ``sc`` (``scratch``); ``(off, idx, sign, pot, sc)``, views of ``sc``'s."""
    n, sc = _herd_events(mat, phi, acc, in_idx, in_sign, np.int64(0), in_idx.shape[0], thresh, unit, signed, lo,
                         track_acc, delta, update, sc, np.int64(0))
    return sc[4][:n], sc[5][:n], sc[6][:n], sc[7][:n], sc


@njit(cache=True)
def herd_segments(mat, phi, acc, in_idx, in_sign, bounds, thresh, unit, signed, lo, track_acc, delta, update,
                  seg_update, acc_hist, hist_rows):
    """``herd_rows`` over the segments of one message, one after another (one call per message).

    Segment ``p`` is events ``bounds[p]:bounds[p+1]``, consumed exactly as a message of
    its own would be. ``update`` places FSGD steps event by event as in ``herd_rows``;
    ``seg_update`` (breadth-first order of updater and backward weights) applies the
    FSGD steps of the whole segment, ``mat[i_k] -= s_k * delta`` (eq. 7), before any
    of its rows is read (``UPDATE_BEFORE``) or after all of them (``UPDATE_AFTER``). When ``acc_hist`` has
    rows, ``acc_hist[hist_rows[p]] = acc`` after segment ``p`` (the pre-activation
    sums after each time step, for the gates of sample-wide messages). Returns
    ``(off, idx, sign, pot, out_bounds)``; ``off`` indexes the concatenated input.
    """
    off, idx, sign, pot, out_bounds, _ = herd_segments_into(mat, phi, acc, in_idx, in_sign, bounds, thresh, unit,
                                                            signed, lo, track_acc, delta, update, seg_update,
                                                            acc_hist, hist_rows, scratch(phi, phi.shape[0]))
    return off, idx, sign, pot, out_bounds


@njit(cache=True)
def herd_segments_into(mat, phi, acc, in_idx, in_sign, bounds, thresh, unit, signed, lo, track_acc, delta, update,
                       seg_update, acc_hist, hist_rows, sc):
    """``herd_segments`` in the buffers ``sc`` (``scratch``): no allocation per segment; ``(..., sc)``."""
    n_parts = bounds.shape[0] - 1
    out_bounds = np.zeros(n_parts + 1, np.int64)
    n = np.int64(0)
    for p in range(n_parts):
        a, b = bounds[p], bounds[p + 1]
        if seg_update == UPDATE_BEFORE:
            for k in range(a, b):
                update_row(mat, delta, in_idx[k], in_sign[k])
        n, sc = _herd_events(mat, phi, acc, in_idx, in_sign, a, b, thresh, unit, signed, lo, track_acc, delta,
                             update, sc, n)
        if seg_update == UPDATE_AFTER:
            for k in range(a, b):
                update_row(mat, delta, in_idx[k], in_sign[k])
        out_bounds[p + 1] = n
        if acc_hist.shape[0] > 0:
            row = acc_hist[hist_rows[p]]
            for j in range(acc.shape[0]):  # ``acc_hist[hist_rows[p], :] = acc`` (module's compile note)
                row[j] = acc[j]
    return sc[4][:n], sc[5][:n], sc[6][:n], sc[7][:n], out_bounds, sc


@njit(cache=True)
def update_row(mat, delta, i, s):
    """FSGD step on one row of a (transposed) weight copy: ``mat[i] -= s * delta`` (eq. 7)."""
    row = mat[i]
    if s > 0:
        for j in range(row.shape[0]):
            row[j] = row[j] - delta[j]
    else:
        for j in range(row.shape[0]):
            row[j] = row[j] + delta[j]


def stochastic_sample(v: np.ndarray, steps: int, rng: np.random.Generator):
    """Stochastic (Poisson) sampling of signed spikes from ``v`` (paper Alg. 5, App. A.2).

    ``mag = sum|v|``, ``p = |v| / mag``; each step draws ``N ~ Poisson(mag)`` spikes with
    ``i ~ p`` and sign ``sign(v_i)``. Returns ``(idx, sign)`` of all ``T`` steps.
    """
    v = np.asarray(v, dtype=np.float64)
    mag = float(np.abs(v).sum())
    if mag == 0.0:
        return np.empty(0, np.int32), np.empty(0, np.int8)
    p = np.abs(v) / mag  # (d,)
    n_total = int(rng.poisson(mag, size=steps).sum())
    idx = rng.choice(v.shape[0], size=n_total, p=p).astype(np.int32)
    return idx, np.sign(v[idx]).astype(np.int8)
