"""Which Arrow clients read a run's traffic dataset as it is, and how many rows each sees.

Not a test (tests/logs/test_traffic_clients.py checks the current version): prints one
Markdown table row per client for any run directory, e.g. one written by an older
distspike, for docs/traffic.md's client table. Needs pandas, polars and duckdb
(``pip install distspike[test]``).

    python benchmarks/traffic_clients.py RUN_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path


def clients(d: str) -> dict:
    """Each client's row count of the directory ``d`` (a callable per client)."""
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    return {
        "pd.read_parquet(dir)": lambda: len(pd.read_parquet(d)),
        "pq.read_table(dir)": lambda: pq.read_table(d).num_rows,
        'pyarrow.dataset.dataset(dir, partitioning="hive")': lambda: ds.dataset(d, partitioning="hive").count_rows(),
        "polars.scan_parquet(dir, hive_partitioning=True)":
            lambda: pl.scan_parquet(d, hive_partitioning=True).select(pl.len()).collect().item(),
        "DuckDB read_parquet('dir/**/*.parquet', hive_partitioning=true)": lambda: duckdb.sql(
            f"select count(*) from read_parquet('{d}/**/*.parquet', hive_partitioning=true)").fetchall()[0][0],
    }


def outcome(count) -> str:
    """``count()``'s rows, or the first line of why it failed."""
    try:
        return f"{count()} rows"
    except Exception as err:  # noqa: BLE001 - the failure is the result
        return f"fails: {type(err).__name__}: {str(err).strip().splitlines()[0][:120]}"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not (Path(argv[0]) / "traffic").is_dir():
        print("usage: python benchmarks/traffic_clients.py RUN_DIR (a run directory holding traffic/)",
              file=sys.stderr)
        return 2
    run = Path(argv[0])
    from distspike.logs.traffic import read_traffic
    rows = {**clients(str(run / "traffic")), "distspike.logs.read_traffic(run)": lambda: read_traffic(run).num_rows}
    print("| client | result |\n|---|---|")
    for name, count in rows.items():
        print(f"| `{name}` | {outcome(count)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
