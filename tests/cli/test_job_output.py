"""What ``distspike-train`` prints for a user: the run directory at the start and in the final line."""
import os
import subprocess
import sys


def test_run_directory_first_and_last(tmp_path):
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    cmd = [sys.executable, "-m", "distspike.train", "runtime=local", "data=digits", "model=digits_small",
           "data.n_train=100", "data.n_test=50", "logging=off", f"hydra.run.dir={run_dir}"]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [line for line in (res.stdout + res.stderr).splitlines() if "distspike" in line]
    assert lines[0].endswith(f"run directory: {run_dir}"), lines
    assert lines[-1].endswith(f"run directory: {run_dir}") and "done: test error" in lines[-1], lines
