"""``benchmarks/bench_actor.py``: the recorded forward messages, replayed through a real ``ShardActor``
in-process, give back what the in-process shards sent (so the replay times the real work), and the
shell timer is undone. No timings are asserted."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_actor as ba  # noqa: E402

from distspike.config import ModelConfig, NetConfig, TrainingConfig  # noqa: E402
from distspike.core.messages import Segments  # noqa: E402
from distspike.runtime import shell  # noqa: E402


def _flat(batch):
    b = batch.batch if isinstance(batch, Segments) else batch
    return b.idx.tolist(), b.sign.tolist()


@pytest.mark.parametrize("rule,shards", [("sgd", 1), ("fsgd", 2)])
def test_replay_through_the_shard_actor_sends_what_the_shards_sent(rule, shards):
    cfg = NetConfig(ModelConfig((20, 8, 8, 3), 0.5, "float32"), TrainingConfig(rule=rule))
    rng = np.random.default_rng(0)
    X, y = rng.uniform(0, 1, (4, 20)), np.arange(4) % 3
    before = shell.Shell.forward
    msgs, info = ba.record_messages(cfg, shards, X, y, warmup=1)
    assert shell.Shell.forward is before
    assert {m[0] for m in msgs} == {1, 2, 3}
    assert all(len(m[4]) == (1 if m[0] == 1 else shards) for m in msgs)
    cls = ba._actor_class()
    for layer in (1, 2, 3):
        actor = ba._make(cls, info, layer)
        actor.start_timing()
        try:
            mine = [m for m in msgs if m[0] == layer]
            for seq, (_, pos, train, kind, parts, sent) in enumerate(mine):
                assert _flat(actor.timed_forward((seq, layer), pos, train, kind, *parts)) == _flat(sent)
        finally:
            actor.stop_timing()
        assert shell.Shell.forward is before
        rows = [ba._row(layer, m, t) for m, t in zip(mine, actor.timings())]
        assert len(rows) == len(mine) and all(r["busy_us"] > 0 and r["shell_us"] >= 0 for r in rows)
    fit = ba.line_fit(rows)
    assert fit["messages"] == len(rows) and np.isfinite(fit["a_us"]) and np.isfinite(fit["b_us_per_event"])
