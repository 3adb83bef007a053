"""Checkpoints resume across runtimes: ``runtime=local``'s single ``.npz`` on Ray, Ray's parts in-process.

Each continues to the weights of the uninterrupted in-process run, bit for bit (integer
mode, digits, 2 shards). Ray runs on the session's two-node cluster (tests/conftest.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from distspike.cli import CONF_DIR, checkpoint, schema
from distspike.cli.job import run_job

BASE = ["data=digits", "model=digits_small", "model.dtype=int", "data.n_train=40", "data.n_test=10",
        "eval_train=10", "logging=off", "runtime.shards=2", "checkpoint.keep=0"]
LOCAL, RAY = ["runtime=local"], ["runtime=ray_cluster", "runtime.address=auto"]


def job_config(*overrides: str) -> dict:
    schema.register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="test"):
        return schema.to_checked_container(compose(config_name="config", overrides=list(overrides)))


def last_state(run_dir: Path, epoch: int) -> dict:
    ck = checkpoint.latest(run_dir)
    assert ck is not None and (ck.epoch, ck.index) == (epoch, 0)
    return ck.load_state()


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


@pytest.mark.ray
@pytest.mark.parametrize("first, then", [(LOCAL, RAY), (RAY, LOCAL)], ids=["local-to-ray", "ray-to-local"])
def test_a_checkpoint_of_one_runtime_resumes_on_the_other(ray_cluster, tmp_path, first, then):
    straight, run, unused = tmp_path / "straight", tmp_path / "run", tmp_path / "unused"
    for d in (straight, run, unused):  # (Hydra makes the run dir of a command-line run)
        d.mkdir()
    run_job(job_config(*LOCAL, *BASE, "training.epochs=2"), straight)
    run_job(job_config(*first, *BASE, "training.epochs=1"), run)
    layout = "epoch_0001.parts" if first is RAY else "epoch_0001.npz"
    assert (run / "checkpoints" / layout).exists()
    run_job(job_config(*then, *BASE, "training.epochs=2", f"resume={run}"), unused)
    assert (run / "checkpoints" / ("epoch_0002.parts" if then is RAY else "epoch_0002.npz")).exists()
    assert_same(last_state(straight, 2), last_state(run, 2))
