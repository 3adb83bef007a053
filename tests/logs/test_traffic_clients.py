"""A run's traffic dir reads directly in pandas, pyarrow, polars and DuckDB, with the same rows as
``read_traffic`` (also while a part is being written, and beside ``distspike-traffic --plot``'s
figures); the docs' client example runs; run dirs of schema v0 read with ``read_traffic``."""
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from distspike.config import LoggingConfig, ModelConfig, NetConfig, RunTags, TrainingConfig
from distspike.logs import cli
from distspike.logs.traffic import (SCHEMA, V0_SCHEMA, VERSION_KEY, TrafficError, TrafficRecorder, check_part,
                                    part_files, read_traffic)
from distspike.runtime.local import local_net

DOC = Path(__file__).resolve().parents[2] / "docs" / "traffic.md"
CLIENT_BLOCKS = re.findall(r"```py\n(.*?)```", DOC.read_text(), re.S)  # ```python blocks need no extra package
RUN_ID = "5e1f0c2d3b4a59687766554433221100"


def train(run_dir: Path, routing="bfs", rule="sgd", job=-1, samples=4) -> None:
    cfg = NetConfig(ModelConfig((12, 7, 4), 1.2), TrainingConfig(eta=0.25, steps=4, rule=rule), routing=routing,
                    seed=7)
    logging = LoggingConfig(flush_rows=20, tags=RunTags(run_id=RUN_ID if job == 2 else "", job=job))
    net = local_net(cfg, shards=2, logging=logging, run_dir=str(run_dir))
    rng = np.random.default_rng(0)
    for k in range(samples):
        net.train_sample(rng.uniform(0, 1, 12), k % 4)
    net.close()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished run with its plots, and a part being written, as a live writer leaves it."""
    run = tmp_path_factory.mktemp("clients") / "2"
    train(run, routing="dfs", rule="fsgd", job=2)
    assert cli.main([str(run), "--plot"]) == 0 and (run / "plots" / "actor_traffic.png").is_file()
    temp = TrafficRecorder(str(run), "forward.1.0", "forward", 1, 0, LoggingConfig())._temp_path(99)
    data = part_files(run)[0].read_bytes()
    temp.write_bytes(data[:len(data) // 2])
    return run


def client_rows(d: Path) -> dict[str, int]:
    return {
        "pandas": len(pd.read_parquet(d)),
        "pyarrow.parquet": pq.read_table(d).num_rows,
        "pyarrow.dataset": ds.dataset(d, partitioning="hive").count_rows(),
        "polars": pl.scan_parquet(d, hive_partitioning=True).select(pl.len()).collect().item(),
        "duckdb": duckdb.sql(f"select count(*) from read_parquet('{d}/**/*.parquet', hive_partitioning=true)")
        .fetchall()[0][0],
    }


def test_every_client_reads_the_same_rows(run_dir):
    n = read_traffic(run_dir).num_rows
    assert n > 0 and client_rows(run_dir / "traffic") == dict.fromkeys(client_rows(run_dir / "traffic"), n)


def test_clients_see_every_column_and_the_run_tags(run_dir):
    d = run_dir / "traffic"
    frame = pd.read_parquet(d)
    assert set(frame.columns) == set(SCHEMA.names)
    assert str(frame["t_wall"].dtype).startswith("datetime64") and str(frame["t_wall"].dt.tz) == "UTC"
    lazy = pl.scan_parquet(d, hive_partitioning=True)
    assert set(lazy.collect_schema().names()) == set(SCHEMA.names)
    groups = lazy.group_by("run_id", "routing", "rule", "job").len().collect().rows()
    assert groups == [(RUN_ID, "dfs", "fsgd", 2, len(frame))]
    actors = duckdb.sql(f"select distinct actor from read_parquet('{d}/**/*.parquet', hive_partitioning=true)")
    assert sorted(r[0] for r in actors.fetchall()) == sorted(set(read_traffic(run_dir)["actor"].to_pylist()))


def test_sweep_jobs_concatenate_and_group(run_dir, tmp_path):
    """Two sweeps' job 0 differ by run id, and a glob over the runs groups them by routing, rule and job."""
    for sweep in ("a", "b"):
        train(tmp_path / sweep / "0", routing="bfs" if sweep == "a" else "dfs", job=0, samples=2)
    glob = f"{tmp_path}/*/*/traffic/**/*.parquet"
    rows = duckdb.sql(f"select run_id, routing, job, count(*) from read_parquet('{glob}', hive_partitioning=true) "
                      f"group by all order by routing").fetchall()
    assert [(r[1], r[2]) for r in rows] == [("bfs", 0), ("dfs", 0)] and rows[0][0] != rows[1][0]
    assert [r[3] for r in rows] == [read_traffic(tmp_path / s / "0").num_rows for s in ("a", "b")]


