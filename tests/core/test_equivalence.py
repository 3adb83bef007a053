"""The batched in-process runtime equals the event-by-event oracle (router + literal modules).

Same seed and config -> the same spikes per layer per step and the same final weights,
bit for bit, for breadth- and depth-first routing, SGD and FSGD, held and un-held errors,
float64/float32/int, every backward reset policy, smooth updates, 1 and 3 shards.
"""
from collections import Counter

import itertools

import numpy as np
import pytest

from distspike.config import ModelConfig, NetConfig, TrainingConfig
from distspike.core.oracle import OracleNet
from distspike.runtime.local import local_net

SIZES = (12, 7, 5, 4)


def _data(n=6, d=SIZES[0], seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, d)), rng.integers(0, SIZES[-1], n)


def _cfg(routing="bfs", rule="sgd", hold=True, dtype="float64", reset="none", smooth=False, steps=5, w_init=1.2,
         eta=0.25, column_read="before_update", regularization=0.0, step_lr="constant"):
    # Large weights and rate: every layer spikes several times per step, backward herders emit
    # repeated units within one batch, and FSGD steps are big enough to change later spikes.
    return NetConfig(ModelConfig(SIZES, w_init, dtype),
                     TrainingConfig(rule=rule, hold_error=hold, backward_reset=reset, smooth=smooth, steps=steps,
                                    eta=eta, column_read=column_read, regularization=regularization,
                                    step_lr=step_lr),
                     routing=routing, seed=7)


def _per_step(trace):
    total = Counter()
    for step, kind, layer, n in trace:
        total[(step, kind, layer)] += n
    return {k: v for k, v in total.items() if v}


def _run_both(cfg, shards=1, n=6):
    X, y = _data(n)
    oracle, fast = OracleNet(cfg), local_net(cfg, shards=shards)
    traces = []
    for k in range(n):
        oracle.trace.clear()
        fast.scheduler.trace = []
        oracle.train_sample(X[k], y[k])
        fast.train_sample(X[k], y[k])
        traces.append((_per_step(oracle.trace), _per_step(fast.scheduler.trace)))
    return oracle, fast, traces


def _assert_same(oracle, fast, traces):
    for k, (a, b) in enumerate(traces):
        assert a == b, f"sample {k}: spike counts per (step, kind, layer) differ"
    for l, (wo, wf) in enumerate(zip(oracle.W, fast.raw_weights()), start=1):
        np.testing.assert_array_equal(wo, wf, err_msg=f"W_{l} differs")


GRID = list(itertools.product(["bfs", "dfs"], ["sgd", "fsgd"], [True, False]))


@pytest.mark.parametrize("routing,rule,hold", GRID)
@pytest.mark.parametrize("shards", [1, 3])
def test_float_runtime_equals_oracle(routing, rule, hold, shards):
    oracle, fast, traces = _run_both(_cfg(routing, rule, hold), shards)
    assert sum(sum(a.values()) for a, _ in traces) > 100, "the test net must actually spike"
    _assert_same(oracle, fast, traces)


@pytest.mark.parametrize("routing,rule,hold", GRID)
def test_integer_runtime_equals_oracle(routing, rule, hold):
    _assert_same(*_run_both(_cfg(routing, rule, hold, dtype="int"), shards=3))


@pytest.mark.parametrize("routing,hold", list(itertools.product(["bfs", "dfs"], [True, False])))
@pytest.mark.parametrize("dtype,shards", [("float64", 1), ("float64", 3), ("int", 3)])
def test_fsgd_column_read_after_update_equals_oracle(routing, hold, dtype, shards):
    """The paper's Alg. 8 order (column read after its own update) is batched exactly too."""
    _assert_same(*_run_both(_cfg(routing, "fsgd", hold, dtype=dtype, column_read="after_update"), shards))


@pytest.mark.parametrize("routing", ["bfs", "dfs"])
def test_fsgd_column_read_order_changes_the_result(routing):
    """The two orders are different computations (so the tests above can tell them apart)."""
    before = _run_both(_cfg(routing, "fsgd", True), shards=1)[1].raw_weights()
    after = _run_both(_cfg(routing, "fsgd", True, column_read="after_update"), shards=1)[1].raw_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("reset", ["none", "random", "zero"])
@pytest.mark.parametrize("dtype", ["float32", "int"])
def test_resets_and_dtypes_equal_oracle(reset, dtype):
    _assert_same(*_run_both(_cfg("bfs", "fsgd", True, dtype=dtype, reset=reset), shards=2))


@pytest.mark.parametrize("routing,rule,hold", GRID)
def test_smooth_updates_equal_oracle(routing, rule, hold):
    _assert_same(*_run_both(_cfg(routing, rule, hold, smooth=True), shards=2))


def test_prediction_equals_oracle():
    cfg = _cfg("bfs", "fsgd")
    oracle, fast, _ = _run_both(cfg, shards=3)
    X, _ = _data(5, seed=3)
    for x in X:
        np.testing.assert_array_equal(oracle.predict_scores(x), fast.predict(x)[0])


