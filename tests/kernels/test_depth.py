"""Un-held depth-first in one compiled call per sample (``kernels/depth.py``) equals the per-message
recursion and the event-by-event oracle, bit for bit.

Three runs of the same config and samples: the oracle (``EventRouter`` + literal modules), the
scheduler's per-message path (every batch split into single events; ``Scheduler.fused_depth``
off) and the fused kernel, on one shard per layer. Same spikes per (step, kind, layer), same
spike totals, same final weights (forward copies and backward replicas) and same backward
herder state, for SGD and FSGD, float64/float32/int, both column-read orders, every backward
reset policy and the per-step FSGD rate.
"""
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from distspike.config import ModelConfig, NetConfig, TrainingConfig
from distspike.core.oracle import OracleNet
from distspike.runtime.local import local_net

SIZES = (12, 7, 5, 4)


def _cfg(rule, dtype, reset="none", column_read="before_update", step_lr="constant", sizes=SIZES):
    # Large weights and rate (as tests/core/test_equivalence.py): every layer spikes several times per
    # step, errors reach every gate, and FSGD steps change later spikes.
    return NetConfig(ModelConfig(sizes, 1.2, dtype),
                     TrainingConfig(rule=rule, hold_error=False, backward_reset=reset, steps=5, eta=0.25,
                                    column_read=column_read, step_lr=step_lr),
                     routing="dfs", seed=7)


def _per_step(trace):
    total = Counter()
    for step, kind, layer, n in trace:
        total[(step, kind, layer)] += n
    return {k: v for k, v in total.items() if v}


def _run_three(cfg, n=6):
    d = cfg.model.sizes[0]
    rng = np.random.default_rng(0)
    X, y = rng.uniform(0, 1, (n, d)), rng.integers(0, cfg.model.sizes[-1], n)
    oracle, plain, fused = OracleNet(cfg), local_net(cfg), local_net(cfg)
    plain.scheduler.fused_depth = False
    assert fused.scheduler.fused_depth
    traces = []
    for k in range(n):
        oracle.trace.clear()
        plain.scheduler.trace, fused.scheduler.trace = [], []
        for net in (oracle, plain, fused):
            net.train_sample(X[k], y[k])
        traces.append(tuple(_per_step(t) for t in (oracle.trace, plain.scheduler.trace, fused.scheduler.trace)))
    assert fused.backend.calls == n < plain.backend.calls
    return oracle, plain, fused, traces


def _assert_three_same(oracle, plain, fused, traces):
    for k, (a, b, c) in enumerate(traces):
        assert a == b, f"sample {k}: per-message spike counts per (step, kind, layer) differ from the oracle's"
        assert a == c, f"sample {k}: fused spike counts per (step, kind, layer) differ from the oracle's"
    assert plain.stats.as_dict() == fused.stats.as_dict()
    for l, (wo, wp, wf) in enumerate(zip(oracle.W, plain.raw_weights(), fused.raw_weights()), start=1):
        np.testing.assert_array_equal(wo, wp, err_msg=f"W_{l}: per-message differs from the oracle")
        np.testing.assert_array_equal(wo, wf, err_msg=f"W_{l}: fused differs from the oracle")
    for l, wb in fused.backend.backward_weights().items():
        np.testing.assert_array_equal(wb, plain.backend.backward_weights()[l])
        np.testing.assert_array_equal(wb, oracle.W[l - 1], err_msg=f"backward replica of W_{l} differs")
        phi_o = oracle.router.modules[f"bwdherder{l}"].inner.phi
        np.testing.assert_array_equal(fused.backend.bq[l][0].module.phi, phi_o)
        np.testing.assert_array_equal(plain.backend.bq[l][0].module.phi, phi_o)


@pytest.mark.parametrize("rule", ["sgd", "fsgd"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "int"])
def test_fused_depth_first_unheld_equals_oracle(rule, dtype):
    oracle, plain, fused, traces = _run_three(_cfg(rule, dtype))
    kinds = Counter(kind for _, _, c in traces for (_, kind, _), v in c.items())
    assert kinds["bwd"] > 0 and kinds["gate"] > 0, "errors must travel back through the test net"
    _assert_three_same(oracle, plain, fused, traces)


@pytest.mark.parametrize("rule,dtype,reset,column_read", [("sgd", "float64", "random", "before_update"),
                                                          ("sgd", "int", "zero", "before_update"),
                                                          ("fsgd", "float64", "zero", "after_update"),
                                                          ("fsgd", "int", "random", "after_update"),
                                                          ("fsgd", "float32", "none", "after_update")])
def test_fused_depth_first_unheld_resets_and_column_reads(rule, dtype, reset, column_read):
    _assert_three_same(*_run_three(_cfg(rule, dtype, reset, column_read)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_depth_first_unheld_step_lr(dtype):
    """FSGD's per-step rate (``training.step_lr``, float only): errors of step ``t`` update with ``lr * g_t``."""
    _assert_three_same(*_run_three(_cfg("fsgd", dtype, step_lr="linear_decay")))


def test_fused_depth_first_unheld_one_layer():
    """No hidden layer: output spikes go straight to gate 1, nothing flows further back."""
    _assert_three_same(*_run_three(_cfg("fsgd", "float64", sizes=(12, 4))))


def test_fused_depth_first_only_where_it_applies():
    """Sharded, held, breadth-first or smooth runs keep their own paths."""
    cfg = _cfg("sgd", "float64")
    assert not local_net(cfg, shards=3).scheduler.fused_depth
    assert not local_net(replace(cfg, training=replace(cfg.training, hold_error=True))).scheduler.fused_depth
    assert not local_net(replace(cfg, routing="bfs")).scheduler.fused_depth
    assert not local_net(replace(cfg, training=replace(cfg.training, smooth=True))).scheduler.fused_depth
