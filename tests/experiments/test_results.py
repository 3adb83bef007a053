"""results/README.md agrees with the raw files, and the reproduction commands run (smoke)."""
import csv
import re
from pathlib import Path

import pytest

from distspike.analysis.convergence import loglog_slope
from distspike.experiments import convergence
from distspike.experiments.common import read_csv, render_table, table_markers

RESULTS = Path(__file__).resolve().parents[2] / "results"
ROW = re.compile(r"^\| (fig[14]_\S+\.csv) \| (\S+) \| (-?\d+\.\d+) \|", re.M)  # fitted-slope rows


def _slope(path: Path, column: str) -> float:
    rows = list(csv.DictReader(path.open()))
    pts = [(float(r["T"]), float(r[column])) for r in rows if float(r["T"]) >= 10]
    return loglog_slope([t for t, _ in pts], [v for _, v in pts])


def test_readme_slopes_match_the_raw_files():
    rows = ROW.findall((RESULTS / "README.md").read_text())
    assert len(rows) >= 5
    for name, column, value in rows:
        assert round(_slope(RESULTS / name, column), 2) == pytest.approx(float(value)), (name, column)


def test_readme_tables_are_the_rendered_raw_files():
    """Every table marked ``<!-- table: FILE columns=... -->`` is exactly what FILE renders to."""
    marked = table_markers((RESULTS / "README.md").read_text())
    files = {name for name, _, _ in marked}
    for name in ("table1_newsgroups.csv", "table2_mnist.csv", "table3_ablation.csv", "fig3_early_guess_summary.csv"):
        assert name in files, f"README has no table of {name}"
    for name, columns, text in marked:
        assert text == render_table(read_csv(RESULTS / name), columns), name


def test_every_png_in_results_has_its_csv():
    for png in RESULTS.glob("*.png"):
        assert png.with_suffix(".csv").exists(), png.name


def test_convergence_command_smoke(tmp_path):
    convergence.main(["--out", str(tmp_path), "--quick"])
    for name in ("fig1_reconstruction", "fig4_mlp_convergence"):
        assert (tmp_path / f"{name}.csv").stat().st_size > 0
        assert (tmp_path / f"{name}.png").stat().st_size > 0
