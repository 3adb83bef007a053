"""benchmarks/traffic_clients.py: its client table (docs/traffic.md) for a run of this version, for a schema
v0 dir (before and after ``distspike-traffic --upgrade``); every client reads the same rows where it should.
The tables are printed (``pytest -rP`` shows them)."""
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distspike.config import LoggingConfig, ModelConfig, NetConfig, TrainingConfig
from distspike.logs import cli
from distspike.logs.traffic import V0_SCHEMA, read_traffic
from distspike.runtime.local import local_net

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "traffic_clients.py"
SHOWN: list[str] = []  # the tables, printed at the end of the test


def table(run: Path, capsys) -> dict[str, str]:
    sys_argv, sys.argv = sys.argv, [str(SCRIPT), str(run)]
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    except SystemExit as done:
        assert done.code == 0
    finally:
        sys.argv = sys_argv
    out = capsys.readouterr().out
    SHOWN.append(f"{run.name}:\n{out}")
    return dict(re.findall(r"^\| `(.+)` \| (.+) \|$", out, re.M))


def v0_copy(new: pa.Table, old: Path) -> None:
    """``new``'s rows as schema v0 parts, with v0's ``traffic/plots/``."""
    for actor in sorted(set(new["actor"].to_pylist())):
        rows = new.filter(pc.equal(new["actor"], actor))
        cols = {f.name: rows[f.name] for f in V0_SCHEMA if f.name not in ("run_id", "t_wall")}
        cols["run_id"] = pa.repeat(pa.scalar(old.name), rows.num_rows)
        cols["t_wall"] = pc.divide(rows["t_wall"].cast(pa.int64()).cast(pa.float64()), 1e6)
        part = old / "traffic" / f"actor={actor}" / "part-000000.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({n: cols[n] for n in V0_SCHEMA.names}, schema=V0_SCHEMA), part, store_schema=False)
    (old / "traffic" / "plots").mkdir()
    (old / "traffic" / "plots" / "actor_traffic.png").write_bytes(b"\x89PNG")


def test_the_client_table_for_v1_v0_and_upgraded_runs(tmp_path, capsys):
    fresh = tmp_path / "fresh"
    cfg = NetConfig(ModelConfig((12, 7, 4), 1.2), TrainingConfig(eta=0.25, steps=4), seed=7)
    net = local_net(cfg, shards=2, logging=LoggingConfig(flush_rows=20), run_dir=str(fresh))
    rng = np.random.default_rng(0)
    for k in range(4):
        net.train_sample(rng.uniform(0, 1, 12), k % 4)
    net.close()
    assert cli.main([str(fresh), "--plot"]) == 0
    capsys.readouterr()
    n = read_traffic(fresh).num_rows
    assert set(table(fresh, capsys).values()) == {f"{n} rows"}
    old = tmp_path / "v0"
    v0_copy(read_traffic(fresh), old)
    before = table(old, capsys)
    assert before["distspike.logs.read_traffic(run)"] == f"{n} rows"
    assert before["pd.read_parquet(dir)"].startswith("fails")
    assert cli.main(["--upgrade", str(old)]) == 0
    SHOWN.append(capsys.readouterr().out)
    after = table(old, capsys)
    print("\n".join(SHOWN))
    assert set(after.values()) == {f"{n} rows"}
