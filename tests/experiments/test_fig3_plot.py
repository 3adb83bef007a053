"""distspike/experiments/fig3.py: the figure redraws from its CSVs, with tick labels that do not overlap."""
import shutil
from pathlib import Path

import pytest

from distspike.experiments import fig3
from distspike.experiments.common import plot_setup

RESULTS = Path(__file__).resolve().parents[2] / "results"


def overlapping_labels(ax) -> list[tuple[str, str]]:
    """Pairs of neighbouring visible x tick labels whose boxes overlap once drawn."""
    ax.figure.canvas.draw()
    boxes = [(t.get_text(), t.get_window_extent()) for t in ax.get_xticklabels(which="both")
             if t.get_visible() and t.get_text()]
    boxes.sort(key=lambda b: b[1].x0)
    return [(a[0], b[0]) for a, b in zip(boxes, boxes[1:]) if a[1].x1 > b[1].x0]


@pytest.mark.parametrize("lo, hi", [(0.017, 0.45), (0.05, 1.4), (0.001, 30.0)])
def test_log_ticks_do_not_overlap(lo, hi):
    plt = plot_setup()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([lo, hi], [2, 20])
    ax.set(xscale="log", yscale="log")
    fig3.plain_log_ticks(ax)
    assert overlapping_labels(ax) == []
    assert len([t for t in ax.get_xticklabels() if t.get_text()]) >= 2
    plt.close(fig)


def test_replot_from_the_committed_csvs(tmp_path):
    for name in ("fig3_early_guess.csv", "fig3_relu_costs.csv"):
        shutil.copy(RESULTS / name, tmp_path / name)
    path = fig3.replot(tmp_path)
    assert path.read_bytes().startswith(b"\x89PNG")
