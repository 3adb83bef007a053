"""The Ray runtime equals the in-process runtime (itself checked against the event oracle)."""
from collections import Counter

import numpy as np
import pytest

from distspike.config import ModelConfig, NetConfig, RuntimeConfig, TrainingConfig
from distspike.runtime import make_net
from distspike.runtime.local import local_net

pytestmark = pytest.mark.ray
SIZES = (12, 7, 5, 4)


def _cfg(routing="bfs", rule="sgd", hold=True, dtype="float64"):
    # the oracle tests' spiking-heavy net: every layer fires, backward batches repeat units
    return NetConfig(ModelConfig(SIZES, 1.2, dtype),
                     TrainingConfig(rule=rule, hold_error=hold, steps=5, eta=0.25), routing=routing, seed=7)


def _data(n=5):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (n, SIZES[0])), rng.integers(0, SIZES[-1], n)


def _train(net, X, y):
    traces = []
    for k in range(len(X)):
        net.scheduler.trace = []
        net.train_sample(X[k], y[k])
        per_step = Counter()
        for step, kind, layer, n in net.scheduler.trace:
            per_step[(step, kind, layer)] += n
        traces.append({k: v for k, v in per_step.items() if v})
    return traces


CASES = [
    ("bfs", "sgd", True, "float64", 1), ("bfs", "fsgd", True, "float64", 3),
    ("dfs", "fsgd", True, "float64", 3), ("dfs", "sgd", False, "float64", 1),
    ("bfs", "fsgd", False, "int", 3), ("dfs", "fsgd", False, "int", 3),
    ("dfs", "sgd", True, "int", 1), ("bfs", "sgd", False, "float64", 3),
]


@pytest.mark.parametrize("routing,rule,hold,dtype,shards", CASES)
def test_ray_equals_local_bit_for_bit(ray_cluster, routing, rule, hold, dtype, shards):
    cfg = _cfg(routing, rule, hold, dtype)
    X, y = _data()
    local = local_net(cfg, shards=shards)
    expected = _train(local, X, y)
    with make_net(cfg, RuntimeConfig("ray_cluster", shards, address="auto")) as net:
        assert _train(net, X, y) == expected
        for l, (a, b) in enumerate(zip(local.raw_weights(), net.raw_weights()), start=1):
            np.testing.assert_array_equal(a, b, err_msg=f"W_{l}")
        assert net.stats.as_dict() == local.stats.as_dict()
        fw = net.raw_weights()
        for l, wb in net.backend.backward_weights().items():
            np.testing.assert_array_equal(wb, fw[l - 1], err_msg=f"backward replica of W_{l}")
        np.testing.assert_array_equal(net.predict(X), local.predict(X))