def test_the_docs_client_example_runs(run_dir):
    assert CLIENT_BLOCKS, "docs/traffic.md has no ```py client example"
    n = read_traffic(run_dir).num_rows
    for block in CLIENT_BLOCKS:
        res = subprocess.run([sys.executable, "-c", block.replace("RUN_DIR", str(run_dir))], capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        counts = re.findall(r"^(\S+) rows: (\d+)$", res.stdout, re.M)
        assert all(int(c) == n for _, c in counts), res.stdout
    assert {name for b in CLIENT_BLOCKS for name in re.findall(r'print\("(\S+) rows:', b)} >= {
        "pandas", "pyarrow.parquet", "pyarrow.dataset", "polars", "duckdb"}


# -- schema v0: the files of the version before (no version key, actor also a file column, float t_wall) --------
def write_v0(table: pa.Table, run_dir: Path, seq: int = 0) -> None:
    """``table``'s rows as schema v0 parts, written as that version wrote them."""
    for actor in sorted(set(table["actor"].to_pylist())):
        rows = table.filter(pc.equal(table["actor"], actor))
        cols = {f.name: rows[f.name] for f in V0_SCHEMA if f.name not in ("run_id", "t_wall")}
        cols["run_id"] = pa.repeat(pa.scalar(run_dir.name), rows.num_rows)
        cols["t_wall"] = pc.divide(rows["t_wall"].cast(pa.int64()).cast(pa.float64()), 1e6)
        part = run_dir / "traffic" / f"actor={actor}" / f"part-{seq:06d}.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({n: cols[n] for n in V0_SCHEMA.names}, schema=V0_SCHEMA), part, store_schema=False,
                       use_dictionary=["run_id", "actor", "module", "direction"], write_page_checksum=True)


def key_rows(table: pa.Table) -> list[tuple]:
    cols = ["actor", "direction", "epoch", "sample", "step", "events_in", "events_out_pos", "t_wall"]
    return sorted(zip(*[table[c].to_pylist() for c in cols]))


def test_a_v0_run_reads_with_read_traffic(run_dir, tmp_path, capsys):
    new = read_traffic(run_dir)
    old = tmp_path / "old"
    write_v0(new, old)
    assert all(check_part(p) is None and VERSION_KEY.encode() not in (pq.read_schema(p).metadata or {})
               for p in part_files(old))
    got = read_traffic(old)
    assert got.schema == SCHEMA and key_rows(got) == key_rows(new)
    assert {c: set(got[c].to_pylist()) for c in ("run_id", "routing", "rule", "job")} == {
        "run_id": {"old"}, "routing": {""}, "rule": {""}, "job": {-1}}
    assert read_traffic(old, columns=["job", "t_wall"]).schema.names == ["job", "t_wall"]
    assert cli.main([str(old)]) == 0 and "(run_id old)" in capsys.readouterr().out


def test_a_resumed_v0_run_reads_both_versions_and_is_warned(run_dir, tmp_path):
    old = tmp_path / "old"
    write_v0(read_traffic(run_dir), old)
    with pytest.warns(RuntimeWarning, match="schema v0"):
        train(old, samples=2)
    got, fresh = read_traffic(old), tmp_path / "fresh"
    train(fresh, samples=2)
    assert got.num_rows == read_traffic(run_dir).num_rows + read_traffic(fresh).num_rows
    versions = [pq.read_schema(p).metadata for p in part_files(old)]
    assert None in versions and {VERSION_KEY.encode(): b"1"} in versions
    assert set(got["rule"].to_pylist()) == {"", "sgd"}  # v0 rows have no tags; the new ones do


