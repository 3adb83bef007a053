"""Spike-batch messages: the only data that crosses modules (and actors) in training.

A ``SpikeBatch`` is an ordered sequence of events ``(idx: int32, sign: int8)``.
Receivers consume it event by event, in order. Shards of one layer also return the
merge keys ``off`` (position of the input event that caused each spike) and ``pot``
(the potential it fired at); the scheduler uses them to interleave the shards'
outputs into the order of the unsharded layer (``herding.py``), then drops them.
"""
from __future__ import annotations

import numpy as np

from distspike.kernels.merge import merge_order


class MessageError(ValueError):
    """A malformed spike batch; the message names the receiver and the field."""


class SpikeBatch:
    """Ordered signed spikes of one layer: ``idx[k]`` fired with sign ``sign[k]``."""

    __slots__ = ("idx", "sign", "off", "pot")

    def __init__(self, idx, sign, off=None, pot=None):
        self.idx = idx  # (n,) int32 unit indices (global within the layer)
        self.sign = sign  # (n,) int8, +1 or -1
        self.off = off  # (n,) int32 or None: merge key, causing input event
        self.pot = pot  # (n,) float/int or None: merge key, firing potential

    @staticmethod
    def empty() -> "SpikeBatch":
        return SpikeBatch(np.empty(0, np.int32), np.empty(0, np.int8))

    @staticmethod
    def of(idx, sign) -> "SpikeBatch":
        """Build a batch from Python sequences (tests, sources)."""
        return SpikeBatch(np.asarray(idx, np.int32).reshape(-1), np.asarray(sign, np.int8).reshape(-1))

    def __len__(self) -> int:
        return self.idx.shape[0]

    def __repr__(self) -> str:
        pairs = ", ".join(f"({i},{s:+d})" for i, s in zip(self.idx.tolist(), self.sign.tolist()))
        return f"SpikeBatch[{pairs}]"

    def events(self) -> list[tuple[int, int]]:
        return list(zip(self.idx.tolist(), self.sign.tolist()))

    def select(self, mask_or_index) -> "SpikeBatch":
        """The sub-batch of the chosen events, order kept; merge keys dropped."""
        return SpikeBatch(self.idx[mask_or_index], self.sign[mask_or_index])

    def singles(self) -> list["SpikeBatch"]:
        """One single-event batch per event, in order (depth-first fallback)."""
        return [SpikeBatch(self.idx[k:k + 1], self.sign[k:k + 1]) for k in range(len(self))]

    def plain(self) -> "SpikeBatch":
        """The batch without merge keys: what travels on to the next layer."""
        return SpikeBatch(self.idx, self.sign)

    def validate(self, n_units: int, where: str) -> None:
        """Reject malformed batches with an error naming the receiver and the field."""
        if not isinstance(self.idx, np.ndarray) or self.idx.dtype != np.int32 or self.idx.ndim != 1:
            raise MessageError(f"{where}: field 'idx' must be a 1-d int32 array, got {_describe(self.idx)}")
        if not isinstance(self.sign, np.ndarray) or self.sign.dtype != np.int8 or self.sign.ndim != 1:
            raise MessageError(f"{where}: field 'sign' must be a 1-d int8 array, got {_describe(self.sign)}")
        if self.idx.shape != self.sign.shape:
            raise MessageError(f"{where}: fields 'idx' and 'sign' have mismatched lengths "
                               f"{self.idx.shape[0]} and {self.sign.shape[0]}")
        if len(self) and (self.idx.min() < 0 or self.idx.max() >= n_units):
            bad = int(self.idx[(self.idx < 0) | (self.idx >= n_units)][0])
            raise MessageError(f"{where}: field 'idx' has index {bad} out of range [0, {n_units})")
        if len(self) and not np.all(np.abs(self.sign) == 1):
            bad = int(self.sign[np.abs(self.sign) != 1][0])
            raise MessageError(f"{where}: field 'sign' has value {bad}, expected +1 or -1")


