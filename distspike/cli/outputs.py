"""Files of a run directory: resolved config, learning curve, metrics, Ray temp dir.

Layout (``docs/usage.md``)::

    RUN_DIR/.hydra/            Hydra's composed config, overrides, hydra settings
    RUN_DIR/config_resolved.yaml  the resolved config (auto sizes filled in)
    RUN_DIR/curve.csv          one row per epoch
    RUN_DIR/metrics.json       final errors, throughput, spike totals, actor calls
    RUN_DIR/checkpoints/       epoch_NNNN.npz + epoch_NNNN.json
    RUN_DIR/run.json           the run's id and sweep job number (the traffic rows' run_id and job)
    RUN_DIR/traffic/           per-actor spike traffic logs (logging.traffic)
    RUN_DIR/plots/             distspike-traffic --plot
    RUN_DIR/train.log          Hydra's job log
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import asdict, fields
from pathlib import Path

import yaml

from distspike.cli.errors import UserError, write_failed
from distspike.runtime.loop import EpochRecord

CURVE = "curve.csv"
METRICS = "metrics.json"
CONFIG = "config_resolved.yaml"
RUN_FILE = "run.json"
CURVE_FIELDS = [f.name for f in fields(EpochRecord)]

#: AF_UNIX socket paths are limited to 107 bytes on Linux; Ray puts its sockets at
#: <temp_dir>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store[.k]
SOCKET_PATH_MAX = 107
RAY_SOCKET_SUFFIX = len("/session_2025-01-01_00-00-00_000000_4194304/sockets/plasma_store.99")
RAY_TMP_LINK = "ray_tmp"


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path`` and move it into place (no torn files)."""
    _write_atomically(path, lambda f: f.write(text))


def _write_atomically(path: Path, write) -> None:
    """``write(f)`` into a temp text file beside ``path``, then move it into place.

    If that fails (a full disk) the temp file is removed, ``path`` keeps its old content and
    the error is a ``WriteError`` naming ``path``.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as ex:
        tmp.unlink(missing_ok=True)
        raise write_failed(ex, path) from ex


def run_identity(run_dir: Path, job: int) -> tuple[str, int]:
    """``(run_id, job)``: those of ``RUN_DIR/run.json`` (a resumed run keeps them), else a fresh id and ``job``,
    written there. A file that does not hold them is a one-line error (it is data, never code)."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        ident = {"run_id": uuid.uuid4().hex, "job": int(job)}
        write_text_atomically(path, json.dumps(ident) + "\n")
        return ident["run_id"], ident["job"]
    try:
        ident = json.loads(path.read_text())
        run_id, number = ident["run_id"], ident["job"]
    except (OSError, ValueError, TypeError, KeyError) as ex:
        raise UserError(f"{str(path)!r} is not a run identity ({type(ex).__name__}: {ex}); move it away to "
                        f"give the run a new id") from None
    if not (isinstance(run_id, str) and re.fullmatch(r"[0-9a-f]{32}", run_id)
            and isinstance(number, int) and not isinstance(number, bool) and number >= -1):
        raise UserError(f"{str(path)!r}: run_id={run_id!r}, job={number!r} is not a 32-hex-digit id and a job "
                        f"number >= -1; move it away to give the run a new id")
    return run_id, number


def write_config(run_dir: Path, cfg: dict) -> None:
    """``config_resolved.yaml``: the fully resolved config of this job."""
    write_text_atomically(Path(run_dir) / CONFIG, yaml.safe_dump(cfg, sort_keys=False))


def write_curve(run_dir: Path, rows: list[dict]) -> None:
    """(Re)write ``curve.csv`` with ``rows`` (a resumed run truncates to its checkpoint)."""
    def write(f) -> None:
        w = csv.DictWriter(f, CURVE_FIELDS)
        w.writeheader()
        w.writerows(rows)
    _write_atomically(Path(run_dir) / CURVE, write)


def append_curve(run_dir: Path, rec: EpochRecord) -> None:
    """Append one epoch to ``curve.csv`` (creating it with a header)."""
    path = Path(run_dir) / CURVE
    new = not path.exists()
    try:
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, CURVE_FIELDS)
            if new:
                w.writeheader()
            w.writerow(asdict(rec))
    except OSError as ex:
        raise write_failed(ex, path) from ex


def read_curve(run_dir: Path) -> list[dict]:
    """Rows of ``curve.csv`` with numeric values (epoch as int)."""
    with open(Path(run_dir) / CURVE, newline="") as f:
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_metrics(run_dir: Path, metrics: dict) -> None:
    """``metrics.json`` (written at the end of a job, or with ``status: failed`` in a sweep)."""
    write_text_atomically(Path(run_dir) / METRICS, json.dumps(metrics, indent=1) + "\n")


def ray_temp_dir(run_dir: Path) -> tuple[Path, bool]:
    """A fresh temp dir for this job's embedded Ray; True if it is a /tmp fallback.

    ``RUN_DIR/ray_tmp`` when Ray's socket paths under it fit the AF_UNIX limit, else a
    short ``/tmp/dsrun-*`` dir, linked from ``RUN_DIR/ray_tmp`` so its logs can be found.
    Each job gets its own, so jobs of a sweep never share a Ray instance or temp dir.
    """
    run_dir = Path(run_dir).resolve()
    inside = run_dir / RAY_TMP_LINK
    if inside.is_symlink():  # left by an earlier invocation (resume), or planted: replaced, never followed
        inside.unlink()
    if len(str(inside).encode()) + RAY_SOCKET_SUFFIX <= SOCKET_PATH_MAX:
        inside.mkdir(parents=True, exist_ok=True)
        return inside, False
    short = Path(tempfile.mkdtemp(prefix="dsrun-", dir="/tmp"))
    inside.symlink_to(short, target_is_directory=True)
    return short, True


def remove_ray_temp_dir(run_dir: Path, temp_dir: Path) -> None:
    """Delete a /tmp fallback temp dir and its link (after Ray has shut down)."""
    shutil.rmtree(temp_dir, ignore_errors=True)
    link = Path(run_dir) / RAY_TMP_LINK
    if link.is_symlink():
        link.unlink()
