"""Per-actor traffic logs: recorder round trip, appends, crash safety, and the runtime's counters."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from distspike.config import LoggingConfig, ModelConfig, NetConfig, RunTags, TrainingConfig
from distspike.logs.traffic import (FILE_SCHEMA, SCHEMA, VERSION_KEY, TrafficError, TrafficRecorder, layer_totals,
                                    read_traffic)
from distspike.runtime.local import local_net

ACTOR = "forward.2.1"
TAGS = RunTags(run_id="0123456789abcdef0123456789abcdef", routing="dfs", rule="fsgd", job=3)


def recorder(run_dir, every=1, flush_rows=7, name=ACTOR):
    kind, layer, shard = name.split(".")
    return TrafficRecorder(str(run_dir), name, kind, int(layer), int(shard),
                           LoggingConfig(every=every, flush_rows=flush_rows, tags=TAGS))


def rows_for(samples, steps=3):
    """Rows ``(direction, epoch, sample, step, ev_in, pos, neg, b_in, b_out, compute_s)``."""
    return [("forward" if (s + t) % 2 else "backward", 1 + s // 10, s, t, 10 * s + t, s, t, 16 + 5 * s, 16 + t,
             1e-6 * (s + 1) * (t + 1)) for s in samples for t in range(steps)]


def record_all(rec, rows):
    for row in rows:
        rec.record(*row)


def parts(run_dir, name=ACTOR):
    return sorted(p.name for p in (run_dir / "traffic" / f"actor={name}").iterdir())


def sorted_rows(table):
    t = table.sort_by([("sample", "ascending"), ("step", "ascending")])
    cols = ["direction", "epoch", "sample", "step", "events_in", "events_out_pos", "events_out_neg",
            "bytes_in", "bytes_out", "compute_s"]
    return list(zip(*[t[c].to_pylist() for c in cols]))


def test_round_trip_every_and_parts(tmp_path):
    run = tmp_path / "run"
    rec = recorder(run, every=2, flush_rows=7)
    record_all(rec, rows_for(range(20)))  # 60 rows, 30 of them for even samples
    # 4 full parts of 7 rows went to the writer thread; the last may still be in flight
    assert 3 <= len(parts(run)) <= 4 and rec.buffered == 2
    rec.close()  # waits for it, then writes the 2 buffered rows
    assert parts(run) == [f"part-{k:06d}.parquet" for k in range(5)]
    table = read_traffic(run)
    assert table.num_rows == 30 and rec.rows_written == 30
    assert sorted_rows(table) == rows_for(range(0, 20, 2))
    for field in SCHEMA:
        assert table.schema.field(field.name).type == field.type, field.name
    assert {c: set(table[c].to_pylist()) for c in ("run_id", "routing", "rule", "job")} == {
        "run_id": {TAGS.run_id}, "routing": {"dfs"}, "rule": {"fsgd"}, "job": {3}}
    assert set(table["actor"].to_pylist()) == {ACTOR} and set(table["module"].to_pylist()) == {"forward"}
    assert set(table["layer"].to_pylist()) == {2} and set(table["shard"].to_pylist()) == {1}
    assert abs(pc.max(table["t_wall"]).as_py().timestamp() - time.time()) < 60
    # a part read on its own (pandas, polars, DuckDB) has FILE_SCHEMA's column types: plain strings, int16, ...
    import pyarrow.parquet as pq
    part = run / "traffic" / f"actor={ACTOR}" / "part-000000.parquet"
    assert pq.read_table(part).schema.remove_metadata() == FILE_SCHEMA.remove_metadata()
    assert pq.read_metadata(part).metadata == {VERSION_KEY.encode(): b"1"}  # the schema version
    stats = pq.read_metadata(part).row_group(0).column(FILE_SCHEMA.get_field_index("sample")).statistics
    assert (stats.min, stats.max) == (0, 4)  # files can be skipped by sample


def test_flush_and_discard_wait_for_the_part_in_flight(tmp_path):
    run = tmp_path / "run"
    rec = recorder(run, flush_rows=3)
    record_all(rec, rows_for([1, 2]))  # 6 rows: two full parts, handed to the writer thread
    assert rec.discard() == 0  # nothing left in the buffers...
    assert parts(run) == ["part-000000.parquet", "part-000001.parquet"]  # ...and both parts are complete
    record_all(rec, rows_for([3]))
    rec.flush()
    assert parts(run) == [f"part-{k:06d}.parquet" for k in range(3)] and read_traffic(run).num_rows == 9


def test_flush_and_empty_flush(tmp_path):
    rec = recorder(tmp_path / "run", flush_rows=1000)
    assert rec.flush() is None  # nothing buffered: no file
    record_all(rec, rows_for([3]))
    path = rec.flush()
    assert path.name == "part-000000.parquet" and rec.buffered == 0
    assert read_traffic(tmp_path / "run").num_rows == 3


def test_flush_without_waiting_hands_the_part_to_the_writer(tmp_path):
    run = tmp_path / "run"
    rec = recorder(run, flush_rows=1000)
    record_all(rec, rows_for(range(3)))
    assert rec.flush(wait=False) is None and rec.buffered == 0
    rec.close()  # waits for it
    assert parts(run) == ["part-000000.parquet"]
    assert sorted_rows(read_traffic(run)) == rows_for(range(3))


def test_reopen_appends(tmp_path):
    run = tmp_path / "run"
    first = recorder(run, flush_rows=4)
    record_all(first, rows_for(range(3)))  # 9 rows: parts 0, 1 + 1 buffered row
    first.close()
    before = {p: (run / "traffic" / f"actor={ACTOR}" / p).read_bytes() for p in parts(run)}
    assert list(before) == ["part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]
    second = recorder(run, flush_rows=4)
    assert second.seq == 3
    record_all(second, rows_for(range(3, 5)))
    second.close()
    assert parts(run) == [f"part-{k:06d}.parquet" for k in range(5)]
    for name, data in before.items():  # never overwritten
        assert (run / "traffic" / f"actor={ACTOR}" / name).read_bytes() == data
    assert sorted_rows(read_traffic(run)) == rows_for(range(5))


def test_several_actors_and_run_id(tmp_path):
    run = tmp_path / "run"
    for name in ("forward.1.0", "forward.1.1", "backward.2.0"):
        rec = recorder(run, name=name)
        record_all(rec, rows_for([0, 1]))
        rec.close()
    table = read_traffic(run)
    assert table.num_rows == 18
    assert sorted(set(table["actor"].to_pylist())) == ["backward.2.0", "forward.1.0", "forward.1.1"]
    assert set(pc.filter(table, pc.equal(table["actor"], "backward.2.0"))["module"].to_pylist()) == {"backward"}
    rec = TrafficRecorder(str(run), "forward.1.0", "forward", 1, 0, LoggingConfig(), run_id="custom")
    rec.record(*rows_for([9])[0])
    rec.close()
    assert "custom" in read_traffic(run)["run_id"].to_pylist()


def test_temp_files_are_outside_the_dataset_and_cleaned(tmp_path):
    run = tmp_path / "run"
    rec = recorder(run)
    record_all(rec, rows_for([0]))
    rec.close()
    # a part is written beside the dataset dir (polars and DuckDB read hidden files in it), then moved in
    assert rec._temp_path(1).parent == run and (run / "traffic") not in rec._temp_path(1).parents
    actor_dir = run / "traffic" / f"actor={ACTOR}"
    stale = [rec._temp_path(1), actor_dir / ".part-000001.parquet.tmp"]  # this version's, schema v0's
    other = recorder(run, name="forward.1.0")._temp_path(0)  # another actor's, being written
    for path in stale + [other]:
        path.write_bytes(b"PAR1 half a file")
    assert read_traffic(run).num_rows == 3
    recorder(run)  # the next recorder of that actor removes its leftovers, and only those
    assert not any(p.exists() for p in stale) and other.exists()


def test_plots_dir_is_not_read(tmp_path):
    run = tmp_path / "run"
    rec = recorder(run)
    record_all(rec, rows_for([0]))
    rec.close()
    (run / "traffic" / "plots").mkdir()
    (run / "traffic" / "plots" / "x.png").write_bytes(b"\x89PNG")
    assert read_traffic(run).num_rows == 3


def test_read_traffic_errors_name_the_directory(tmp_path):
    with pytest.raises(TrafficError, match="nowhere"):
        read_traffic(tmp_path / "nowhere")
    (tmp_path / "run").mkdir()
    with pytest.raises(TrafficError, match=str(tmp_path / "run" / "traffic")):
        read_traffic(tmp_path / "run")
    (tmp_path / "run" / "traffic" / f"actor={ACTOR}").mkdir(parents=True)
    with pytest.raises(TrafficError, match="no actor=.*part"):
        read_traffic(tmp_path / "run")
    assert issubclass(TrafficError, ValueError)


def test_bad_rows_raise_clear_errors(tmp_path):
    rec = recorder(tmp_path / "run")
    with pytest.raises(TrafficError, match="direction='sideways'"):
        rec.record("sideways", 1, 0, 0, 1, 1, 0, 21, 21, 0.0)
    with pytest.raises(TrafficError, match="forward.2.1.*events_in"):
        rec.record("forward", 1, 0, 0, "many", 1, 0, 21, 21, 0.0)
    assert rec.buffered == 0
    rec.record("forward", np.int64(1), np.int64(2), np.int32(0), np.int64(3), 1, 0, 21, 21, np.float32(0.5))
    assert rec.buffered == 1


def test_diverging_counts_saturate_instead_of_failing(tmp_path):
    rec = recorder(tmp_path / "run")
    rec.record("forward", 1, 0, 0, 2 ** 40, 2 ** 31, 0, 5 * 2 ** 40, 16, 1.0)
    rec.record("forward", 1, 0, 1, 2 ** 33, 1, 0, 21, 21, 0.0)
    with pytest.warns(RuntimeWarning, match="forward.2.1.*saturated") as warned:  # when written, once
        rec.close()
    assert len([w for w in warned if "saturated" in str(w.message)]) == 1
    assert rec.saturated == 2
    row = read_traffic(tmp_path / "run").sort_by("step").to_pylist()[0]
    top = 2 ** 31 - 1
    assert (row["events_in"], row["events_out_pos"], row["bytes_in"], row["bytes_out"]) == (top, top, top, 16)


CRASH_WRITER = textwrap.dedent("""
    import sys
    from distspike.config import LoggingConfig
    from distspike.logs.traffic import TrafficRecorder
    rec = TrafficRecorder(sys.argv[1], "forward.1.0", "forward", 1, 0, LoggingConfig(flush_rows=int(sys.argv[2])))
    i = int(sys.argv[3])
    while True:
        rec.record("forward", 1, i // 10, i % 10, i % 1000, 1, 2, 3, 4, 0.5)
        i += 1
""")


def run_and_kill(run, flush_rows, start, min_parts):
    """Start a writer, SIGKILL it once at least ``min_parts`` part files exist."""
    actor_dir = run / "traffic" / "actor=forward.1.0"
    proc = subprocess.Popen([sys.executable, "-c", CRASH_WRITER, str(run), str(flush_rows), str(start)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if actor_dir.is_dir() and sum(n.startswith("part-") for n in os.listdir(actor_dir)) >= min_parts:
                break
            assert proc.poll() is None, "writer died"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def check_complete(run, flush_rows):
    table = read_traffic(run)
    n = table.num_rows
    assert n > 0 and n % flush_rows == 0  # only whole parts
    t = table.sort_by([("sample", "ascending"), ("step", "ascending")])
    i = 10 * np.array(t["sample"]) + np.array(t["step"])
    np.testing.assert_array_equal(i, np.arange(n))  # no row lost or duplicated
    np.testing.assert_array_equal(np.array(t["events_in"]), i % 1000)
    return n


def test_sigkill_leaves_only_complete_parts(tmp_path):
    run, flush_rows = tmp_path / "run", 100
    run_and_kill(run, flush_rows, 0, 3)
    n = check_complete(run, flush_rows)
    run_and_kill(run, flush_rows, n, n // flush_rows + 3)  # a resumed run appends after the parts
    check_complete(run, flush_rows)


# -- end to end with the in-process runtime ------------------------------------------
CONFIGS = {
    "bfs-held": dict(),
    "dfs-unheld": dict(routing="dfs", hold=False),
    "fsgd": dict(rule="fsgd"),
}


def train_run(run_dir, shards=2, samples=5, routing="bfs", hold=True, rule="sgd", every=1):
    """A few samples on the 12-7-5-4 net of tests/core (large weights: every layer spikes)."""
    cfg = NetConfig(ModelConfig((12, 7, 5, 4), 1.2),
                    TrainingConfig(eta=0.25, steps=5, hold_error=hold, rule=rule), routing=routing, seed=7)
    net = local_net(cfg, shards=shards, logging=LoggingConfig(every=every), run_dir=str(run_dir))
    rng = np.random.default_rng(0)
    X, y = rng.uniform(0, 1, (samples, 12)), rng.integers(0, 4, samples)
    for k in range(samples):
        net.train_sample(X[k], y[k])
    net.close()
    return net


def total(table, column, **where):
    mask = None
    for key, value in where.items():
        m = pc.equal(table[key], value)
        mask = m if mask is None else pc.and_(mask, m)
    return int(pc.sum(pc.filter(table, mask)[column]).as_py() or 0)


def out(table, **where):
    return total(table, "events_out_pos", **where) + total(table, "events_out_neg", **where)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logs_match_runtime_counters(tmp_path, name):
    net = train_run(tmp_path / "run", **CONFIGS[name])
    stats, table = net.stats, read_traffic(tmp_path / "run")
    L = 3
    assert sorted(set(table["actor"].to_pylist())) == sorted(
        [f"forward.{l}.{k}" for l in range(1, L + 1) for k in range(2)]
        + [f"backward.{l}.{k}" for l in range(2, L + 1) for k in range(2)])
    assert set(table["sample"].to_pylist()) == set(range(5))
    assert set(table["step"].to_pylist()) <= set(range(5))
    fwd, bwd = dict(module="forward"), dict(module="backward")
    for l in range(1, L + 1):
        # spikes emitted by forward layer l
        assert out(table, layer=l, direction="forward", **fwd) == stats.fwd[l]
        # error spikes reaching gate l: every forward shard sees the whole batch, so count shard 0 only
        per_shard = [total(table, "events_in", layer=l, shard=k, direction="backward", **fwd) for k in range(2)]
        assert per_shard[0] == per_shard[1] == stats.err_in[l]
        assert out(table, layer=l, direction="backward", **fwd) == stats.err_passed[l]
        assert out(table, layer=l, **bwd) == stats.bwd_out[l]
        if l >= 2:
            # backward shards log the forward spikes they count (direction forward, nothing emitted)
            assert total(table, "events_in", layer=l, shard=0, direction="forward", **bwd) == stats.fwd[l - 1]
            assert out(table, layer=l, direction="forward", **bwd) == 0
            # each backward shard receives every passed error spike of its layer
            assert total(table, "events_in", layer=l, shard=1, direction="backward", **bwd) == stats.err_passed[l]
    # input spikes: what forward layer 1 (any one shard) received
    assert total(table, "events_in", layer=1, shard=0, direction="forward", **fwd) == stats.fwd[0]
    totals = layer_totals(table)
    for q in ("fwd", "err_in", "err_passed", "bwd_out"):
        np.testing.assert_array_equal(totals[q], getattr(stats, q), err_msg=q)
    # bytes: header + 5 bytes per event
    np.testing.assert_array_equal(np.array(table["bytes_in"]), 16 + 5 * np.array(table["events_in"]))
    assert pc.min(table["compute_s"]).as_py() >= 0


def test_logging_every_keeps_only_those_samples(tmp_path):
    train_run(tmp_path / "run", samples=6, every=3)
    table = read_traffic(tmp_path / "run")
    assert set(table["sample"].to_pylist()) == {0, 3}
    full = train_run(tmp_path / "full", samples=6)
    all_rows = read_traffic(tmp_path / "full")
    kept = pc.filter(all_rows, pc.is_in(all_rows["sample"], pa.array([0, 3], pa.int64())))
    assert kept.num_rows == table.num_rows
    assert full.stats.fwd.sum() > 0


# -- messages as the shells hand them over ---------------------------------------------
def test_segments_give_one_row_per_segment_in_message_order(tmp_path):
    from distspike.runtime.shell import FORWARD, GATED
    run = tmp_path / "run"
    rec = recorder(run, flush_rows=4)
    rec.message(0, FORWARD, (1, 4, 9), 3, 1, 2)  # staged, packed before the segments
    bounds, steps = np.array([0, 2, 2, 5]), np.array([0, 1, 2])
    signs = np.array([1, -1, 1, 1, -1], np.int8)
    passed = np.array([True, True, False, True, False])
    rec.segments(0, GATED, (1, 4, 9), steps, bounds, signs, passed, np.zeros(0, np.int64))
    assert rec.buffered == 0  # exactly 4 rows: one full part, handed to the writer thread
    rec._wait()
    assert len(parts(run)) == 1
    rec.close()
    t = read_traffic(run)
    cols = ["direction", "step", "events_in", "events_out_pos", "events_out_neg", "bytes_in", "bytes_out"]
    assert list(zip(*[t[c].to_pylist() for c in cols])) == [
        ("forward", 9, 3, 1, 1, 31, 26),
        ("backward", 0, 2, 1, 1, 26, 26),  # segment 0: both events passed
        ("backward", 1, 0, 0, 0, 16, 16),  # an empty segment keeps its row
        ("backward", 2, 3, 1, 0, 31, 21)]  # segment 2: only the third event (+1) passed
    gate = t["compute_s"].to_pylist()[1:]
    assert gate[0] == gate[1] == gate[2] > 0  # the message's time, split evenly
    assert len(set(t["t_wall"].to_pylist()[1:])) == 1


def test_passed_positive_counts_plus_signs_among_passed():
    from distspike.runtime.shell import passed_positive
    rng = np.random.default_rng(3)
    for n in (0, 1, 7, 64, 1000):
        sign = rng.choice(np.array([-1, 1], np.int8), n)
        passed = rng.random(n) < 0.5
        assert passed_positive(sign, passed) == int(np.count_nonzero((sign > 0) & passed))


# -- the fused in-process sample logs the same rows as the per-message path ---------------
ROW_COLUMNS = ["actor", "module", "layer", "shard", "direction", "epoch", "sample", "step", "events_in",
               "events_out_pos", "events_out_neg", "bytes_in", "bytes_out"]


def actor_rows(run_dir) -> dict:
    """Each actor's rows (all columns but the timing ones), in the order it logged them."""
    table = read_traffic(run_dir)
    rows = list(zip(*[table[c].to_pylist() for c in ROW_COLUMNS]))
    out = {}
    for row in rows:
        out.setdefault(row[0], []).append(row)
    return out


def fused_and_plain(tmp_path, rule, dtype, samples=8, every=1, flush_rows=37):
    """The same samples through the fused sample and the per-message path, both logging."""
    cfg = NetConfig(ModelConfig((12, 7, 5, 4), 1.2, dtype), TrainingConfig(eta=0.25, steps=5, rule=rule), seed=7)
    logging = LoggingConfig(every=every, flush_rows=flush_rows)  # small buffers: rows cross part files
    fused = local_net(cfg, logging=logging, run_dir=str(tmp_path / "fused"))
    plain = local_net(cfg, logging=logging, run_dir=str(tmp_path / "plain"))
    plain.scheduler.fused = False
    assert fused.scheduler.fused
    rng = np.random.default_rng(1)
    X, y = rng.uniform(0, 1, (samples, 12)), rng.integers(0, 4, samples)
    X[2] = 0  # no input spikes: a silent forward chain (SGD still sends it whole), errors from the target only
    for k in range(samples):
        fused.train_sample(X[k], y[k])
        plain.train_sample(X[k], y[k])
    fused.close()
    plain.close()
    return fused, plain


@pytest.mark.parametrize("rule", ["sgd", "fsgd"])
@pytest.mark.parametrize("dtype", ["float64", "int"])
def test_fused_sample_logs_the_per_message_rows(tmp_path, rule, dtype):
    """Row for row, in each actor's order; only ``compute_s`` and ``t_wall`` may differ."""
    fused, plain = fused_and_plain(tmp_path, rule, dtype)
    assert fused.backend.calls == 8 < plain.backend.calls
    got, want = actor_rows(tmp_path / "fused"), actor_rows(tmp_path / "plain")
    assert sorted(got) == sorted(want) == ["backward.2.0", "backward.3.0", "forward.1.0", "forward.2.0",
                                           "forward.3.0"]
    for actor in want:
        assert got[actor] == want[actor], actor
    if rule == "sgd":  # whole-sample messages: steps without spikes are logged too (the dropped-message rows)
        assert any(r[4] == "forward" and r[8] == 0 for rows in want.values() for r in rows)
    stats, table = fused.stats, read_traffic(tmp_path / "fused")
    assert stats.as_dict() == plain.stats.as_dict()
    totals = layer_totals(table)
    for q in ("fwd", "err_in", "err_passed", "bwd_out"):
        np.testing.assert_array_equal(totals[q], getattr(stats, q), err_msg=q)
    assert stats.bwd_out.sum() > 0
    compute = np.array(table["compute_s"])
    assert (compute >= 0).all() and compute.sum() > 0
    # a sample's rows carry its end time (each actor converts it to wall-clock time itself)
    wall = {}
    for s, w in zip(table["sample"].to_pylist(), table["t_wall"].to_pylist()):
        wall.setdefault(s, []).append(w)
    assert all((max(v) - min(v)).total_seconds() < 1e-3 for v in wall.values())


@pytest.mark.parametrize("rule", ["sgd", "fsgd"])
def test_fused_sample_keeps_every_kth_sample(tmp_path, rule):
    fused, plain = fused_and_plain(tmp_path, rule, "float64", samples=7, every=3)
    got, want = actor_rows(tmp_path / "fused"), actor_rows(tmp_path / "plain")
    assert got == want
    assert {r[6] for rows in got.values() for r in rows} == {0, 3, 6}


def part_sizes(run_dir) -> dict:
    """Rows of each part file, per actor, in part order."""
    import pyarrow.parquet as pq
    root = run_dir / "traffic"
    return {d.name: [pq.read_metadata(p).num_rows for p in sorted(d.glob("part-*.parquet"))]
            for d in sorted(root.iterdir())}


@pytest.mark.parametrize("rule", ["sgd", "fsgd"])
@pytest.mark.parametrize("flush_rows,table_rows", [(5, None), (37, None), (37, 1)])
def test_fused_samples_fill_the_same_parts(tmp_path, monkeypatch, rule, flush_rows, table_rows):
    """Fused samples table their rows for all actors in one table, handed to the recorders in
    bulk (``SampleRows``): the parts hold the same rows as the per-message path's, full
    buffers included, also when one sample has more rows than a buffer, or than the table
    (the kernel grows it)."""
    from distspike.logs.traffic import SampleRows
    if table_rows is not None:
        init = SampleRows.__init__

        def small_table(self, *args):
            init(self, *args)
            self.log = self.log[:table_rows].copy()
        monkeypatch.setattr(SampleRows, "__init__", small_table)
    fused, plain = fused_and_plain(tmp_path, rule, "float64", flush_rows=flush_rows)
    if table_rows is not None:
        assert fused.backend.fq[1][0].recorder.sample_rows.log.shape[0] > table_rows
    assert part_sizes(tmp_path / "fused") == part_sizes(tmp_path / "plain")
    assert actor_rows(tmp_path / "fused") == actor_rows(tmp_path / "plain")


def handed_over_every_sample(monkeypatch):
    """``SampleRows`` hands its table to the thread after every sample (capacity 1)."""
    from distspike.logs.traffic import SampleRows
    init = SampleRows.__init__

    def every_sample(self, recorders, capacity=4096):
        init(self, recorders, 1)
    monkeypatch.setattr(SampleRows, "__init__", every_sample)


@pytest.mark.parametrize("rule", ["sgd", "fsgd"])
def test_fused_rows_reach_the_recorders_in_the_background(tmp_path, monkeypatch, rule):
    """The recorders take the fused samples' rows in the ``traffic-rows`` thread, also when it
    lags behind training (a slow ``take``: the tables alternate and the training thread
    waits for the thread before it reuses one); the parts are those of the per-message path."""
    import threading
    handed_over_every_sample(monkeypatch)
    takers = []
    take = TrafficRecorder.take

    def slow_take(self, ints, floats):
        takers.append(threading.current_thread().name)
        time.sleep(0.002)
        take(self, ints, floats)
    monkeypatch.setattr(TrafficRecorder, "take", slow_take)
    fused, plain = fused_and_plain(tmp_path, rule, "float64", flush_rows=5)
    assert takers and all(name.startswith("traffic-rows") for name in takers)
    assert part_sizes(tmp_path / "fused") == part_sizes(tmp_path / "plain")
    assert actor_rows(tmp_path / "fused") == actor_rows(tmp_path / "plain")


def test_a_failure_in_the_rows_thread_is_raised_by_training(tmp_path, monkeypatch):
    """An error while the thread hands rows over (e.g. a part that cannot be written) is not
    lost: the next sample that hands over a table, or ``close``, raises it."""
    handed_over_every_sample(monkeypatch)

    def full_disk(self, ints, floats):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(TrafficRecorder, "take", full_disk)
    cfg = NetConfig(ModelConfig((12, 7, 5, 4), 1.2), TrainingConfig(eta=0.25, steps=5), seed=7)
    net = local_net(cfg, logging=LoggingConfig(), run_dir=str(tmp_path / "run"))
    rng = np.random.default_rng(1)
    with pytest.raises(OSError, match="No space left"):
        for x, label in zip(rng.uniform(0, 1, (4, 12)), rng.integers(0, 4, 4)):
            net.train_sample(x, label)
        net.close()


@pytest.mark.parametrize("rule", ["sgd", "fsgd"])
def test_fused_and_per_message_samples_mix_in_order(tmp_path, rule):
    """A net that takes the fused sample for some samples and the per-message path for
    others logs every actor's rows in sample order, as one that never fuses."""
    cfg = NetConfig(ModelConfig((12, 7, 5, 4), 1.2), TrainingConfig(eta=0.25, steps=5, rule=rule), seed=7)
    logging = LoggingConfig(flush_rows=23)
    mixed = local_net(cfg, logging=logging, run_dir=str(tmp_path / "mixed"))
    plain = local_net(cfg, logging=logging, run_dir=str(tmp_path / "plain"))
    plain.scheduler.fused = False
    rng = np.random.default_rng(2)
    X, y = rng.uniform(0, 1, (9, 12)), rng.integers(0, 4, 9)
    for k in range(9):
        mixed.scheduler.fused = k % 3 != 1
        mixed.train_sample(X[k], y[k])
        plain.train_sample(X[k], y[k])
        if k == 4:
            recs = [sh.recorder for _, sh in mixed.backend.shells()]
            held = sum(r.buffered for r in recs)
            assert held == sum(r.buffered for _, r in ((n, sh.recorder) for n, sh in plain.backend.shells()))
    mixed.close()
    plain.close()
    got, want = actor_rows(tmp_path / "mixed"), actor_rows(tmp_path / "plain")
    assert got == want
    for rows in got.values():
        samples = [r[6] for r in rows]
        assert samples == sorted(samples)
