"""Checkpoints at a cadence, and resume from any of them (mid-epoch too) bit for bit.

In-process jobs (``cli.job.run_job`` on the in-process runtime) keep these fast; the
driver-kill test runs ``distspike-train`` as a subprocess and SIGKILLs it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from distspike.cli import CONF_DIR, checkpoint, schema
from distspike.cli.job import run_job
from distspike.logs.traffic import read_traffic
from distspike.runtime.recovery import ROLLED_BACK

from test_train_cli import command, load_npz

SMALL = ["runtime=local", "data=digits", "model=digits_small", "data.n_train=90", "data.n_test=30",
         "training.epochs=2", "checkpoint.every_samples=25", "checkpoint.keep=0", "logging=default",
         "logging.flush_rows=64"]


def job_config(*overrides: str) -> dict:
    """The resolved ``distspike-train`` config of ``overrides`` (as the CLI composes it)."""
    schema.register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="test"):
        return schema.to_checked_container(compose(config_name="config", overrides=list(overrides)))


def final_state(run_dir: Path) -> dict:
    ck = checkpoint.latest(run_dir)
    assert ck is not None and ck.index == 0
    return ck.load_state()


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def traffic_rows(run_dir: Path) -> list[tuple]:
    """The traffic rows without their timings, sorted (the part files they sit in may differ)."""
    t = read_traffic(run_dir, columns=["actor", "direction", "epoch", "sample", "step", "events_in",
                                       "events_out_pos", "events_out_neg"]).to_pydict()
    return sorted(zip(*t.values()))


@pytest.fixture(scope="module", params=["int", "float64"])
def straight(request, tmp_path_factory) -> tuple[list[str], Path]:
    """An uninterrupted run with every checkpoint kept, in integer and in float mode."""
    overrides = [*SMALL, f"model.dtype={request.param}"]
    run_dir = tmp_path_factory.mktemp(f"straight-{request.param}")
    run_job(job_config(*overrides), run_dir)
    return overrides, run_dir


def test_checkpoints_at_the_cadence_and_every_epoch_end(straight):
    _, run_dir = straight
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.json"))
    assert names == ["epoch_0000_plus_000000025.json", "epoch_0000_plus_000000050.json",
                     "epoch_0000_plus_000000075.json", "epoch_0001.json",
                     "epoch_0001_plus_000000025.json", "epoch_0001_plus_000000050.json",
                     "epoch_0001_plus_000000075.json", "epoch_0002.json"]
    meta = json.loads((run_dir / "checkpoints" / "epoch_0001_plus_000000050.json").read_text())
    assert meta["epoch"] == 1 and meta["index"] == 50 and meta["samples_seen"] == 140
    assert len(meta["curve"]) == 1 and meta["traffic_parts"] and meta["data_sha256"]
    for npz in (run_dir / "checkpoints").glob("*.npz"):
        load_npz(npz)  # allow_pickle=False
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["checkpoints"]["saved"] == 8 and metrics["checkpoints"]["seconds_per_save"] > 0


@pytest.mark.parametrize("cut", ["epoch_0001_plus_000000050", "epoch_0000_plus_000000025", "epoch_0001"])
def test_resume_from_any_checkpoint_equals_the_uninterrupted_run(straight, tmp_path, cut):
    """Delete everything after checkpoint ``cut`` (as a crash would have), resume: same weights, same logs."""
    overrides, run_dir = straight
    split = tmp_path / "split"
    shutil.copytree(run_dir, split)
    ckpts = sorted((split / "checkpoints").glob("*.json"))
    for js in ckpts[[p.stem for p in ckpts].index(cut) + 1:]:
        js.unlink()
    metrics = run_job(job_config(*overrides, f"resume={split}"), tmp_path)
    assert_same_state(final_state(run_dir), final_state(split))
    assert traffic_rows(split) == traffic_rows(run_dir), "traffic rows lost or duplicated by the resume"
    assert (split / ROLLED_BACK).is_dir(), "the parts written after the checkpoint were not moved aside"
    assert metrics["samples_seen"] == 180

    def curve(d):
        return [ln.split(",")[:3] for ln in (d / "curve.csv").read_text().splitlines()]
    assert curve(split) == curve(run_dir)


def test_resume_refuses_different_data(straight, tmp_path):
    overrides, run_dir = straight
    split = tmp_path / "split"
    shutil.copytree(run_dir, split)
    js = split / "checkpoints" / "epoch_0002.json"
    meta = json.loads(js.read_text())
    js.write_text(json.dumps({**meta, "data_sha256": "0" * 64}))
    with pytest.raises(Exception, match="data differ"):
        run_job(job_config(*overrides, f"resume={split}", "training.epochs=3"), tmp_path)


def test_checkpoints_never_hold_pickles(tmp_path):
    with pytest.raises(TypeError, match="no pickle"):
        checkpoint.save(tmp_path, 1, {"bad": np.array([{"a": 1}], dtype=object)}, {})
    assert not list((tmp_path / "checkpoints").glob("*.npz"))


def test_files_are_written_with_the_users_umask(straight):
    _, run_dir = straight
    for p in [*(run_dir / "checkpoints").iterdir(), *(run_dir / "traffic").rglob("part-*")]:
        assert not p.stat().st_mode & 0o002, f"{p} is world-writable"


# -- SIGKILL the driver ------------------------------------------------------------------
KILL = ["runtime=local", "data=digits", "model=digits_small", "model.dtype=int", "data.n_train=400",
        "data.n_test=30", "eval_train=30", "training.epochs=2", "checkpoint.every_samples=40", "logging=default",
        "logging.flush_rows=200"]


def _env(cwd: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(DISTSPIKE_DATA=str(cwd), PYTHONUNBUFFERED="1")
    return env


def _start(tmp_path: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(command() + [*KILL, f"hydra.run.dir={run_dir}", *extra], cwd=tmp_path,
                            env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc: subprocess.Popen, ckpt_dir: Path, stem: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not (ckpt_dir / f"{stem}.json").exists():
        assert proc.poll() is None, f"the run ended before checkpoint {stem}: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"no checkpoint {stem} within {timeout} s"
        time.sleep(0.005)


def test_sigkill_of_the_driver_then_resume_gives_the_uninterrupted_weights(tmp_path):
    straight_dir, killed = tmp_path / "straight", tmp_path / "killed"
    proc = _start(tmp_path, straight_dir)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    proc = _start(tmp_path, killed)
    _wait_for_checkpoint(proc, killed / "checkpoints", "epoch_0001_plus_000000080")
    time.sleep(float(np.random.default_rng().uniform(0, 0.05)))  # somewhere in the next few samples
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()
    # everything the killed run left reads back (no torn files)
    for npz in (killed / "checkpoints").glob("*.npz"):
        load_npz(npz)
    assert read_traffic(killed).num_rows > 0
    res = subprocess.run(command() + [f"resume={killed}"], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert_same_state(final_state(straight_dir), final_state(killed))
    assert traffic_rows(killed) == traffic_rows(straight_dir)
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == 1 and metrics["resumed_from_index"] >= 80
