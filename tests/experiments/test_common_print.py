"""``print_table`` when a command's runs have not completed (no CSV yet): one line, no traceback."""
from distspike.experiments.common import print_table


def test_print_table_without_csv_says_so_in_one_line(tmp_path, capsys):
    print_table(tmp_path, "table2_mnist_validation.csv", "row=row")
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "table2_mnist_validation.csv" in out[0] and "no completed runs" in out[0]


def test_print_table_with_csv_prints_marker_and_table(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("row\nx\n")
    print_table(tmp_path, "t.csv", "row=row")
    out = capsys.readouterr().out
    assert out.startswith("<!-- table: t.csv columns=row=row -->") and "| x |" in out
