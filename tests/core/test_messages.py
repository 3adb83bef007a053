"""``core/messages.py``: gathering shard outputs for counting equals merging them, up to order;
merging rejects a shard output that is not in firing order."""
from __future__ import annotations

import numpy as np
import pytest

from distspike.core.messages import MessageError, Segments, SpikeBatch, gather_parts, merge_parts
from distspike.kernels.updates import count_events

N_UNITS, STEPS = 12, 4


def _shard_output(rng, lo: int, hi: int, sizes) -> Segments:
    """A shard's keyed output: per step, events of units ``[lo, hi)`` in merge-key order."""
    parts = []
    for n in sizes:
        off, pot, idx = rng.integers(0, 5, n).astype(np.int32), rng.uniform(-2, 2, n), rng.integers(lo, hi, n)
        order = np.lexsort((idx, -np.abs(pot), off))
        parts.append(SpikeBatch(idx[order].astype(np.int32), rng.choice([-1, 1], n).astype(np.int8), off[order],
                                pot[order]))
    return Segments.of(parts, steps=np.arange(len(sizes)))


def _counts(batch) -> np.ndarray:
    flat = batch.batch if isinstance(batch, Segments) else batch
    c = np.zeros(N_UNITS, np.int64)
    count_events(c, flat.idx, flat.sign, 0)
    return c


def _segment_multisets(segs: Segments) -> list:
    return [sorted(zip(p.idx.tolist(), p.sign.tolist())) for p in segs.parts]


@pytest.mark.parametrize("sizes", [[(3, 0, 5, 2), (1, 4, 0, 2)], [(0, 0, 0, 0), (2, 0, 1, 0)],
                                   [(0, 0, 0, 0), (0, 0, 0, 0)], [(3, 1, 2, 2)]])
def test_gathered_segments_hold_each_segments_events_and_count_alike(sizes):
    rng = np.random.default_rng(len(sizes) + sum(map(sum, sizes)))
    block = N_UNITS // len(sizes)
    parts = [_shard_output(rng, k * block, (k + 1) * block, s) for k, s in enumerate(sizes)]
    merged, gathered = merge_parts(parts).plain(), gather_parts(parts)
    assert isinstance(gathered, Segments) and gathered.batch.off is None
    np.testing.assert_array_equal(gathered.bounds, merged.bounds)
    np.testing.assert_array_equal(gathered.steps, merged.steps)
    assert _segment_multisets(gathered) == _segment_multisets(merged)
    np.testing.assert_array_equal(_counts(gathered), _counts(merged))
    gathered.validate(N_UNITS, "test")


def test_gathered_batches_count_like_merged_ones():
    rng = np.random.default_rng(3)
    parts = [_shard_output(rng, 0, 6, (4,)).batch, _shard_output(rng, 6, 12, (5,)).batch]
    gathered = gather_parts(parts)
    assert isinstance(gathered, SpikeBatch) and gathered.off is None and len(gathered) == 9
    np.testing.assert_array_equal(_counts(gathered), _counts(merge_parts(parts)))


def test_merging_a_shard_output_out_of_firing_order_is_a_message_error():
    rng = np.random.default_rng(4)
    good, bad = _shard_output(rng, 0, 6, (4, 3)), _shard_output(rng, 6, 12, (2, 5))
    bad.batch.off[bad.bounds[1]:] = bad.batch.off[bad.bounds[1]:][::-1].copy()  # step 1: inputs in reverse
    bad.batch.off[bad.bounds[1]] += 1
    with pytest.raises(MessageError, match="cannot merge 2 shard outputs: .*not in firing order"):
        merge_parts([good, bad])
