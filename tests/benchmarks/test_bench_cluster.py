"""The pure helpers of ``benchmarks/bench_cluster.py``: placement rotation and the busy critical path."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_cluster as bc  # noqa: E402


def test_layers_rotate_over_nodes():
    assert [bc.node_of(f"forward.{l}.0", 2) for l in (1, 2, 3)] == [1, 0, 1]  # every forward hop crosses
    assert bc.node_of("backward.2.1", 4) == 3
    assert {bc.node_of(f"forward.1.{k}", 4) for k in range(4)} == {0, 1, 2, 3}  # a layer's shards spread
    assert bc.node_of("forward.3.5", 1) == 0
    bundles = bc.rotating_bundles(2)(["forward.1.0", "backward.2.0"], ["forward", "backward"], None)
    assert bundles == [{"node_1": 0.001}, {"node_0": 0.001}]


def test_critical_path_sums_the_busiest_shard_per_layer():
    busy = {"forward.1.0": 1.0, "forward.1.1": 3.0, "forward.2.0": 2.0, "backward.2.0": 0.5, "backward.2.1": 0.25}
    assert bc.critical_busy(busy) == 3.0 + 2.0 + 0.5


def test_median_of_windows():
    w = [{"wall": float(v), "cpu": {"a": float(v)}, "busy": {"a": 1.0}, "busy_cpu": {"a": v / 2},
          "fwd": [v, 1], "passed": [0, v]} for v in (1, 5, 2)]
    m = bc.median_of(w)
    assert m["wall"] == 2.0 and m["cpu"] == {"a": 2.0} and m["fwd"] == [2.0, 1.0] and m["passed"] == [0.0, 2.0]
    assert m["busy_cpu"] == {"a": 1.0}
    del w[0]["busy_cpu"]  # records of earlier sessions have no busy_cpu
    assert "busy_cpu" not in bc.median_of(w)


def test_core_share_is_a_fraction_of_a_core_per_process_count():
    shares = bc.probe_shares((1, 2), 0.05)
    assert set(shares) == {"1", "2"} and all(0.0 < v <= 1.0 for v in shares.values())


def test_memory_of_reads_resident_and_huge_pages_and_faults_of_a_process():
    import os
    got = bc.memory_of(os.getpid())
    assert set(got) == {"rss_mb", "anonhugepages_mb", "minflt", "majflt"}
    assert got["rss_mb"] > 1 and 0 <= got["anonhugepages_mb"] <= got["rss_mb"] and got["minflt"] > 0


def test_machine_speed_probes_are_positive_figures():
    assert bc.stream_gbs(mb=8, seconds=0.05) > 0
    assert bc.kernel_ns(width=300, seconds=0.05) > 0


def test_shell_probe_measures_the_in_process_shells_of_the_point_in_a_child():
    data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not (data / "mnist").is_dir():
        pytest.skip(f"real MNIST not found in {data / 'mnist'}")
    got = bc.shell_probe(40, "sgd", 2, 2, str(data))
    names = {f"forward.{l}.{s}" for l in (1, 2, 3) for s in (0, 1)} | {f"backward.{l}.{s}" for l in (2, 3) for s in (0, 1)}
    assert set(got["cpu_busy_ms"]) == names and set(got["calls"]) == names
    assert all(v >= 0 for v in got["cpu_busy_ms"].values()) and got["fwd"][0] > 0
