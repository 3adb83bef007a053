"""Shared helpers of the paper reproductions: run directories, CSV files, README tables.

Run directories. Every MNIST experiment is a ``distspike-train`` run in
``<runs_root>/<group>/<experiment>/`` (``metrics.json``, ``curve.csv``,
``checkpoints/``), e.g. ``$RUNS/table3/table3_fsgd``. :func:`ensure_run` starts a
missing run, resumes an interrupted or too short one from its newest checkpoint
(bit-exact, see docs/usage.md) and leaves a completed one alone, so a regenerate
command can be stopped and rerun at any time and runs started by hand are reused.

README tables. ``results/README.md`` marks every table it takes from a CSV with
``<!-- table: FILE columns=COL[=Header],... -->``; :func:`render_table` renders the
rows below the marker, and ``tests/experiments/test_results.py`` checks that the
README holds exactly what the CSV renders to.
"""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

TABLE_MARK = re.compile(r"<!-- table: (\S+) columns=(.+?) -->\n((?:\|.*\n)+)")


# -- run directories ---------------------------------------------------------------

def run_dir(runs_root: Path, group: str, experiment: str) -> Path:
    """``<runs_root>/<group>/<experiment>``, e.g. ``runs/table3/table3_baseline``."""
    return Path(runs_root) / group / experiment


def done_epochs(path: Path) -> int:
    """Epochs of a completed run (``metrics.json`` status ``completed``), else 0."""
    try:
        m = json.loads((path / "metrics.json").read_text())
    except (OSError, ValueError):
        return 0
    return int(m.get("epochs", 0)) if m.get("status") == "completed" else 0


def train_command(path: Path, experiment: str, epochs: int, overrides=()) -> list[str]:
    """The ``distspike-train`` command that starts ``path``, or resumes it from its checkpoints."""
    base = [sys.executable, "-m", "distspike.train"]
    if list((path / "checkpoints").glob("epoch_*.npz")):
        return base + [f"resume={path}", f"training.epochs={epochs}", "progress=false"]
    return base + [f"experiment={experiment}", "runtime=local", "logging.traffic=false", "progress=false",
                   f"training.epochs={epochs}", *overrides, f"hydra.run.dir={path}"]


def ensure_run(path: Path, experiment: str, epochs: int, overrides=(), train: bool = True) -> bool:
    """Make ``path`` a completed run of at least ``epochs`` epochs; whether it is one now.

    A run with at least ``epochs`` completed epochs is left alone (also a longer one).
    ``train=False`` only checks. Do not point two commands at the same unfinished run
    at once: both would resume it.
    """
    if done_epochs(path) >= epochs:
        return True
    if not train:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = train_command(path, experiment, epochs, overrides)
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd).returncode
    if rc != 0:  # one failed run must not stop the others; rerunning the command resumes it
        print(f"run {path} failed (exit {rc}); rerun the command to resume it", flush=True)
    return done_epochs(path) >= epochs


def read_run(path: Path) -> dict:
    """``metrics.json`` of a run plus its learning curve (``curve``: list of float dicts)."""
    m = json.loads((path / "metrics.json").read_text())
    m["curve"] = [{k: float(v) for k, v in r.items()} for r in read_csv(path / "curve.csv")]
    return m


def run_config(path: Path) -> dict:
    """The resolved config a run was started with (``config_resolved.yaml``)."""
    return yaml.safe_load((path / "config_resolved.yaml").read_text())


def run_weights(path: Path) -> list[np.ndarray]:
    """``W_1..W_L`` (float64) of the newest checkpoint of a run."""
    from distspike.cli import checkpoint
    from distspike.runtime.local import local_net
    ck = checkpoint.latest(path)
    if ck is None:
        raise FileNotFoundError(f"no checkpoint in {path}")
    with local_net(net_config(run_config(path))) as net:
        net.load_state_dict(ck.load_state())
        return net.weights()


def net_config(cfg: dict, **training):
    """``NetConfig`` of a resolved run config; ``training`` overrides fields (e.g. ``steps=5``)."""
    from distspike.config import ModelConfig, NetConfig, TrainingConfig
    m = cfg["model"]
    model = ModelConfig(tuple(m["sizes"]), m["w_init"], m["dtype"])
    return NetConfig(model, TrainingConfig(**{**cfg["training"], **training}), cfg["routing"], cfg["seed"])


def load_run_data(cfg: dict):
    """The dataset of a resolved run config (same samples, order and subsets as the run)."""
    from distspike.cli.convert import DataSpec, build
    return build(DataSpec, cfg["data"]).load()


# -- files -------------------------------------------------------------------------

def write_csv(rows: list[dict], path: Path) -> None:
    """Write ``rows`` (same keys) atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def read_csv(path: Path) -> list[dict]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def _cell(v: str) -> str:
    """A CSV value as shown in README tables.

    Integers and text as they are; floats with 2 or 3 decimals (trailing zeros beyond the
    second dropped), small nonzero ones (< 0.01) in ``%g`` form.
    """
    if v == "":
        return "n/a"
    try:
        return str(int(v))
    except ValueError:
        pass
    try:
        x = float(v)
    except ValueError:
        return v
    if x != 0 and abs(x) < 0.01:
        return f"{x:g}"
    s = f"{x:.3f}".rstrip("0")
    return s + "0" * (2 - len(s.split(".")[1]))


def render_table(rows: list[dict], columns: str) -> str:
    """Markdown table of ``rows``; ``columns`` is ``col[=Header],...`` (the README marker's)."""
    cols = [c.split("=", 1) if "=" in c else (c, c) for c in columns.split(",")]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r[c]) for c, _ in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def table_markers(readme: str) -> list[tuple[str, str, str]]:
    """``(file, columns, table text)`` of every marked table of a README."""
    return TABLE_MARK.findall(readme)


def refresh_readme(readme: Path, results: Path) -> int:
    """Re-render every marked table of ``readme`` from its CSV in ``results``; returns how many."""
    text = readme.read_text()
    new = TABLE_MARK.sub(lambda m: m.group(0)[:m.start(3) - m.start(0)] +
                         render_table(read_csv(results / m.group(1)), m.group(2)), text)
    readme.write_text(new)
    return len(TABLE_MARK.findall(text))


def print_table(out: Path, name: str, columns: str) -> None:
    """Print the README marker and table of ``out/name`` (to paste into results/README.md); one line
    instead when no run has completed yet, so the CSV does not exist."""
    if not (out / name).is_file():
        print(f"{out / name}: no completed runs yet, so no table; rerun the command once they finish")
        return
    print(f"<!-- table: {name} columns={columns} -->")
    print(render_table(read_csv(out / name), columns))


def plot_setup():
    """matplotlib with the file-only Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
