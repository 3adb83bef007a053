"""Sweep summary: a Hydra callback that tabulates every job of a multirun at its end.

Registered in ``conf/config.yaml`` under ``hydra.callbacks``. It reads the jobs'
``metrics.json`` and ``.hydra/overrides.yaml`` from the sweep directory (so it works
with any launcher whose jobs share the filesystem), writes ``sweep_summary.csv`` there
and prints the table. Jobs that failed with a config error appear with their status.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback

SUMMARY = "sweep_summary.csv"
COLUMNS = ["job", "overrides", "status", "final_test_error", "final_train_error", "epochs", "samples_seen",
           "samples_per_s", "spikes_forward_total", "spikes_error_total", "ray_calls", "wall_time_s", "error"]

#: set by the last ``on_multirun_end`` in this process: did any job fail?
LAST = {"failed": False, "rows": []}


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job directories (those with ``.hydra/overrides.yaml``), in natural order of their names."""
    dirs = {p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")}
    key = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p.relative_to(sweep_dir)))]
    return sorted(dirs, key=key)


def job_row(sweep_dir: Path, job_dir: Path) -> dict:
    """One summary row: the job's overrides and metrics (status ``missing`` if it wrote none)."""
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    metrics_path = job_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {"status": "missing"}
    row = {k: metrics.get(k, "") for k in COLUMNS}
    row.update(job=str(job_dir.relative_to(sweep_dir)), overrides=overrides)
    return row


def varying(rows: list[dict]) -> None:
    """Show only the overrides that differ between jobs (all of them for a single job)."""
    common = set.intersection(*(set(r["overrides"]) for r in rows)) if len(rows) > 1 else set()
    for r in rows:
        r["overrides"] = " ".join(o for o in r["overrides"] if o not in common)


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of the rows (floats with 4 significant digits)."""
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    cells = [COLUMNS] + [[cell(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


def summarize(sweep_dir: Path) -> list[dict]:
    """Write ``sweep_summary.csv`` for the jobs under ``sweep_dir`` and return its rows."""
    rows = [job_row(sweep_dir, d) for d in job_dirs(sweep_dir)]
    varying(rows)
    with open(sweep_dir / SUMMARY, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return rows


class SweepSummary(Callback):
    """``on_multirun_end``: summarize the sweep directory and print the table."""

    def on_multirun_end(self, config, **kwargs) -> None:
        """Runs in the launching process after the last job of the sweep returned."""
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        rows = summarize(sweep_dir)
        LAST.update(failed=any(r["status"] != "completed" for r in rows), rows=rows)
        print(f"\nsweep summary ({len(rows)} jobs): {sweep_dir / SUMMARY}\n{format_table(rows)}", flush=True)