def test_backward_replicas_equal_forward_weights():
    for rule in ("sgd", "fsgd"):
        _, fast, _ = _run_both(_cfg("dfs", rule, True), shards=3)
        fw = fast.raw_weights()
        for l, wb in fast.backend.backward_weights().items():
            np.testing.assert_array_equal(wb, fw[l - 1])


@pytest.mark.parametrize("rule", ["sgd", "fsgd"])
@pytest.mark.parametrize("dtype,reset,column_read", [("float64", "none", "before_update"),
                                                     ("float64", "random", "after_update"),
                                                     ("float32", "zero", "before_update"),
                                                     ("float32", "none", "after_update"),
                                                     ("int", "random", "before_update"),
                                                     ("int", "none", "after_update")])
def test_fused_sample_equals_oracle(rule, dtype, reset, column_read):
    """BFS + held errors on one shard runs a whole sample in one compiled call, bit-equal."""
    cfg = _cfg("bfs", rule, True, dtype=dtype, reset=reset, column_read=column_read)
    oracle, fast, traces = _run_both(cfg, shards=1, n=8)
    assert fast.scheduler.fused and fast.backend.calls == 8
    assert sum(v for _, b in traces for (_, kind, _), v in b.items() if kind == "bwd") > 0
    _assert_same(oracle, fast, traces)


@pytest.mark.parametrize("rule", ["sgd", "fsgd"])
def test_fused_spike_totals_equal_unfused(rule):
    """The shells' spike counters come out the same with and without the fused sample."""
    cfg = _cfg("bfs", rule, True)
    X, y = _data(6)
    fused, plain = local_net(cfg), local_net(cfg)
    plain.scheduler.fused = False
    for k in range(6):
        fused.train_sample(X[k], y[k])
        plain.train_sample(X[k], y[k])
    assert fused.stats.as_dict() == plain.stats.as_dict()
    for a, b in zip(fused.raw_weights(), plain.raw_weights()):
        np.testing.assert_array_equal(a, b)
    assert fused.backend.calls == 6 < plain.backend.calls


# -- the Fig. 3 FSGD variants: regularization (Regularized Fractional), step_lr (Fractional Temporal) --
FIG3_OPTIONS = [{"regularization": 0.5}, {"step_lr": "linear_decay"},
                {"regularization": 0.5, "step_lr": "linear_decay"}]


@pytest.mark.parametrize("options", FIG3_OPTIONS)
@pytest.mark.parametrize("routing,shards,dtype", [("bfs", 1, "float64"), ("bfs", 3, "float64"), ("dfs", 2, "float64"),
                                                  ("bfs", 1, "float32")])
def test_fig3_fsgd_options_equal_oracle(options, routing, shards, dtype):
    """Fused (bfs, 1 shard), per-message and sharded runs equal the oracle with either option."""
    cfg = _cfg(routing, "fsgd", True, dtype=dtype, **options)
    oracle, fast, traces = _run_both(cfg, shards=shards, n=8)
    assert fast.scheduler.fused == (routing == "bfs" and shards == 1)
    _assert_same(oracle, fast, traces)
    if shards > 1:
        fw = fast.raw_weights()
        for l, wb in fast.backend.backward_weights().items():
            np.testing.assert_array_equal(wb, fw[l - 1])


@pytest.mark.parametrize("options", FIG3_OPTIONS)
@pytest.mark.parametrize("fused", [True, False])
def test_fig3_fsgd_options_change_the_weights(options, fused):
    """Each option changes training (so the equality tests above compare something)."""
    X, y = _data(6)
    a, b = local_net(_cfg("bfs", "fsgd", True, **options)), local_net(_cfg("bfs", "fsgd", True))
    a.scheduler.fused = b.scheduler.fused = fused
    for k in range(6):
        a.train_sample(X[k], y[k])
        b.train_sample(X[k], y[k])
    assert any(not np.array_equal(wa, wb) for wa, wb in zip(a.raw_weights(), b.raw_weights()))


def test_regularization_penalizes_emitted_spikes_exactly():
    """One sample, one step: the penalty is ``W[:, j] -= n_j * regularization * lr * relu(c)`` per layer,
    on top of FSGD's own updates (checked by running the same sample with and without it, no errors)."""
    cfg = NetConfig(ModelConfig((3, 2), 1.0, "float64"),
                    TrainingConfig(rule="fsgd", steps=1, eta=1.0, regularization=0.25), seed=0)
    W0 = np.array([[1.0, 0.2], [0.9, -0.4], [0.0, 0.1]])
    net = local_net(cfg, weights=[W0])
    x = np.array([1.0, 1.0, 0.0])  # input spikes on units 0 and 1; output unit 0 fires (S = 1.9)
    net.train_sample(x, 0)
    c = np.array([1.0, 1.0, 0.0])
    expect = W0.copy()
    expect[:, 0] -= 2 * 0.25 * c  # unit 0 fires twice (phi 1.0 then 1.9 > 1.5), lr = eta / T^2 = 1
    # the held error of output unit 0: target -1 and two output spikes net to +1 -> W[:, 0] -= relu(c)
    expect[:, 0] -= c
    np.testing.assert_allclose(net.raw_weights()[0], expect)
