"""``benchmarks/bench_memory.py``'s row-streaming child, by wall clock and per CPU second (no timing asserted)."""
from __future__ import annotations

import queue
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_memory as bm  # noqa: E402


@pytest.mark.parametrize("cpu", [False, True])
def test_rows_reports_a_positive_rate(cpu):
    out = queue.Queue()
    bm._rows(50, 20, 0, 0.05, out, cpu)
    assert out.get_nowait() > 0