def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"array(dtype={a.dtype}, shape={a.shape})"
    return type(a).__name__


def merge_shards(parts: list[SpikeBatch]) -> SpikeBatch:
    """Interleave the outputs of the shards of one layer into unsharded order.

    The unsharded herder emits, for input event ``off``, its spikes by descending
    ``|pot|`` with ties broken by the lower unit index; shards own disjoint unit
    blocks and compute each unit's potentials exactly as the whole layer would, so
    the union sorted by ``(off, -|pot|, idx)`` is the unsharded stream. Each shard's
    output is sorted by that key already: their k-way merge (``kernels/merge.py``)
    is that order, in linear time; a part out of order is a ``MessageError``.
    """
    parts = [p for p in parts if len(p)]
    if not parts:
        return SpikeBatch.empty()
    if len(parts) == 1:
        return parts[0]
    sizes = np.array([len(p) for p in parts], np.int64)
    return _merged(parts, np.column_stack((np.zeros_like(sizes), sizes)))  # one segment per part


class Segments:
    """An ordered list of batches consumed one after another, as separate messages would be.

    Held error spikes of one time step are separate roots (semantics.md); along the
    linear backward chain each module consumes them in the same order whether they
    travel one per call or as the segments of one call, so one message per actor
    carries them all. SGD messages span a whole sample: segment ``k`` is time step
    ``steps[k]``.

    Stored flat, so kernels consume a whole message in one call: ``batch`` holds the
    concatenated events and segment ``k`` is ``batch[bounds[k]:bounds[k+1]]``.
    """

    __slots__ = ("batch", "bounds", "steps")

    def __init__(self, batch: SpikeBatch, bounds: np.ndarray, steps: np.ndarray | None = None):
        self.batch = batch  # all events, segment after segment
        self.bounds = bounds  # (n_parts + 1,) int64: segment k is [bounds[k], bounds[k+1])
        self.steps = steps  # (n_parts,) int64 or None: time step of each segment

    @staticmethod
    def of(parts: list[SpikeBatch], steps=None) -> "Segments":
        """Segments from a list of batches (merge keys kept when every part has them)."""
        bounds = np.zeros(len(parts) + 1, np.int64)
        np.cumsum([len(p) for p in parts], out=bounds[1:])
        steps = None if steps is None else np.asarray(steps, np.int64).reshape(-1)
        if not parts:
            return Segments(SpikeBatch.empty(), bounds, steps)
        keyed = all(p.off is not None for p in parts)
        cat = (lambda f: np.concatenate([getattr(p, f) for p in parts])) if len(parts) > 1 else \
            (lambda f: getattr(parts[0], f))
        return Segments(SpikeBatch(cat("idx"), cat("sign"), cat("off") if keyed else None,
                                   cat("pot") if keyed else None), bounds, steps)

    @property
    def n_parts(self) -> int:
        return self.bounds.shape[0] - 1

    @property
    def parts(self) -> list[SpikeBatch]:
        """The segments as batches (views into ``batch``)."""
        b, out = self.batch, []
        for k in range(self.n_parts):
            sl = slice(int(self.bounds[k]), int(self.bounds[k + 1]))
            out.append(SpikeBatch(b.idx[sl], b.sign[sl], None if b.off is None else b.off[sl],
                                  None if b.pot is None else b.pot[sl]))
        return out

    def sizes(self) -> np.ndarray:
        """Events per segment."""
        return np.diff(self.bounds)

    def __len__(self) -> int:
        return len(self.batch)

    def __repr__(self) -> str:
        return f"Segments{self.parts!r}"

    def concat(self) -> SpikeBatch:
        return self.batch.plain()

    def select(self, mask: np.ndarray) -> "Segments":
        """Keep the events where ``mask`` (over the concatenated events) is true, segment by segment."""
        kept = np.zeros(len(mask) + 1, np.int64)
        np.cumsum(mask, out=kept[1:])
        return Segments(self.batch.select(mask), kept[self.bounds], self.steps)

    def plain(self) -> "Segments":
        return Segments(self.batch.plain(), self.bounds, self.steps)

    def step_of(self, k: int):
        return None if self.steps is None else int(self.steps[k])

    def validate(self, n_units: int, where: str) -> None:
        """The events as ``SpikeBatch.validate``, then ``bounds`` and ``steps``."""
        self.batch.validate(n_units, where)
        b = self.bounds
        if not isinstance(b, np.ndarray) or b.dtype != np.int64 or b.ndim != 1 or b.shape[0] < 1:
            raise MessageError(f"{where}: field 'bounds' must be a non-empty 1-d int64 array, got {_describe(b)}")
        if b[0] != 0 or b[-1] != len(self.batch) or np.any(np.diff(b) < 0):
            raise MessageError(f"{where}: field 'bounds' must rise from 0 to the {len(self.batch)} events, "
                               f"got {b.tolist()[:8]}")
        st = self.steps
        if st is not None and (not isinstance(st, np.ndarray) or st.dtype != np.int64 or st.shape != (b.shape[0] - 1,)
                               or (st.shape[0] and st.min() < 0)):
            raise MessageError(f"{where}: field 'steps' must be {b.shape[0] - 1} non-negative int64 steps, "
                               f"got {_describe(st)}")


