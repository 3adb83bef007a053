"""The repository's docs stand alone for a user: README on one screen, no machine paths, citations resolve."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "results").glob("*.md"))]


def test_readme_fits_one_screen():
    assert len(README.splitlines()) <= 45


def test_readme_says_where_mnist_comes_from_and_what_a_run_leaves():
    for needle in ("~/.cache/distspike/data", "$DISTSPIKE_DATA", "data.root=", "curve.png", "run directory",
                   "resume="):
        assert needle in README, needle


def test_readme_links_the_guides():
    for target in ("docs/usage.md", "docs/api.md", "docs/semantics.md", "results/README.md",
                   "results/benchmarks.md", "launch/README.md"):
        assert f"]({target})" in README, target


def test_the_quick_start_lines_keep_their_measured_times_in_usage():
    """The README gives the two commands; docs/usage.md gives each, as written, beside its measured time."""
    from test_ci import code, extractor
    usage = (ROOT / "docs" / "usage.md").read_text()
    for command in map(code, extractor().quick_start(README)):
        rows = [r for r in usage.splitlines() if r.startswith(f"| `{command}` |")]
        assert len(rows) == 1, command
        assert re.search(r"\| [^|]*\b\d+ (s|min)\b[^|]*\|$", rows[0]), rows[0]


def test_relative_links_resolve():
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name}: {target}"


def test_no_machine_paths_or_files_outside_the_repository():
    for doc in DOCS:
        text = doc.read_text()
        assert "/work/" not in text and "../shared" not in text, doc.name


def test_semantics_citations_name_existing_sections():
    headings = set(re.findall(r"^#+ (.+)$", (ROOT / "docs" / "semantics.md").read_text(), re.M))
    cited = []
    for path in [*(ROOT / "distspike").rglob("*.py"), *(ROOT / "distspike" / "conf").rglob("*.yaml")]:
        cited += [(path.name, m) for m in re.findall(r'semantics\.md\)?,? "([^"]+)"', path.read_text())]
    assert cited
    for name, section in cited:
        assert section in headings, f"{name} cites docs/semantics.md \"{section}\""


def test_semantics_settles_the_open_points_with_equation_numbers():
    text = (ROOT / "docs" / "semantics.md").read_text()
    for needle in ("eq. 12", "eqs. 6-7", "eq. 5", "Table 4", "eta / T^2", "column_read", "hold_error"):
        assert needle in text, needle


def test_every_tour_command_has_a_measured_time():
    tour = (ROOT / "docs" / "usage.md").read_text().split("## A short tour", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in tour.splitlines() if r.startswith("| `")]
    assert len(rows) >= 8
    for row in rows:
        assert re.search(r"\| [^|]*\b\d+ (s|min)\b[^|]*\|$", row), row
