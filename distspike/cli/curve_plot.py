"""``RUN_DIR/curve.png``: the learning curve of ``curve.csv`` as a figure, redrawn after every epoch."""
from __future__ import annotations

import logging
import os
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
        draw(rows, Path(run_dir) / CURVE_PNG)
    except Exception as ex:  # noqa: BLE001 - the figure is a convenience; curve.csv has the numbers
        log.warning("could not draw %s (%s: %s); the numbers are in curve.csv", CURVE_PNG, type(ex).__name__, ex)