def merge_segments(parts: list[Segments]) -> Segments:
    """``merge_shards`` segment by segment: order by ``(segment, off, -|pot|, idx)``."""
    parts = [p for p in parts if len(p)] or parts[:1]
    if len(parts) == 1:
        return parts[0]
    part_bounds = np.stack([p.bounds for p in parts])
    return Segments(_merged([p.batch for p in parts], part_bounds), part_bounds.sum(axis=0), parts[0].steps)


def _merged(parts: list[SpikeBatch], bounds: np.ndarray) -> SpikeBatch:
    """The k-way merge of shard outputs (``kernels/merge.py``); part ``j``'s segment ``p`` is
    ``bounds[j, p]:bounds[j, p+1]``."""
    starts = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(p) for p in parts], out=starts[1:])
    idx = np.concatenate([p.idx for p in parts])
    sign = np.concatenate([p.sign for p in parts])
    off = np.concatenate([p.off for p in parts])
    pot = np.concatenate([p.pot for p in parts])
    try:
        order = merge_order(off, pot, idx, starts, bounds)
    except ValueError as err:
        raise MessageError(f"cannot merge {len(parts)} shard outputs: {err}") from None
    return SpikeBatch(idx[order], sign[order], off[order], pot[order])


def gather_parts(parts: list):
    """The events of all shards' outputs, without the k-way merge: for consumers that only count.

    Counting (``c_i += s``, paper Alg. 8's updater input) is a sum per unit, so the order of
    the events does not change it. ``Segments`` keep their segments (each shard's events of
    segment ``k`` end up in segment ``k``, shard after shard) and so their per-segment sizes,
    which is all a count message logs. Merge keys are dropped. Compare ``merge_parts``.
    """
    parts = [p for p in parts if len(p)] or parts[:1]
    if len(parts) == 1:
        return parts[0].plain()
    if not isinstance(parts[0], Segments):
        return SpikeBatch(np.concatenate([p.idx for p in parts]), np.concatenate([p.sign for p in parts]))
    cuts = [(p.batch, p.bounds) for p in parts]
    pieces = [(b, int(bd[k]), int(bd[k + 1])) for k in range(parts[0].n_parts) for b, bd in cuts]
    idx = np.concatenate([b.idx[lo:hi] for b, lo, hi in pieces])
    sign = np.concatenate([b.sign[lo:hi] for b, lo, hi in pieces])
    return Segments(SpikeBatch(idx, sign), np.sum([p.bounds for p in parts], axis=0), parts[0].steps)


def merge_parts(parts: list):
    """``merge_shards`` for batches or, segment by segment, for ``Segments``."""
    if parts and isinstance(parts[0], Segments):
        return merge_segments(parts)
    return merge_shards(parts)
