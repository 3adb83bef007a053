"""The cost model's pure functions (``benchmarks/cost_model.py``), on hand-computed cases."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import cost_model as cm  # noqa: E402

SIZES = (784, 100, 100, 10)
#: a calibration with round numbers: 1 ms per plain stage at any payload and fan-out, 0.5 ms compiled
CAL = {"row_ns": {"100": 1.0, "1000": 1.0}, "col_ns": 2.0, "bw_e2": 0.8, "spin_cores": 1.0,
       "spin_slowdown": {"1": 1.5, "2": 2.0},
       "plain_ms": {w: {"1": {"1": 1.0, "40": 1.0}, "2": {"1": 1.0, "40": 1.0}} for w in ("same", "cross")},
       "compiled_ms": {w: {"1": 0.5, "2": 0.5} for w in ("same", "cross")},
       "call_cpu_ms": {"1": 0.1, "2": 0.1}}


def point(**kw) -> cm.Point:
    base = dict(sizes=SIZES, rule="sgd", shards=1, nodes=1, compiled=False, cores=2, machines=1,
                fwd=(10.0, 20.0, 30.0, 2.0), passed=(0.0, 4.0, 6.0, 8.0))
    return cm.Point(**{**base, **kw})


def test_interp_inside_outside_and_never_negative():
    t = {1.0: 2.0, 3.0: 4.0}
    assert cm.interp(t, 2.0) == 3.0
    assert cm.interp(t, 5.0) == 6.0  # extended past the end
    assert cm.interp({1.0: 2.0, 2.0: 1.0}, 10.0) == 0.0  # clamped at 0
    assert cm.interp({7.0: 1.5}, 100.0) == 1.5


def test_stages_per_sample():
    assert cm.stages(point()) == 9  # forward 1-3, fetch, gates 3-1, backward 3-2
    assert cm.stages(point(compiled=True)) == 9  # 8 without the fetch, plus the execution
    assert cm.stages(point(rule="fsgd")) == 90
    assert cm.stages(point(rule="fsgd", compiled=True)) == 81


def test_bandwidth_efficiency_per_doubling():
    assert cm.bw_efficiency(1, 0.8) == 1.0
    assert cm.bw_efficiency(2, 0.8) == pytest.approx(0.8)
    assert cm.bw_efficiency(4, 0.8) == pytest.approx(0.64)


def test_e2_by_block_size_interpolated_in_log_size_and_held_at_the_ends():
    cal = {**CAL, "bw_e2_block": {"100x50": 0.6, "400x200": 0.9}}  # 0.02 MB and 0.32 MB blocks
    assert cm.block_mb(point(shards=2)) == pytest.approx(784 * 50 * 4 / 1e6)  # the 784 x 100/2 forward.1 block
    assert cm.e2_of(cal, point(shards=2)) == pytest.approx(0.6 + 0.3 * math.log2(0.1568 / 0.02) / 4)
    small = point(sizes=(10, 100, 10), shards=2)  # 100 x 5 block: below the smallest calibrated, held
    assert cm.e2_of(cal, small) == 0.6
    mid = point(sizes=(10, 200, 100, 10), shards=2)  # the 200 x 50 block: 0.04 MB, one doubling of four
    assert cm.e2_of(cal, mid) == pytest.approx(0.6 + 0.3 / 4)
    assert cm.e2_of({**CAL, "bw_e2_block": {"100x50": 1.2, "400x200": 1.3}}, mid) == 1.0  # never above 1
    assert cm.e2_of(CAL, mid) == 0.8  # not measured: the older bw_e2


def test_work_elements_of_the_busiest_shard():
    rows_cols = cm.stage_work_elements(point(shards=2))
    # layer 1: 10 input spikes x 100/2 columns; 4/2 passed errors x 784 (strided), no backward replica
    assert rows_cols[0] == (10 * 50, 2 * 784)
    # layer 2: 20 x 50 rows + 3 errors x 100 x 2 (backward herd + update); 3 x 100 strided
    assert rows_cols[1] == (20 * 50 + 3 * 100 * 2, 3 * 100)
    assert rows_cols[2] == (30 * 5 + 4 * 100 * 2, 4 * 100)


def test_contention_plain_counts_shards_compiled_counts_actors():
    assert cm.contention(point(shards=2)) == 1.0
    assert cm.contention(point(shards=4)) == 2.0
    assert cm.contention(point(compiled=True)) == 2.5  # 5 spinning actors on 2 cores
    # 16 machines of 8 cores, 16 shards: 5 actors per machine, no contention
    assert cm.contention(point(shards=16, nodes=16, machines=16, cores=8, compiled=True)) == 1.0


def test_payload_uses_merge_keys_with_shards():
    assert cm.payload_kb(point()) == pytest.approx(20 * 5 / 1024)  # mean of 10, 20, 30 forward spikes
    assert cm.payload_kb(point(shards=2)) == pytest.approx(10 * 13 / 1024)


def test_predict_adds_hops_and_work():
    p = point()
    pr = cm.predict(CAL, p)
    work = sum(r * 1.0 + c * 2.0 for r, c in cm.stage_work_elements(p)) * 1e-9
    assert pr["crit"] == pytest.approx(work)
    assert pr["wall"] == pytest.approx(9 * 1e-3 + work)
    # 5 actors and the driver on 2 cores: 2 spinning besides each working one, hops and work x 2.0
    compiled = cm.predict(CAL, point(compiled=True))
    assert cm.spin_factor(CAL, point(compiled=True)) == 2.0
    assert compiled["wall"] == pytest.approx(9 * 0.5e-3 * 2.0 + work * 2.0)
    # the 2 cores spin all the time, shared by the 5 actors and the driver
    assert compiled["total_cpu"] == pytest.approx(2 * compiled["wall"] * 5 / 6)


def test_predict_oversubscribed_plain_work_slows_down():
    two, four = cm.predict(CAL, point(shards=2)), cm.predict(CAL, point(shards=4))
    # 4 shards do half the work each of 2 shards, but 4 share 2 cores: the same stage time, half the CPU
    assert four["wall"] - cm.stages(point()) * cm.hop_ms(CAL, point(shards=4)) * 1e-3 == pytest.approx(two["crit"])
    assert four["crit"] == pytest.approx(two["crit"] / 2)  # waiting for a core costs no CPU time
    assert cm.predict(CAL, point(shards=4, cores=4))["crit"] == pytest.approx(two["crit"] * 0.8 / 2 / 0.64)  # bandwidth: 0.8 per doubling


def test_scaled_spikes_hidden_layers_only():
    f, p = cm.scaled_spikes((10.0, 20.0, 30.0, 2.0), (0.0, 4.0, 6.0, 8.0), 100, 400, 0.5)
    assert f == (10.0, 40.0, 60.0, 2.0)
    assert p == (0.0, 8.0, 12.0, 8.0)


def test_off():
    assert cm.off(1.25, 1.0) == pytest.approx(0.25)
    assert cm.off(1.0, 0.0) == math.inf


def test_message_overhead_counts_as_work_of_each_stage():
    p = point()
    base = cm.predict(CAL, p)
    more = cm.predict({**CAL, "message_us": {"sgd": 100.0}}, p)
    # 9 critical-path messages over 3 layers: 3 per layer, 100 µs each, in each of the 3 layers' work
    assert more["crit"] - base["crit"] == pytest.approx(3 * 3 * 100e-6)
    assert more["wall"] - base["wall"] == pytest.approx(3 * 3 * 100e-6)


SHELL = {"forward.1.0": 1.0, "forward.1.1": 3.0, "forward.2.0": 2.0, "forward.2.1": 2.0, "backward.2.0": 0.5,
         "backward.2.1": 0.25, "forward.3.0": 0.1, "forward.3.1": 0.1, "backward.3.0": 0.1, "backward.3.1": 0.1}


def test_measured_shell_busy_is_the_work_of_the_busiest_shard_times_the_actor_factor():
    cal = {**CAL, "shell_ms": {"100": {"sgd": {"2": SHELL}}}, "actor_factor": {"sgd": 1.5}}
    p = point(shards=2)
    work, total = cm.layer_work(cal, p)
    # busiest per (kind, layer): backward.2 0.5, backward.3 0.1, forward.1 3.0, forward.2 2.0, forward.3 0.1
    assert sorted(work) == pytest.approx(sorted(v * 1.5e-3 for v in (0.5, 0.1, 3.0, 2.0, 0.1)))
    assert total == pytest.approx(sum(SHELL.values()) * 1.5e-3)
    pr = cm.predict(cal, p)
    assert pr["crit"] == pytest.approx(sum(work) / 0.8)  # two shards stream at once: bandwidth 0.8
    # not measured at 4 shards: the kernel formula times the ratio and the factor
    cal4 = {**cal, "shell_ratio": {"sgd": 3.0}}
    work4, _ = cm.layer_work(cal4, point(shards=4))
    assert work4 == pytest.approx([w * 4.5 for w in cm.formula_work(cal4, point(shards=4))])


def test_scheduler_stage_replaces_the_echo_stage_of_plain_calls():
    sched = {"sgd": {"1": {"stage_ms": 1.5, "kb": 0.1}, "2": {"stage_ms": 2.5, "kb": 0.1}}}
    cal = {**CAL, "sched_ms": {"same": sched, "cross": {}},
           "plain_ms": {w: {"1": {"1": 1.0, "40": 3.0}, "2": {"1": 2.0, "40": 2.0}, "4": {"1": 4.0, "40": 4.0}}
                        for w in ("same", "cross")}}
    small = point(fwd=(0.0, 0.0, 0.0, 0.0))  # no payload: no more than the microbenchmark's
    assert cm.hop_ms(cal, small) == pytest.approx(1.5)
    assert cm.hop_ms(cal, point(shards=2, fwd=(0.0,) * 4)) == pytest.approx(2.5)
    assert cm.hop_ms(cal, point(shards=4, fwd=(0.0,) * 4)) == pytest.approx(2.5 * 4.0 / 2.0)  # as the echo's fan-out
    # a larger payload adds what it adds to the fan-1 echo stage (1 -> 3 ms over 1 -> 40 KB)
    big = point(fwd=(8192.0, 8192.0, 8192.0, 0.0))  # 40 KB per message
    assert cm.hop_ms(cal, big) == pytest.approx(1.5 + 3.0 - cm.interp({1.0: 1.0, 40.0: 3.0}, 0.1))
    # no cross-node figure: the echo stage at the payload (extended below 1 KB)
    assert cm.hop_ms(cal, point(nodes=2)) == pytest.approx(cm.interp({1.0: 1.0, 40.0: 3.0}, 20 * 5 / 1024))
    assert cm.hop_ms(cal, point(compiled=True)) == pytest.approx(0.5)


def rec(rule="sgd", shards=1, nodes=1, wall=0.03, crit=0.006, measured="2026-12-02 18:40 UTC", width=100):
    return {"sizes": [784, width, width, 10], "rule": rule, "shards": shards, "nodes": nodes, "mode": "plain",
            "measured": measured, "repeats": 3,
            "median": {"wall": wall, "crit_busy": crit, "cpu": {"a": 0.001}, "fwd": [10.0, 20.0, 30.0, 2.0],
                       "passed": [0.0, 4.0, 6.0, 8.0]}}


def test_scheduler_constants_are_the_stage_time_beyond_the_work():
    out = cm.sched_constants(CAL, [rec(), rec(wall=0.033), rec(nodes=2, wall=0.048), rec(nodes=4, wall=1.0)])
    # (30 or 33 ms - 6 ms) over 9 stages, the median of the two runs
    assert out["sched_ms"]["same"]["sgd"]["1"]["stage_ms"] == pytest.approx(25.5 / 9, abs=1e-4)
    assert out["sched_ms"]["cross"]["sgd"]["1"]["stage_ms"] == pytest.approx(42 / 9, abs=1e-4)  # 4 nodes unused
    assert out["sched_ms"]["same"]["sgd"]["1"]["kb"] == pytest.approx(20 * 5 / 1024, abs=1e-4)


def test_shell_constants_ratio_and_factor():
    hot = {"busy_ms": {"forward.1.0": 1.0}, "calls": {"forward.1.0": 2.0}, "fwd": [10.0, 20.0, 30.0, 2.0], "passed": [0.0, 4.0, 6.0, 8.0]}
    out = cm.shell_constants(CAL, {"sgd:1:100": {"measured": "x", "hot": hot, "actor_factor": 1.2,
                                                 "gap_factor": 1.1}})
    assert out["shell_ms"]["100"]["sgd"]["1"] == {"forward.1.0": 1.0}
    assert out["actor_factor"]["sgd"] == 1.2
    p = point()
    assert out["shell_ratio"]["sgd"] == pytest.approx(1.0 / (sum(cm.formula_work(CAL, p)) * 1e3), rel=1e-3)


def test_runs_of_a_point_are_its_last_session():
    recs = [rec(wall=1.0, measured="2026-12-02 14:00 UTC"), rec(wall=0.02), rec(wall=0.04, measured="2026-12-02 18:45 UTC")]
    runs = cm.runs_by_point(recs)[(100, "sgd", 1, 1, "plain")]
    assert [r["median"]["wall"] for r in runs] == [0.02, 0.04]
    assert cm.measured(runs)["wall"] == pytest.approx(0.03)


def test_cluster_calibration_adds_the_wire_to_every_cross_node_stage():
    cal = {**CAL, "sched_ms": {"same": {}, "cross": {"sgd": {"1": {"stage_ms": 2.0, "kb": 0.1}}}}}
    out = cm.cluster_cal(cal, 0.1)
    assert out["sched_ms"]["cross"]["sgd"]["1"]["stage_ms"] == pytest.approx(2.1)
    assert out["compiled_ms"]["cross"]["1"] == pytest.approx(0.6)
    assert out["plain_ms"]["cross"]["1"]["1"] == pytest.approx(1.1)
    assert cal["sched_ms"]["cross"]["sgd"]["1"]["stage_ms"] == 2.0  # the rig's calibration is left as it was


def test_actor_factor_of_the_point_width_where_measured():
    cal = {**CAL, "shell_ms": {"100": {"sgd": {"1": {"forward.1.0": 2.0}}}}, "actor_factor": {"sgd": 1.5},
           "actor_factor_by_width": {"100": {"sgd": 0.5}}}
    assert cm.layer_work(cal, point())[1] == pytest.approx(1e-3)
    assert cm.layer_work({**cal, "actor_factor_by_width": {}}, point())[1] == pytest.approx(3e-3)


def test_shell_constants_take_the_shells_cpu_time_where_measured():
    hot = {"busy_ms": {"forward.1.0": 2.0}, "cpu_busy_ms": {"forward.1.0": 1.0}, "calls": {"forward.1.0": 2.0},
           "fwd": [10.0, 20.0, 30.0, 2.0], "passed": [0.0, 4.0, 6.0, 8.0]}
    out = cm.shell_constants(CAL, {"sgd:1:100": {"measured": "x", "hot": hot}})
    assert out["shell_ms"]["100"]["sgd"]["1"] == {"forward.1.0": 1.0}  # not the wall time's 2.0


def test_actor_message_cost_adds_per_call_and_per_spike():
    line = {"sgd": {"1": {"a_us": 50.0, "b_us_per_event": 0.01}, "2": {"a_us": 80.0, "b_us_per_event": 0.02}}}
    cal = {**CAL, "shell_ms": {"100": {"sgd": {"1": {"forward.2.0": 2.0, "backward.3.0": 1.0}}}},
           "shell_calls": {"100": {"sgd": {"1": {"forward.2.0": 3.0, "backward.3.0": 1.0}}}}, "actor_msg": line}
    p = point()
    # forward.2: 3 calls x 50 us + 0.01 us x (20 spikes of layer 1 + 6 errors passed at layer 2)
    assert cm.actor_message_s(cal, p, "forward.2.0", 3.0) == pytest.approx((150 + 0.26) * 1e-6)
    assert cm.actor_message_s(cal, point(shards=4), "forward.2.0", 3.0) == pytest.approx((240 + 0.52) * 1e-6)
    assert cm.actor_message_s(CAL, p, "forward.2.0", 3.0) == 0.0  # not calibrated
    work, total = cm.layer_work(cal, p)
    back = 1e-3 + (50 + 0.01 * (30 + 8)) * 1e-6  # backward.3: 1 call, 30 spikes of layer 2, 8 errors at layer 3
    assert sorted(work) == pytest.approx(sorted([2e-3 + 150.26e-6, back]))
    assert total == pytest.approx(sum(work))


def test_actor_msg_constants_prefer_the_ray_actor_and_the_widest_width():
    fit = lambda a: {"a_us": a, "b_us_per_event": 0.0}  # noqa: E731
    out = cm.actor_msg_constants({"sgd:1:5000": {"measured": "x", "inprocess": fit(1.0), "ray": fit(2.0)},
                                  "sgd:1:300": {"measured": "y", "inprocess": fit(9.0)},
                                  "fsgd:2:300": {"measured": "z", "inprocess": fit(3.0)}})
    assert out["actor_msg"]["sgd"]["1"]["a_us"] == 2.0 and out["actor_msg"]["sgd"]["1"]["mode"] == "ray"
    assert out["actor_msg"]["fsgd"]["2"] == {"a_us": 3.0, "b_us_per_event": 0.0, "mode": "inprocess", "width": 300}


def test_real_actor_shell_factor_comes_first_where_measured():
    rows = {"inprocess": [{"shell_us": 100.0}, {"shell_us": 300.0}], "ray": [{"shell_us": 120.0}, {"shell_us": 380.0}]}
    fit = {"a_us": 1.0, "b_us_per_event": 0.0}
    out = cm.actor_msg_constants({"sgd:1:100": {"measured": "x", "inprocess": fit, "ray": fit, "rows": rows},
                                  "sgd:2:100": {"measured": "x", "inprocess": fit, "ray": fit, "rows": rows}})
    assert out["actor_shell_factor"] == {"100": {"sgd": 1.25}}  # (120 + 380) / (100 + 300); 1 shard only
    cal = {**CAL, "actor_factor": {"sgd": 1.5}, "actor_factor_by_width": {"100": {"sgd": 1.4}}}
    assert cm.actor_factor({**cal, **out}, point()) == 1.25
    assert cm.actor_factor(cal, point()) == 1.4
    assert cm.actor_factor(cal, point(sizes=(784, 200, 200, 10))) == 1.5


def test_runs_timed_by_thread_cpu_supersede_those_without():
    new = rec(wall=0.05, measured="2026-12-02 19:00 UTC")
    new["median"]["crit_cpu"] = 0.004
    runs = cm.runs_by_point([rec(measured="2026-12-02 18:40 UTC"), new])[(100, "sgd", 1, 1, "plain")]
    assert runs == [new]
    me = cm.measured(runs)
    assert me["crit"] == 0.004 and me["crit_by"] == "cpu" and me["crit_busy"] == 0.006
    assert cm.measured([rec()])["crit_by"] == "busy"


def test_calibrate_spin_only_replaces_the_spin_slowdown_and_keeps_the_rest(tmp_path, monkeypatch):
    saved = {**CAL, "spin_slowdown_discarded": {"figures": {"1": 0.8}}, "sources": {"hops": {}}}
    cal_path = tmp_path / "cost_calibration.json"
    cal_path.write_text(json.dumps(saved))
    monkeypatch.setattr(cm, "CALIBRATION", cal_path)
    for name in ("SHELL_JSON", "ACTOR_JSON", "GAPS_JSONL"):
        monkeypatch.setattr(cm, name, tmp_path / "absent")
    monkeypatch.setattr(cm, "spin_constants", lambda: {"spin_slowdown": {"1": 1.0, "2": 1.01},
                                                       "spin_measured": "then"})
    cm.main(["calibrate", "--spin-only"])
    got = json.loads(cal_path.read_text())
    assert got["spin_slowdown"] == {"1": 1.0, "2": 1.01} and got["spin_measured"] == "then"
    assert "spin_slowdown_discarded" not in got
    assert got["row_ns"] == CAL["row_ns"] and got["compiled_ms"] == CAL["compiled_ms"]
    # a loop that keeps its core beside idle compiled actors: compiled graphs pay no contention
    assert cm.spin_factor(got, point(compiled=True)) == pytest.approx(1.01, abs=0.01)


def test_compiled_across_nodes_takes_fair_shares_where_the_rig_probe_says_the_channel_keeps_its_core():
    cal = {**CAL, "spin_slowdown": {"1": 1.0, "2": 1.0}, "spin_slowdown_cross": {"1": 1.9, "2": 7.0}}
    assert cm.spin_factor(cal, point(compiled=True)) == 1.0  # one node: the same-node probe, which yields
    assert cm.spin_factor(cal, point(compiled=True, nodes=2)) == 2.5  # 5 actors on 2 cores, fair shares
    assert cm.spin_factor(cal, point(compiled=True, nodes=2, shards=2)) == 5.0
    yields = {**cal, "spin_slowdown_cross": {"1": 1.1, "2": 1.2}}
    assert cm.spin_factor(yields, point(compiled=True, nodes=2)) == 1.0  # a cross-node channel that yields
    assert cm.spin_factor(CAL, point(compiled=True, nodes=2)) == 2.0  # not probed across: the same-node table


def test_calibrate_spin_cross_needs_the_rig_and_keeps_the_rest(tmp_path, monkeypatch):
    cal_path = tmp_path / "cost_calibration.json"
    cal_path.write_text(json.dumps(CAL))
    monkeypatch.setattr(cm, "CALIBRATION", cal_path)
    for name in ("SHELL_JSON", "ACTOR_JSON", "GAPS_JSONL"):
        monkeypatch.setattr(cm, name, tmp_path / "absent")
    monkeypatch.delenv("BENCH_IDLE_ADDRESS", raising=False)
    with pytest.raises(SystemExit, match="BENCH_IDLE_ADDRESS"):
        cm.main(["calibrate", "--spin-cross"])
    assert json.loads(cal_path.read_text()) == CAL  # nothing written
    import bench_idle
    probes = iter([{"1": 2.0, "2": 2.4}, {"1": 2.2, "2": 2.2}, {"1": 1.8, "2": 2.6}])
    monkeypatch.setattr(bench_idle, "slowdown_beside", lambda counts: next(probes))
    monkeypatch.setenv("BENCH_IDLE_ADDRESS", "198.18.0.2:6379")
    monkeypatch.delenv("BENCH_IDLE_RESOURCE", raising=False)
    cm.main(["calibrate", "--spin-cross"])
    got = json.loads(cal_path.read_text())
    assert got["spin_slowdown_cross"] == {"1": 2.0, "2": 2.4}  # the median of the three probes, per m
    assert got["spin_cross_where"] == "node_1" and len(got["spin_cross_probes"]) == 3
    assert got["spin_slowdown"] == CAL["spin_slowdown"] and got["row_ns"] == CAL["row_ns"]


def test_speed_of_scales_the_work_by_the_kernel_probe_beside_the_runs():
    cal = {**CAL, "row_ns": {"100": 1.0, "20000": 0.5}}
    runs = [{"kernel_ns": [0.6, 1.0]}, {"kernel_ns": [1.0, 1.0]}, {"kernel_ns": [0.5, 0.7]}]
    assert cm.speed_of(cal, runs) == pytest.approx(1.6)  # median of 0.8, 1.0, 0.6 over 0.5
    assert cm.speed_of(cal, [{"median": {}}]) is None
    slow = cm.predict(cal, point(speed=2.0))
    base = cm.predict(cal, point())
    assert slow["crit"] == pytest.approx(2 * base["crit"])
    assert slow["wall"] - base["wall"] == pytest.approx(base["crit"])  # the hops do not scale


def test_beside_cal_takes_the_work_term_measured_beside_the_point_and_keeps_the_rest():
    cal = {**CAL, "shell_ms": {"100": {"sgd": {"1": {"forward.1.0": 9.0}, "2": SHELL}}, "5000": {"sgd": {}}},
           "shell_calls": {"100": {"sgd": {"1": {"forward.1.0": 3.0}}}}, "actor_factor": {"sgd": 1.5}}
    probe = lambda ms: {"cpu_busy_ms": {"forward.1.0": ms}, "calls": {"forward.1.0": 2.0}}  # noqa: E731
    runs = [{**rec(), "shell_probe": [probe(1.0), probe(2.0)]}, {**rec(), "shell_probe": [probe(4.0), probe(3.0)]}]
    got = cm.beside_cal(cal, runs)
    assert got["shell_ms"]["100"]["sgd"]["1"] == {"forward.1.0": 2.5}  # the median of the four probes
    assert got["shell_calls"]["100"]["sgd"]["1"] == {"forward.1.0": 2.0}
    assert got["shell_ms"]["100"]["sgd"]["2"] == SHELL and "5000" in got["shell_ms"]  # other points as calibrated
    assert cal["shell_ms"]["100"]["sgd"]["1"] == {"forward.1.0": 9.0}  # the calibration itself is not changed
    work, _ = cm.layer_work(got, point())
    assert work == pytest.approx([2.5 * 1.5e-3])
    assert cm.beside_cal(cal, [rec()]) is None
    # compare --beside counts the probed points only, each with its own work term
    recs = [{**rec(), "shell_probe": [probe(1.0)]}, rec(nodes=2)]
    ok, n, notes = cm.within(cal, recs, 2, beside=True)
    assert n == 1 and notes[0].startswith("100 sgd:1:plain on 1 node(s)")
    assert len(cm.compare_table(cal, recs, 2, beside=True)) == 3  # the header, the rule, one point


def test_slow_hour_lines_put_three_predictions_beside_each_point(tmp_path, monkeypatch):
    beside, recal = tmp_path / "beside.jsonl", tmp_path / "recal.json"
    probe = {"cpu_busy_ms": {"forward.1.0": 1.0}, "calls": {"forward.1.0": 1.0}}
    beside.write_text(json.dumps({**rec(), "kernel_ns": [0.5, 0.7], "shell_probe": [probe]}) + "\n")
    slow = {**CAL, "plain_ms": {w: {"1": {"1": 2.0, "40": 2.0}} for w in ("same", "cross")}}
    recal.write_text(json.dumps(slow))
    monkeypatch.setattr(cm, "BESIDE_JSONL", beside)
    monkeypatch.setattr(cm, "RECAL", recal)
    lines = cm.slow_hour_lines(CAL, 2)
    row = lines[2].split(" | ")
    assert row[:6] == ["| 100", "sgd", "1", "1", "18:40", "0.50, 0.70"] and row[6] == "30.0"
    standing, same_hour = (float(c.split(" ")[0]) for c in row[7:9])
    assert same_hour > standing  # 2 ms stages instead of 1
    assert lines[-3].startswith("- standing calibration: wall time") and "of 1" in lines[-1]
