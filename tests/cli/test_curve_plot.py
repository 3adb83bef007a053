"""distspike/cli/curve_plot.py: curve.png beside curve.csv."""
import logging

from distspike.cli import curve_plot

ROWS = [{"epoch": e, "train_error": 10.0 / e, "test_error": 12.0 / e, "samples_per_s": 1.0, "seconds": 1.0}
        for e in (1, 2, 3)]


def test_writes_a_png(tmp_path):
    curve_plot.write(tmp_path, ROWS)
    png = (tmp_path / "curve.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # no temp file left


def test_no_rows_no_figure(tmp_path):
    curve_plot.write(tmp_path, [])
    assert not (tmp_path / "curve.png").exists()


def test_a_figure_that_fails_only_warns(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="distspike.train"):
        curve_plot.write(tmp_path / "missing", ROWS)
    assert "curve.csv" in caplog.text
