"""``RUN_DIR/curve.png``: the learning curve of ``curve.csv`` as a figure, redrawn after every epoch.

The figure is drawn by a short-lived child process (``python -m distspike.cli.curve_plot PNG``,
the rows as JSON on its standard input), so the training process never imports matplotlib
(about 31 MiB it would keep for the rest of the run; issue 21's memory target).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("distspike.train")

CURVE_PNG = "curve.png"


def draw(rows: list[dict], path: Path) -> None:
    """Train and test error (%) against the epoch, written atomically to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(epochs, [r["train_error"] for r in rows], "o-", label="train")
    ax.plot(epochs, [r["test_error"] for r in rows], "s-", label="test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.set_xticks(epochs if len(epochs) <= 12 else ax.get_xticks())
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def write(run_dir: Path, rows: list[dict]) -> None:
    """Redraw ``curve.png`` beside ``curve.csv``; a figure that cannot be drawn only logs a warning."""
    if not rows:
        return
    try:
        out = subprocess.run([sys.executable, "-m", "distspike.cli.curve_plot", str(Path(run_dir) / CURVE_PNG)],
                             input=json.dumps(rows, default=float), capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            lines = out.stderr.strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"the plotting process exited with {out.returncode}")
    except Exception as ex:  # noqa: BLE001 - the figure is a convenience; curve.csv has the numbers
        log.warning("could not draw %s (%s: %s); the numbers are in curve.csv", CURVE_PNG, type(ex).__name__, ex)


if __name__ == "__main__":  # the child of ``write``
    draw(json.load(sys.stdin), Path(sys.argv[1]))
