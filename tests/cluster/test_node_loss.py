"""Node loss and partitions on the emulated cluster (3 nodes, the rig fixture of conftest.py).

A ``runtime=ray_cluster`` run (integer mode, digits) is driven through the rig's ``run``;
once its first mid-epoch checkpoint is on disk, a worker node is killed or cut off
(``distspike/cluster/faults.py``). The run must end with the weights of ``runtime=local``,
or, when no node has room for the lost actors, exit with one line naming the node and the
last checkpoint, and a later ``resume=`` of its run dir must end with those weights.
Every node a test damages is restarted after it, so the tests do not depend on each other.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from distspike.cluster import emulated, faults

pytestmark = pytest.mark.ray
RUN = ["data=digits", "model=digits_small", "model.dtype=int", "training.epochs=1", "data.n_train=120",
       "data.n_test=10", "eval_train=10", "logging=off", "checkpoint.every_samples=5"]
LOST_IP = "198.18.0.4"  # node 2, the one the tests kill or cut off


def train_cmd() -> list[str]:
    script = Path(sys.executable).with_name("distspike-train")
    return [str(script)] if script.exists() else [sys.executable, "-m", "distspike.train"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, layers):
    """Final weights of the undisturbed run (``runtime=local``)."""
    out = tmp_path_factory.mktemp("local")
    res = subprocess.run(train_cmd() + ["runtime=local", *RUN, f"hydra.run.dir={out}"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return layers(out), layers  # the weights, and the reader of a run dir's final checkpoint


@pytest.fixture
def damaged(rig):
    """Nodes a test damages (append their index); restarted after the test, then all 3 waited for."""
    nodes: list[int] = []
    yield nodes
    for i in sorted(set(nodes)):
        faults.restart_node(rig.dir, i)
    if nodes:
        emulated.wait_nodes(emulated.Rig.load(rig.dir), 3)


def start_run(rig, run_dir: Path, *overrides: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "distspike.cluster.emulated", "--dir", rig.dir, "run", "--", *train_cmd(),
           "runtime=ray_cluster", f"runtime.address={rig.address}", *RUN, *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_mid_run(proc: subprocess.Popen, run_dir: Path, timeout_s: float = 300.0) -> None:
    """Until the run's first mid-epoch checkpoint is written (the run is training)."""
    deadline = time.monotonic() + timeout_s
    while not list((run_dir / "checkpoints").glob("epoch_0000_plus_*.json")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no mid-epoch checkpoint in time"
        time.sleep(0.05)


def finish(proc: subprocess.Popen, timeout_s: float = 300.0) -> tuple[int, str]:
    """Exit status and stderr of the run (killed, and the test failed, if it runs past ``timeout_s``)."""
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the run did not end within {timeout_s:g} s") from None
    return proc.returncode, err


def assert_weights(reference, run_dir: Path) -> None:
    want, read = reference
    got = read(run_dir)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].dtype == want[key].dtype and np.array_equal(got[key], want[key]), key


def recovery_lines(run_dir: Path) -> list[str]:
    return [ln for ln in (run_dir / "train.log").read_text().splitlines() if " lost (" in ln or "re-created" in ln]


def node_held_actors(run_dir: Path, ip: str) -> list[str]:
    line = re.search(r"actors per node: (.*)", (run_dir / "train.log").read_text())
    assert line, "no 'actors per node' line in train.log"
    held = re.search(rf"{re.escape(ip)}: ([^;]*)", line[1])
    return held[1].split() if held else []


@pytest.mark.parametrize("calls", ["false", "true"], ids=["plain", "compiled"])
def test_a_killed_node_s_actors_move_to_a_survivor_and_the_run_ends_bit_identical(rig, reference, damaged,
                                                                                   tmp_path, calls):
    run = tmp_path / "run"
    proc = start_run(rig, run, "placement=spread", f"runtime.compiled={calls}")
    wait_mid_run(proc, run)
    damaged.append(2)
    faults.kill_node(rig.dir, 2)
    rc, err = finish(proc)
    assert rc == 0, err[-3000:]
    lost = node_held_actors(run, LOST_IP)
    assert lost, "node 2 held no actor: the kill tested nothing"
    moved = [ln for ln in recovery_lines(run) if "re-created" in ln]
    assert moved and all(f"{n} on 198.18.0." in moved[0] and f"(was {LOST_IP})" in moved[0] for n in lost), moved
    assert f"{lost[0]} on {LOST_IP}" not in moved[0]
    assert_weights(reference, run)


