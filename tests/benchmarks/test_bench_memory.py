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


def test_same_block_e2_is_the_median_ratio_of_two_at_once_over_alone():
    assert bm.same_block_e2([(10.0, 9.0), (10.0, 7.0), (8.0, 8.0)]) == 0.9


def test_same_block_rejects_a_bad_shape(capsys):
    with pytest.raises(SystemExit) as err:
        bm.main(["--same-block", "20000"])
    assert err.value.code != 0 and "--same-block must be N,W" in capsys.readouterr().err