def test_a_new_run_is_not_warned(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        train(tmp_path / "run", samples=2)
        train(tmp_path / "run", samples=2)  # appends to its own v1 parts


def test_an_unknown_schema_version_is_one_line(run_dir, tmp_path):
    run = tmp_path / "run"
    part = run / "traffic" / "actor=forward.1.0" / "part-000000.parquet"
    part.parent.mkdir(parents=True)
    table = pq.read_table(part_files(run_dir)[0]).replace_schema_metadata(None)  # as a later version might write
    with pq.ParquetWriter(part, table.schema) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata({VERSION_KEY: "7"})
    with pytest.raises(TrafficError, match=r"schema version '7'.*reads versions 0 to 1") as err:
        read_traffic(run)
    assert str(part) in str(err.value) and "\n" not in str(err.value)


# -- distspike-traffic --upgrade: v0 parts rewritten as v1, so every client reads the directory ----------------
def v0_run(run_dir: Path, old: Path) -> Path:
    """A v0 copy of ``run_dir`` as that version left it: ``plots/`` inside ``traffic/``, a v0 writer's temp."""
    write_v0(read_traffic(run_dir), old)
    (old / "traffic" / "plots").mkdir()
    (old / "traffic" / "plots" / "actor_traffic.png").write_bytes(b"\x89PNG")
    (part_files(old)[0].parent / ".part-000001.parquet.tmp").write_bytes(b"PAR1")
    return old


def test_upgrade_makes_a_v0_run_read_in_every_client(run_dir, tmp_path, capsys):
    old = v0_run(run_dir, tmp_path / "old")
    before = read_traffic(old)
    assert cli.main([str(old)]) == 0
    note = capsys.readouterr().err
    assert "schema v0" in note and f"distspike-traffic --upgrade {old}" in note and note.count("\n") == 1
    with pytest.raises(Exception):
        pd.read_parquet(old / "traffic")  # the v0 clash, which the upgrade removes
    assert cli.main(["--upgrade", str(old)]) == 0
    line = capsys.readouterr().out
    assert f"upgraded {len(part_files(old))} schema v0 traffic part(s) ({before.num_rows} rows)" in line
    assert "moved traffic/plots" in line and (old / "plots" / "actor_traffic.png").is_file()
    n = before.num_rows
    assert client_rows(old / "traffic") == dict.fromkeys(client_rows(old / "traffic"), n)
    after = read_traffic(old)
    assert after.equals(before)  # every value, in the same order
    assert {pq.read_metadata(p).metadata[VERSION_KEY.encode()] for p in part_files(old)} == {b"1"}
    assert cli.main(["--upgrade", str(old)]) == 0 and "nothing to upgrade" in capsys.readouterr().out
    assert cli.main([str(old)]) == 0 and "schema v0" not in capsys.readouterr().err


def test_an_interrupted_upgrade_loses_nothing_and_finishes_when_rerun(run_dir, tmp_path, monkeypatch):
    from distspike.logs import upgrade
    from distspike.logs.traffic import v0_parts
    old = v0_run(run_dir, tmp_path / "old")
    before, real = read_traffic(old), os.replace
    calls = []

    def killed_after_one(src, dst):  # the process dies before the second part's rename
        if calls:
            raise KeyboardInterrupt
        calls.append(dst)
        real(src, dst)

    monkeypatch.setattr(upgrade.os, "replace", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        upgrade.upgrade_run(old)
    monkeypatch.setattr(upgrade.os, "replace", real)
    assert len(v0_parts(old)) == len(part_files(old)) - 1  # one part v1, the rest v0
    assert key_rows(read_traffic(old)) == key_rows(before)  # the mixed directory reads, every row once
    assert not list(old.glob(".traffic-upgrade.*"))  # the interrupted write removed its temp
    left = old / ".traffic-upgrade.forward.1.0.part-000003.parquet.tmp"  # what a killed (SIGKILL) one leaves
    left.write_bytes(b"PAR1")
    done = upgrade.upgrade_run(old)
    assert done.parts == len(part_files(old)) - 1 and done.current == 1 and done.temps_removed == 1
    assert not left.exists()
    assert key_rows(read_traffic(old)) == key_rows(before)
    n = before.num_rows
    assert client_rows(old / "traffic") == dict.fromkeys(client_rows(old / "traffic"), n)


def test_upgrade_of_a_bad_dir_is_one_line_and_changes_nothing(run_dir, tmp_path, capsys):
    assert cli.main(["--upgrade", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    old = v0_run(run_dir, tmp_path / "old")
    foreign = part_files(old)[-1].parent / "part-000009.parquet"
    pq.write_table(pa.table({"x": [1]}), foreign)
    stamps = {p: p.read_bytes() for p in part_files(old)}
    assert cli.main(["--upgrade", str(old)]) == 2
    err = capsys.readouterr().err
    assert str(foreign) in err and "nothing was upgraded" in err and err.count("\n") == 1
    assert {p: p.read_bytes() for p in part_files(old)} == stamps
