"""Spike-batch messages: the only data that crosses modules (and actors) in training.

A ``SpikeBatch`` is an ordered sequence of events ``(idx: int32, sign: int8)``.
Receivers consume it event by event, in order. Shards of one layer also return the
merge keys ``off`` (position of the input event that caused each spike) and ``pot``
(the potential it fired at); the scheduler uses them to interleave the shards'
outputs into the order of the unsharded layer (``herding.py``), then drops them.
"""
from __future__ import annotations

import numpy as np


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
    sorting the union by ``(off, -|pot|, idx)`` reproduces the unsharded stream.
    """
    parts = [p for p in parts if len(p)]
    if not parts:
        return SpikeBatch.empty()
    if len(parts) == 1:
        return parts[0]
    idx = np.concatenate([p.idx for p in parts])
    sign = np.concatenate([p.sign for p in parts])
    off = np.concatenate([p.off for p in parts])
    pot = np.concatenate([p.pot for p in parts])
    order = np.lexsort((idx, -np.abs(pot), off))
    return SpikeBatch(idx[order], sign[order], off[order], pot[order])


class Segments:
    """An ordered list of batches consumed one after another, as separate messages would be.

    Held error spikes of one time step are separate roots (semantics.md); along the
    linear backward chain each module consumes them in the same order whether they
    travel one per call or as the segments of one call, so the Ray runtime ships a
    whole step's roots in one message per actor.
    """

    __slots__ = ("parts", "steps")

    def __init__(self, parts: list[SpikeBatch], steps: list[int] | None = None):
        self.parts = parts
        self.steps = steps  # time step of each segment when one message spans a sample

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __repr__(self) -> str:
        return f"Segments{self.parts!r}"

    def concat(self) -> SpikeBatch:
        if not self.parts:
            return SpikeBatch.empty()
        return SpikeBatch(np.concatenate([p.idx for p in self.parts]), np.concatenate([p.sign for p in self.parts]))

    def select(self, mask: np.ndarray) -> "Segments":
        """Keep the events where ``mask`` (over the concatenated events) is true, segment by segment."""
        out, start = [], 0
        for p in self.parts:
            out.append(p.select(mask[start:start + len(p)]))
            start += len(p)
        return Segments(out, self.steps)

    def plain(self) -> "Segments":
        return Segments([p.plain() for p in self.parts], self.steps)

    def step_of(self, k: int):
        return None if self.steps is None else self.steps[k]

    def validate(self, n_units: int, where: str) -> None:
        for k, p in enumerate(self.parts):
            p.validate(n_units, f"{where} segment {k}")


def merge_parts(parts: list):
    """``merge_shards`` for batches or, segment by segment, for ``Segments``."""
    if parts and isinstance(parts[0], Segments):
        return Segments([merge_shards(list(seg)) for seg in zip(*(p.parts for p in parts))], parts[0].steps)
    return merge_shards(parts)
