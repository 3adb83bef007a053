"""``distspike-train`` end to end, as a subprocess: run directory, sweeps, errors, resume.

Everything trains on sklearn's bundled digits (no files, no network). The Ray tests
(``-m ray``) run once ``distspike.runtime.ray_backend`` exists.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

TINY = ["data=digits", "model=digits_small", "training.epochs=1", "data.n_train=300", "data.n_test=100"]
#: on Ray every spike batch is an actor call: fewer samples keep the Ray tests fast
RAY_TINY = ["data=digits", "model=digits_small", "training.epochs=1", "data.n_train=40", "data.n_test=20",
            "eval_train=20"]


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package does not exist
        return False


HAS_RAY_BACKEND = has_module("distspike.runtime.ray_backend")
HAS_TRAFFIC = has_module("distspike.logs.traffic")
needs_ray_backend = pytest.mark.skipif(not HAS_RAY_BACKEND, reason="distspike.runtime.ray_backend not written yet")
#: traffic logs need distspike.logs.traffic; until it exists the runs switch them off
LOGGING = "logging=default" if HAS_TRAFFIC else "logging=off"
METRIC_KEYS = {"status", "final_train_error", "final_test_error", "epochs", "samples_seen", "samples_per_s",
               "train_seconds", "wall_time_s", "spikes", "spikes_forward_total", "spikes_error_total",
               "ray_calls", "runtime", "model", "routing", "rule", "data", "seed", "run_dir"}


def command() -> list[str]:
    script = Path(sys.executable).with_name("distspike-train")
    return [str(script)] if script.exists() else [sys.executable, "-m", "distspike.train"]


def run(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``distspike-train args`` in ``cwd`` with a clean error setting and a local data root."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(DISTSPIKE_DATA=str(cwd), RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    return subprocess.run(command() + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def train(tmp_path: Path, name: str, *extra: str, runtime: str = "runtime=local", tiny=TINY) -> Path:
    run_dir = tmp_path / name
    res = run([runtime, *tiny, LOGGING, f"hydra.run.dir={run_dir}", *extra], tmp_path)
    assert res.returncode == 0, res.stderr
    return run_dir


def read_curve(run_dir: Path) -> list[dict]:
    with open(run_dir / "curve.csv", newline="") as f:
        return list(csv.DictReader(f))


def load_npz(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def check_run_dir(run_dir: Path, epochs: int = 1, n_train: int = 300) -> dict:
    """Every file a run writes, and what must be in it; returns metrics.json."""
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "train.log").is_file()
    cfg = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    assert cfg["model"]["sizes"] == [64, 50, 10] and cfg["data"]["name"] == "digits"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics) and metrics["status"] == "completed"
    assert metrics["epochs"] == epochs and metrics["samples_seen"] == epochs * n_train
    assert set(metrics["spikes"]) == {"fwd", "err_in", "err_passed", "bwd_out"}
    assert len(metrics["spikes"]["fwd"]) == 3 and metrics["spikes_forward_total"] > 0
    assert metrics["ray_calls"] > 0 and 0 <= metrics["final_test_error"] <= 100
    rows = read_curve(run_dir)
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    assert set(rows[0]) == {"epoch", "train_error", "test_error", "samples_per_s", "seconds"}
    assert float(rows[-1]["test_error"]) == metrics["final_test_error"]
    assert (run_dir / "curve.png").read_bytes().startswith(b"\x89PNG")
    meta = json.loads((run_dir / "checkpoints" / f"epoch_{epochs:04d}.json").read_text())
    assert meta["epoch"] == epochs and meta["config"]["model"]["sizes"] == [64, 50, 10]
    if meta["format"] == 4:  # the Ray runtimes: a part per actor, written by the actor
        parts = run_dir / "checkpoints" / f"epoch_{epochs:04d}.parts"
        assert meta["state"] == parts.name and {f"{n}.npz" for n in meta["parts_sha256"]} <= \
            {p.name for p in parts.iterdir()}
        state = {f"net.{k}": v for k, v in load_npz(parts / "net.npz").items()}
    else:
        state = load_npz(run_dir / "checkpoints" / f"epoch_{epochs:04d}.npz")
    assert int(state["net.samples_seen"]) == epochs * n_train
    return metrics


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory) -> Path:
    """One tiny local run, shared by the tests that only read it (or copy it)."""
    return train(tmp_path_factory.mktemp("one_epoch"), "run")


def test_run_directory_local(one_epoch):
    metrics = check_run_dir(one_epoch)
    assert metrics["runtime"]["kind"] == "local"


@pytest.mark.skipif(not HAS_TRAFFIC, reason="distspike.logs.traffic not written yet")
def test_traffic_logs_written(one_epoch):
    files = [p for p in (one_epoch / "traffic").rglob("*") if p.is_file()]
    assert files, "no traffic logs under traffic/"


@pytest.mark.ray
@needs_ray_backend
def test_run_directory_ray_local(tmp_path):
    run_dir = train(tmp_path, "run", runtime="runtime=ray_local", tiny=RAY_TINY)
    metrics = check_run_dir(run_dir, n_train=40)
    assert metrics["runtime"]["kind"] == "ray_local"
    temp_dir = metrics["runtime"]["temp_dir"]
    assert temp_dir and (temp_dir.startswith(str(run_dir.resolve())) or temp_dir.startswith("/tmp/dsrun-"))
    if temp_dir.startswith("/tmp/dsrun-"):  # the short fallback is removed after a successful run
        assert not Path(temp_dir).exists() and not (run_dir / "ray_tmp").is_symlink()
    procs = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
    assert temp_dir not in procs, "the job's embedded Ray is still running"


@pytest.mark.ray
@needs_ray_backend
def test_unplaceable_actors_fail_in_one_line(tmp_path, ray_cluster):
    """On the session's two-node cluster (conftest), a resource no node offers: one line naming the bundle."""
    res = run(["runtime=ray_cluster", f"runtime.address={ray_cluster.address}", *RAY_TINY, "logging=off",
               "+placement.forward.resources.node_z=1", "placement.timeout_s=2",
               f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("distspike-train: error:")]
    assert len(errors) == 1 and "bundle" in errors[0] and "node_z" in errors[0], res.stderr


def test_multirun_writes_job_dirs_and_summary(tmp_path):
    sweep = tmp_path / "sweep"
    res = run(["-m", "runtime=local", *TINY, "logging=off", "routing=bfs,dfs", f"hydra.sweep.dir={sweep}"],
              tmp_path)
    assert res.returncode == 0, res.stderr
    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["status"] == "completed"
    with open(sweep / "sweep_summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["overrides"] for r in rows] == ["routing=bfs", "routing=dfs"]
    assert all(r["status"] == "completed" and float(r["final_test_error"]) >= 0 for r in rows)
    assert "sweep summary (2 jobs)" in res.stdout and "routing=dfs" in res.stdout


@pytest.mark.parametrize("override, key", [
    ("model.sizes=[64,-3,10]", "model.sizes[1]"),
    ("routing=xyz", "routing=xyz"),
    ("runtime.shards=1000", "runtime.shards=1000"),
    ("data.root=/nonexistent data=mnist data.download=true", "data.root"),
    ("training.ruel=sgd", "training.ruel"),
    ("+training.ruel=sgd", "training.ruel"),
    ("training.eta=abc", "training.eta"),
    ("data.n_train=5000", "data.n_train"),
])
def test_bad_config_exits_with_one_line_naming_the_key(tmp_path, override, key):
    res = run(["runtime=local", *TINY, "logging=off", f"hydra.run.dir={tmp_path / 'run'}", *override.split()],
              tmp_path)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("distspike-train: error:"), res.stderr
    assert key in lines[0]
    assert not Path("/nonexistent").exists()


def test_bad_job_in_a_sweep_stops_the_sweep_before_it_starts(tmp_path):
    res = run(["-m", "runtime=local", *TINY, "logging=off", "runtime.shards=1,1000",
               f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert res.returncode != 0 and "runtime.shards=1000" in res.stderr
    assert not (tmp_path / "sweep").exists()


def test_failed_jobs_of_a_sweep_are_summarized_and_fail_the_command(tmp_path):
    """Errors only a job can see (here: more samples than the data have) do not stop the sweep."""
    sweep = tmp_path / "sweep"
    res = run(["-m", "runtime=local", *TINY[:3], "logging=off", "data.n_train=5000,6000",
               f"hydra.sweep.dir={sweep}"], tmp_path)
    assert res.returncode == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("distspike-train: error:")]
    assert len(errors) == 2 and "data.n_train=5000" in errors[0] and "Traceback" not in res.stderr
    with open(sweep / "sweep_summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["failed", "failed"] and "6000" in rows[1]["error"]


def test_resume_equals_an_uninterrupted_run(tmp_path, one_epoch):
    straight = train(tmp_path, "straight", "training.epochs=2")
    split = tmp_path / "split"
    shutil.copytree(one_epoch, split, symlinks=True)
    res = run([f"resume={split}", "training.epochs=2"], tmp_path)  # the first run's overrides are reused
    assert res.returncode == 0, res.stderr
    check_run_dir(split, epochs=2)
    a = load_npz(straight / "checkpoints" / "epoch_0002.npz")
    b = load_npz(split / "checkpoints" / "epoch_0002.npz")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    cols = ("epoch", "train_error", "test_error")
    assert [[r[c] for c in cols] for r in read_curve(straight)] == [[r[c] for c in cols] for r in read_curve(split)]
    m = json.loads((split / "metrics.json").read_text())
    assert m["resumed_from_epoch"] == 1 and m["samples_seen"] == 600


def test_resume_refuses_an_incompatible_config(tmp_path, one_epoch):
    split = one_epoch
    before = (split / "curve.csv").read_text()
    res = run([f"resume={split}", "training.epochs=2", "training.rule=fsgd"], tmp_path)
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1 and "training.rule='fsgd'" in lines[0], res.stderr
    assert (split / "curve.csv").read_text() == before
    res = run([f"resume={tmp_path / 'missing'}"], tmp_path)
    assert res.returncode != 0 and "resume=" in res.stderr and "Traceback" not in res.stderr


def test_python_dash_m_entry_point(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    res = subprocess.run([sys.executable, "-m", "distspike.train", "--cfg", "job", "routing=dfs"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "routing: dfs" in res.stdout


@pytest.fixture(autouse=True)
def _no_stray_outputs(tmp_path):
    """Runs write only where told (hydra.run.dir / sweep.dir), never into the repository."""
    yield
    shutil.rmtree(tmp_path / "outputs", ignore_errors=True)
