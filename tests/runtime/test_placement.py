"""Placement on a real two-node Ray cluster (session fixture: nodes tagged node_a, node_b)."""
import time

import pytest

from distspike.config import ActorResources, ModelConfig, NetConfig, PlacementConfig, RuntimeConfig, TrainingConfig
from distspike.runtime import make_net
from distspike.runtime.ray_backend import PlacementError

pytestmark = pytest.mark.ray
CFG = NetConfig(ModelConfig((6, 5, 4, 3), 0.5), TrainingConfig(steps=3))


def _node_of(cluster, resource):
    import ray
    return next(n["NodeID"] for n in ray.nodes() if n["Alive"] and resource in n["Resources"])


def _runtime(strategy, fwd=None, bwd=None, timeout=30.0, shards=2):
    return RuntimeConfig("ray_cluster", shards, address="auto", placement=PlacementConfig(
        strategy, ActorResources(1, 0, fwd or {}), ActorResources(1, 0, bwd or {}), timeout))


@pytest.mark.parametrize("strategy", ["PACK", "SPREAD"])
def test_actors_run_on_the_nodes_their_config_asks_for(ray_cluster, strategy):
    rt = _runtime(strategy, fwd={"node_a": 1}, bwd={"node_b": 1}, shards=1)  # 5 actors: 3 forward, 2 backward
    with make_net(CFG, rt) as net:
        nodes = net.backend.node_ids()
        net.train_sample([0.5] * 6, 1)
    a, b = _node_of(ray_cluster, "node_a"), _node_of(ray_cluster, "node_b")
    assert {n for name, n in nodes.items() if name.startswith("forward")} == {a}
    assert {n for name, n in nodes.items() if name.startswith("backward")} == {b}




def test_strict_spread_over_too_few_nodes_fails_fast_naming_the_bundle(ray_cluster):
    t0 = time.monotonic()
    with pytest.raises(PlacementError, match=r"bundle 2 .*STRICT_SPREAD needs 5 nodes, the cluster has 2"):
        make_net(CFG, _runtime("STRICT_SPREAD", timeout=2.0, shards=1))
    assert time.monotonic() - t0 < 30


def test_missing_custom_resource_fails_fast_naming_the_bundle(ray_cluster):
    t0 = time.monotonic()
    with pytest.raises(PlacementError, match=r"bundle 0 \(actor forward\.1\.0.*no node offers \['node_c'\]"):
        make_net(CFG, _runtime("SPREAD", fwd={"node_c": 1}, timeout=2.0))
    assert time.monotonic() - t0 < 30


def test_pack_uses_one_node_and_spread_uses_both(ray_cluster):
    with make_net(CFG, _runtime("PACK", shards=1)) as net:  # 5 actors: enough to spread over 2 nodes
        assert len(set(net.backend.node_ids().values())) == 1
    with make_net(CFG, _runtime("SPREAD", shards=1)) as net:
        assert len(set(net.backend.node_ids().values())) == 2
