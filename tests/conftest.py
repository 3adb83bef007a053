"""Shared fixtures: one Ray cluster per test session (two nodes, tagged node_a / node_b)."""
import os
import tempfile

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """A two-node local Ray cluster (``ray.cluster_utils.Cluster``) shared by every Ray test.

    Nodes carry the custom resources ``node_a`` and ``node_b`` that placement tests
    pin actors to; logical CPUs are plentiful because the actors mostly wait.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray.cluster_utils import Cluster

    temp_dir = tempfile.mkdtemp(prefix="dst-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    saved_tmpdir = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = temp_dir  # Cluster writes its address file under $TMPDIR/ray, not the shared /tmp/ray
    os.makedirs(os.path.join(temp_dir, "ray"), exist_ok=True)
    try:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 16, "resources": {"node_a": 16}, "include_dashboard": False, "temp_dir": temp_dir})
        cluster.add_node(num_cpus=16, resources={"node_b": 16}, temp_dir=temp_dir)
        cluster.wait_for_nodes()
    finally:
        if saved_tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_tmpdir
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
