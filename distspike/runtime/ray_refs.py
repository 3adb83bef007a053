"""Batches that exist only as Ray object refs, and how a receiver assembles them (Ray runtime).

The backend (``ray_backend.py``) passes an actor's output on as refs; the next
layer's shards receive the refs of all previous-layer shards as arguments and
merge them themselves (``assemble``).
"""
from __future__ import annotations

import numpy as np
import ray

from distspike.core.messages import gather_parts, merge_parts


class Pending:
    """A batch that exists only as refs: ``kind`` says how to assemble it from ``refs``.

    ``("shards",)``: the outputs of all shards of one layer, merged into unsharded
    order. ``("gated", n, inner)``: ``n`` pass masks from the forward shards, then the
    parts of the gated batch (``inner``); the passed events are selected.
    ``("rooted", n)``: the ``(roots, mask)`` pairs of the ``n`` shards of the output gate
    (compiled sample graph, ``runtime/compiled.py``); the passed roots are selected.
    """

    __slots__ = ("kind", "refs")

    def __init__(self, kind: tuple, refs: list):
        self.kind, self.refs = kind, refs


def assemble(kind: tuple, parts: list, gather: bool = False):
    """Rebuild a batch (or ``Segments``) from the resolved parts of a ``Pending``.

    ``gather``: for a receiver that only counts the events, shard outputs are gathered
    without the k-way merge (``gather_parts``).
    """
    if kind[0] == "value":
        return parts[0]
    if kind[0] == "shards":
        return gather_parts(list(parts)) if gather else merge_parts(list(parts)).plain()
    n = kind[1]
    if kind[0] == "rooted":  # n (roots, mask) pairs of the output gate's shards (compiled sample graph)
        masks = [p[1] for p in parts[:n]]
        return parts[0][0].select(np.logical_or.reduce(masks) if n > 1 else masks[0])
    mask = np.logical_or.reduce(parts[:n]) if n > 1 else parts[0]
    return assemble(kind[2], parts[n:]).select(mask)


def _resolve(parts: list) -> list:
    """Fetch the ObjectRefs among ``parts`` in one ``ray.get``; plain values pass through."""
    at = [k for k, p in enumerate(parts) if isinstance(p, ray.ObjectRef)]
    parts = list(parts)
    for k, value in zip(at, ray.get([parts[k] for k in at])):
        parts[k] = value
    return parts


def _as_args(batch) -> tuple[tuple, list]:
    """``(kind, refs)`` to pass a concrete or pending batch as top-level call arguments."""
    if isinstance(batch, Pending):
        return batch.kind, batch.refs
    return ("value",), [batch]

