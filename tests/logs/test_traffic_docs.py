"""docs/traffic.md: every Python example runs, on a small run's logs, with the project's dependencies only."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "traffic.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("traffic_docs") / "run"
    cmd = [sys.executable, "-m", "distspike.train", "runtime=local", "data=digits", "model=digits_small",
           "data.n_train=30", "data.n_test=10", "logging=default", f"hydra.run.dir={out}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    res = subprocess.run(cmd, cwd=out.parent, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return out


def test_no_example_needs_pandas():
    assert BLOCKS and not any(re.search(r"\bpandas\b|to_pandas|duckdb", b) for b in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index, run_dir):
    code = BLOCKS[index].replace("RUN_DIR", str(run_dir))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