def test_a_killed_pinned_node_is_restarted_and_its_shards_return_to_it(rig, reference, damaged, tmp_path):
    run = tmp_path / "run"
    proc = start_run(rig, run, "placement=one_per_node", "runtime.shards=3", "runtime.compiled=false")
    wait_mid_run(proc, run)
    damaged.append(2)
    faults.kill_node(rig.dir, 2)
    faults.restart_node(rig.dir, 2)
    rc, err = finish(proc)
    assert rc == 0, err[-3000:]
    moved = [ln for ln in recovery_lines(run) if "re-created" in ln]
    assert moved and all(f"{n} on {LOST_IP} (was {LOST_IP})" in moved[0]
                         for n in ("forward.1.2", "forward.2.2", "backward.2.2")), moved
    assert_weights(reference, run)


def test_a_partition_shorter_than_the_health_checks_is_ridden_out(rig, reference, tmp_path):
    run = tmp_path / "run"
    proc = start_run(rig, run, "placement=one_per_node", "runtime.shards=3", "runtime.compiled=false")
    wait_mid_run(proc, run)
    faults.partition(rig.dir, 2, 2.0)
    rc, err = finish(proc)
    assert rc == 0, err[-3000:]
    assert recovery_lines(run) == []
    assert_weights(reference, run)


def test_a_partition_longer_than_the_health_checks_is_a_node_loss(rig, reference, damaged, tmp_path):
    run = tmp_path / "run"
    proc = start_run(rig, run, "placement=spread", "runtime.compiled=false")
    wait_mid_run(proc, run)
    damaged.append(2)
    faults.partition(rig.dir, 2, 25.0)
    rc, err = finish(proc)
    assert rc == 0, err[-3000:]
    assert node_held_actors(run, LOST_IP), "node 2 held no actor: the partition tested nothing"
    assert any(f"(was {LOST_IP})" in ln for ln in recovery_lines(run)), recovery_lines(run)
    assert_weights(reference, run)


def test_no_room_for_the_lost_actors_is_one_line_and_the_run_dir_resumes(rig, reference, damaged, tmp_path):
    run = tmp_path / "run"
    proc = start_run(rig, run, "placement=one_per_node", "runtime.shards=3", "runtime.compiled=false",
                     "placement.timeout_s=10")
    wait_mid_run(proc, run)
    damaged.append(2)
    faults.kill_node(rig.dir, 2)
    rc, err = finish(proc)
    assert rc == 3, err[-3000:]
    errors = [ln for ln in err.splitlines() if "error" in ln]
    assert len(errors) == 1, err[-3000:]
    assert re.search(rf"node {re.escape(LOST_IP)} lost: actor\(s\) forward\.1\.2, forward\.2\.2, backward\.2\.2 "
                     r"could not be re-created within 10 s .*no alive node offers node_2.*"
                     r"last checkpoint: epoch 0 \+ \d+ samples \(.*checkpoints/epoch_0000_plus_\d+\.(npz|parts)\)",
                     errors[0]), errors[0]
    assert "Traceback" not in err
    faults.restart_node(rig.dir, 2)
    emulated.wait_nodes(emulated.Rig.load(rig.dir), 3)
    resumed = tmp_path / "resumed"
    rc, err = finish(start_run(rig, resumed, "placement=one_per_node", "runtime.shards=3",
                               "runtime.compiled=false", f"resume={run}"))
    assert rc == 0, err[-3000:]
    assert_weights(reference, run)  # a resumed run writes into the run dir it resumes
