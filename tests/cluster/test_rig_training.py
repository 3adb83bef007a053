"""Training on the emulated cluster: 3 nodes, 3 shards pinned one per node (``placement=one_per_node``).

The driver runs through the rig's ``run`` (in the head's namespace); the run must end
with weights bit-identical to ``runtime=local`` (integer mode, digits).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TINY = ["data=digits", "model=digits_small", "model.dtype=int", "training.epochs=1", "data.n_train=30",
        "data.n_test=10", "eval_train=10", "logging=off"]


def train_cmd() -> list[str]:
    script = Path(sys.executable).with_name("distspike-train")
    return [str(script)] if script.exists() else [sys.executable, "-m", "distspike.train"]


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return dict(e, PYTHONUNBUFFERED="1")


@pytest.mark.ray
def test_three_shards_on_three_nodes_match_local_bit_for_bit(rig, layers, tmp_path):
    local = tmp_path / "local"
    res = subprocess.run(train_cmd() + ["runtime=local", *TINY, f"hydra.run.dir={local}"], cwd=tmp_path,
                         env=env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    spread = tmp_path / "rig"
    res = subprocess.run([sys.executable, "-m", "distspike.cluster.emulated", "--dir", rig.dir, "run", "--",
                          *train_cmd(), "runtime=ray_cluster", f"runtime.address={rig.address}",
                          "placement=one_per_node", "runtime.shards=3", *TINY, f"hydra.run.dir={spread}"],
                         cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    # each actor drew its own block from the seed and wrote its own part (format 4)
    assert sorted(p.name for p in (spread / "checkpoints" / "epoch_0001.parts").glob("*.npz")) == \
        sorted([f"{k}.{l}.{i}.npz" for k, l in (("forward", 1), ("forward", 2), ("backward", 2)) for i in range(3)]
               + ["net.npz"])
    a, b = layers(local), layers(spread)
    assert a.keys() == b.keys() == {"forward.1", "forward.2", "backward.2"}
    for key in a:
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
    log = (spread / "train.log").read_text()
    nodes = re.search(r"actors per node: (.*)", log)
    assert nodes, log
    for i in range(3):  # shard i of every layer on node i
        assert f"198.18.0.{i + 2}: " in nodes[1]
        assert re.search(rf"198\.18\.0\.{i + 2}: [^;]*forward\.1\.{i}\b[^;]*forward\.2\.{i}\b[^;]*backward\.2\.{i}\b",
                         nodes[1]), nodes[1]
    # runtime.compiled=auto counts the machine's physical cores, not the rig's logical CPUs (6 here)
    from distspike.runtime.cores import probe
    expect = "compiled graphs" if probe()["cores"] >= 9 else "plain calls: 9 actors share"
    assert f"runtime.compiled=auto: {expect}" in log, log


@pytest.mark.ray
def test_an_actor_larger_than_its_node_is_refused_before_any_starts(rig, tmp_path):
    """Shard 0 of a 64-6000000 int layer (its 1 GB block) is pinned to the head, which offers far less."""
    res = subprocess.run([sys.executable, "-m", "distspike.cluster.emulated", "--dir", rig.dir, "run", "--",
                          *train_cmd(), "runtime=ray_cluster", f"runtime.address={rig.address}",
                          "placement=one_per_node", "runtime.shards=3", *TINY, "model.sizes=[64,6000000,10]", "model.w_init=0.001",
                          f"hydra.run.dir={tmp_path / 'big'}"], cwd=tmp_path, env=env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-3000:]
    errors = [ln for ln in res.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and "preflight: actor forward.1.0 needs" in errors[0], res.stderr[-3000:]
    assert "of Ray memory of node 198.18.0.2" in errors[0]


@pytest.mark.ray
def test_a_run_dir_the_nodes_do_not_see_is_refused_with_one_line(rig, tmp_path):
    """The driver's run dir on a tmpfs of its own mount namespace: no node sees it (as on a cluster without
    a shared filesystem). With ``runtime.storage=shared`` the first state the actors would write is refused,
    naming the node; nothing is left."""
    private = tmp_path / "private"
    private.mkdir()
    run = f"{private}/run"
    cmd = " ".join([*train_cmd(), "runtime=ray_cluster", f"runtime.address={rig.address}", "placement=one_per_node",
                    "runtime.shards=3", "runtime.storage=shared", *TINY, f"hydra.run.dir={run}"])
    res = subprocess.run([sys.executable, "-m", "distspike.cluster.emulated", "--dir", rig.dir, "run", "--",
                          "unshare", "-m", "--propagation", "private", "sh", "-c",
                          f"mount -t tmpfs tmpfs {private} && {cmd}; rc=$?; ls -A {run}/checkpoints; exit $rc"],
                         cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-3000:]
    assert re.search(r"error: node \S+ \(198\.18\.0\.\d+\) does not see the state directory .*"
                     r"every node mounts at the same path", res.stderr), res.stderr[-3000:]
    assert "Traceback" not in res.stderr and ".restore-" not in res.stdout, res.stdout  # no state left behind
    assert not any(private.iterdir())  # the nodes' view: nothing was written there


@pytest.mark.ray
def test_a_run_dir_the_nodes_do_not_see_is_collected_by_the_driver_and_resumes(rig, layers, tmp_path):
    """``runtime.storage=collect`` with the run dir on a tmpfs of the driver's own mount namespace: every
    checkpoint and traffic part reaches it through Ray. The run ends bit-identical to ``runtime=local``, its
    traffic reads with ``distspike-traffic``, and ``resume=`` continues it (``auto`` picks collect), again
    bit-identical; nothing is left on the nodes."""
    logged = [a for a in TINY if a != "logging=off"]
    local = tmp_path / "local"
    res = subprocess.run(train_cmd() + ["runtime=local", *logged, f"hydra.run.dir={local}"], cwd=tmp_path,
                         env=env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    local2 = tmp_path / "local2"
    shutil.copytree(local, local2, symlinks=True)
    res = subprocess.run(train_cmd() + [f"resume={local2}", "training.epochs=2"], cwd=tmp_path, env=env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    private, out = tmp_path / "private", tmp_path / "out"
    private.mkdir()
    out.mkdir()
    run = f"{private}/run"
    first = " ".join([*train_cmd(), "runtime=ray_cluster", f"runtime.address={rig.address}", "placement=one_per_node",
                      "runtime.shards=3", "runtime.storage=collect", *logged, f"hydra.run.dir={run}"])
    again = " ".join([*train_cmd(), f"resume={run}", "training.epochs=2", "runtime.storage=auto"])
    res = subprocess.run([sys.executable, "-m", "distspike.cluster.emulated", "--dir", rig.dir, "run", "--",
                          "unshare", "-m", "--propagation", "private", "sh", "-c",
                          f"mount -t tmpfs tmpfs {private} && {first} && cp -a {run} {out}/one && {again} && "
                          f"cp -a {run} {out}/two"], cwd=tmp_path, env=env(), capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert not any(private.iterdir())  # the nodes' view: nothing was written there
    assert not list(Path(rig.dir).glob("n*/distspike-collect/*"))  # the nodes kept nothing
    one, two = out / "one", out / "two"
    assert "runtime.storage=collect: collect (as configured)" in (one / "train.log").read_text()
    assert json.loads((two / "metrics.json").read_text())["runtime"]["storage"] == "collect"
    assert re.search(r"runtime.storage=auto: collect \(node 198\.18\.0\.\d+ does not see the run directory\)",
                     (two / "train.log").read_text())
    for a, b in ((layers(local), layers(one)), (layers(local2, 2), layers(two, 2))):
        assert a.keys() == b.keys() == {"forward.1", "forward.2", "backward.2"}
        for key in a:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
    assert sorted(p.name for p in (two / "checkpoints" / "epoch_0002.parts").glob("*.npz")) == \
        sorted([f"{k}.{l}.{i}.npz" for k, l in (("forward", 1), ("forward", 2), ("backward", 2)) for i in range(3)]
               + ["net.npz"])
    assert sorted(p.name for p in (two / "traffic").iterdir()) == \
        sorted(f"actor={k}.{l}.{i}" for k, l in (("forward", 1), ("forward", 2), ("backward", 2)) for i in range(3))
    from distspike.logs.traffic import read_traffic
    assert read_traffic(two).num_rows > 0
    cli = subprocess.run([sys.executable, "-m", "distspike.logs.cli", str(two)], cwd=tmp_path, env=env(),
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and cli.stdout.strip(), cli.stderr[-2000:]
