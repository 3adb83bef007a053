""".ci/run runs the README's two quick-start commands, extracted from README.md, and nothing else."""
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def extractor():
    """``.ci/readme_commands.py`` as a module (``.ci`` is not a package)."""
    spec = importlib.util.spec_from_file_location("readme_commands", ROOT / ".ci" / "readme_commands.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def code(command: str) -> str:
    """A command line without its trailing comment."""
    return command.split("#", 1)[0].strip()


def test_readme_quick_start_is_install_run_then_test():
    commands = [code(c) for c in extractor().quick_start((ROOT / "README.md").read_text())]
    assert len(commands) == 2
    install_run, tests = commands
    assert install_run.startswith("pip install . && distspike-train ")  # a plain (non-editable) install first
    assert re.fullmatch(r'pip install -e "\.\[test\]" && pytest\b.*', tests)


def test_ci_runs_the_extracted_commands_and_installs_nothing_itself():
    script = (ROOT / ".ci" / "run").read_text()
    body = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert any("readme_commands.py README.md" in line for line in body)
    assert not any("pytest" in line or "distspike-train" in line for line in body)
    assert not any(re.search(r"pip install (?!--quiet --upgrade pip)", line) for line in body)
    assert any("python3 -m venv .venv-ci" in line for line in body)


def test_quick_start_takes_the_first_bash_block():
    text = "intro\n```python\nx = 1\n```\n```bash\na && b   # note\n\nc\n```\n```bash\nd\n```\n"
    assert extractor().quick_start(text) == ["a && b   # note", "c"]


def test_no_bash_block_is_an_error():
    with pytest.raises(ValueError, match="no complete"):
        extractor().quick_start("```bash\nunterminated\n")
