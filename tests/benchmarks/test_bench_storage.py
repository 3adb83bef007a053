"""``benchmarks/bench_storage.py`` without a cluster: its section of results/benchmarks.md, and bad input."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_storage as bs  # noqa: E402


def test_section_has_one_row_per_record_with_the_extra_of_collect():
    med = {"shared": {"save_s": 1.0, "load_s": 0.5}, "collect": {"save_s": 1.5, "load_s": 1.25}}
    rec = {"measured": "2026-12-02 21:50 UTC", "nodes": 2, "width": 5000, "shards": 2, "parts_mb": 250.0,
           "rounds": {m: {q: [v] * 3 for q, v in t.items()} for m, t in med.items()}, "median": med, "collect_extra_save_s": 0.5,
           "collect_extra_save_s_per_mb": 0.002, "collect_extra_load_s": 0.75}
    text = bs.section({"2:5000:2": rec})
    row = [line for line in text.splitlines() if line.startswith("| 12-02")]
    assert row == ["| 12-02 21:50 UTC, 3 rounds | 2 | 784-5000-5000-10 float32 | 2 | 250 | 1.00 (1.00-1.00) / "
                   "1.50 (1.50-1.50) | +0.50 s | +2.0 ms | 0.50 (0.50-0.50) / 1.25 (1.25-1.25) |"]
    assert "bench_storage.py --nodes N" in text


def test_measuring_needs_the_node_count(tmp_path):
    with pytest.raises(SystemExit, match="--nodes=0"):
        bs.main(["--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()
