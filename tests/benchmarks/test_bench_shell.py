"""``benchmarks/bench_shell.py``'s shell timers: every message method timed per shell, and undone."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_shell as bs  # noqa: E402

from distspike.config import ModelConfig, NetConfig, RuntimeConfig, TrainingConfig  # noqa: E402
from distspike.runtime import make_net, shell  # noqa: E402


def test_timers_see_every_shell_and_are_undone():
    before = {m: getattr(shell.Shell, m) for m in bs.METHODS}
    busy, cpu, calls, undo = bs.timed_shells(0.0)
    try:
        cfg = NetConfig(ModelConfig((20, 8, 8, 3), 0.01, "float32"), TrainingConfig(rule="sgd"))
        rng = np.random.default_rng(0)
        with make_net(cfg, RuntimeConfig("local", 2)) as net:
            for k in range(3):
                net.train_sample(rng.uniform(0, 1, 20), k % 3)
    finally:
        undo()
    assert {m: getattr(shell.Shell, m) for m in bs.METHODS} == before
    assert set(busy) == {f"forward.{l}.{s}" for l in (1, 2, 3) for s in (0, 1)} | \
        {f"backward.{l}.{s}" for l in (2, 3) for s in (0, 1)}
    assert all(v > 0 for v in busy.values()) and all(calls[n] > 0 for n in busy)
    assert set(cpu) == set(busy) and all(v >= 0 for v in cpu.values())  # the thread's CPU seconds
