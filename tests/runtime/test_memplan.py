"""The memory preflight (``runtime/memplan.py``): estimates, the node checks, and the one-line refusals."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from distspike.config import ModelConfig, NetConfig
from distspike.runtime import memplan
from distspike.runtime.local import plan_specs
from distspike.runtime.memplan import WORKER_BYTES, MemoryPlanError

GIB = 1 << 30


def net(sizes, dtype="float32"):
    return NetConfig(ModelConfig(tuple(sizes), dtype=dtype))


def test_a_shard_holds_its_block_twice_plus_vectors_and_a_worker():
    cfg = net([64, 1000, 10])
    needs = memplan.plan(plan_specs(cfg, 2), "float32", steps=10)
    # forward.1.k: W (64 x 500) float32 + arrival copy, S/phi/S_at (2+10) x 500 x 4, c 64 + e 500 int64
    assert needs["forward.1.0"] == WORKER_BYTES + 2 * 64 * 500 * 4 + 12 * 500 * 4 + 8 * (64 + 500)
    # backward.2.k: W^T (10 x 500) + copy, phi 500 x 4, c 500 + e 10 int64
    assert needs["backward.2.1"] == WORKER_BYTES + 2 * 10 * 500 * 4 + 500 * 4 + 8 * (500 + 10)
    assert set(needs) == {"forward.1.0", "forward.1.1", "forward.2.0", "forward.2.1", "backward.2.0", "backward.2.1"}


def test_sharding_divides_an_actors_weights():
    one = memplan.plan(plan_specs(net([784, 20000, 10]), 1), "float32", 10)["forward.1.0"]
    four = memplan.plan(plan_specs(net([784, 20000, 10]), 4), "float32", 10)["forward.1.0"]
    assert abs((one - WORKER_BYTES) / (four - WORKER_BYTES) - 4) < 1e-2  # all but the n_in input counts


def test_an_actor_larger_than_every_node_is_refused_in_one_line():
    needs = {"forward.1.0": 3 * GIB}
    nodes = {"198.18.0.2": {"memory": 1.0 * GIB, "node_0": 1}, "198.18.0.3": {"memory": 2.0 * GIB, "node_1": 1}}
    with pytest.raises(MemoryPlanError) as err:
        memplan.check_nodes(needs, {"forward.1.0": {"CPU": 1.0}}, nodes)
    assert str(err.value) == ("preflight: actor forward.1.0 needs 3.00 GiB, more than the 2.00 GiB of Ray memory "
                              "of node 198.18.0.3, the largest it can run on")


def test_a_pinned_actor_is_checked_against_its_own_node():
    nodes = {"198.18.0.2": {"memory": 1.0 * GIB, "node_0": 1}, "198.18.0.3": {"memory": 4.0 * GIB, "node_1": 1}}
    with pytest.raises(MemoryPlanError, match=r"actor a needs 2.00 GiB, more than the 1.00 GiB .* node 198.18.0.2"):
        memplan.check_nodes({"a": 2 * GIB}, {"a": {"node_0": 0.001}}, nodes)
    memplan.check_nodes({"a": 2 * GIB}, {"a": {"node_1": 0.001}}, nodes)  # fits on node_1


def test_actors_pinned_to_one_node_are_checked_together():
    nodes = {"n0": {"memory": 1.0 * GIB, "node_0": 1}}
    bundles = {"a": {"node_0": 0.001}, "b": {"node_0": 0.001}}
    with pytest.raises(MemoryPlanError, match=r"actors a, b need 1.20 GiB together, more than the 1.00 GiB"):
        memplan.check_nodes({"a": 0.6 * GIB, "b": 0.6 * GIB}, bundles, nodes)


def test_the_driver_and_the_in_process_run_are_checked_against_this_machine():
    sizes = [64, 50_000_000, 10]
    need = memplan.driver_bytes(sizes, "float64", in_process=True)
    assert need > 64 * 50_000_000 * 8 * 3
    with pytest.raises(MemoryPlanError, match=r"^preflight: runtime=local needs [0-9.]+ GiB, more than the 8.00 GiB"):
        memplan.check_driver(need, 8 * GIB, "runtime=local")
    assert 0 < memplan.available_bytes()


def command() -> list[str]:
    script = Path(sys.executable).with_name("distspike-train")
    return [str(script)] if script.exists() else [sys.executable, "-m", "distspike.train"]


def test_a_layer_too_large_for_this_machine_exits_2_with_one_line(tmp_path):
    """``model.sizes=[64,50000000,10]`` used to allocate until MemoryError or an OOM kill."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    res = subprocess.run(command() + ["runtime=local", "data=digits", "model=digits_small",
                                      "model.sizes=[64,50000000,10]", "model.w_init=1e-4", "training.epochs=1", "data.n_train=10",
                                      "data.n_test=10", "logging=off", f"hydra.run.dir={tmp_path / 'run'}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "preflight: runtime=local" in lines[0] and "GiB this machine has available" in lines[0]
