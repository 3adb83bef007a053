"""The Ray runtime equals the in-process runtime (itself checked against the event oracle)."""
from collections import Counter

import numpy as np
import pytest
import ray

from distspike.core.messages import MessageError, Segments, SpikeBatch
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


#: every pair of (routing, rule, hold, dtype, shards) values occurs in a CI case; the slow one adds no pair
#: (dfs+fsgd, dfs+3 shards: dfs-fsgd-hold-float64-3; fsgd+int, no hold+int, int+3 shards: bfs-fsgd-no hold-int-3;
#: dfs+int: dfs-sgd-hold-int-1; dfs+no hold: dfs-sgd-no hold-float64-1), and costs the most (15 actors)
CASES = [
    ("bfs", "sgd", True, "float64", 1), ("bfs", "fsgd", True, "float64", 3),
    ("dfs", "fsgd", True, "float64", 3), ("dfs", "sgd", False, "float64", 1),
    ("bfs", "fsgd", False, "int", 3), pytest.param("dfs", "fsgd", False, "int", 3, marks=pytest.mark.slow),
    ("dfs", "sgd", True, "int", 1), ("bfs", "sgd", False, "float64", 3),
]


@pytest.mark.parametrize("routing,rule,hold,dtype,shards", CASES)
def test_ray_equals_local_bit_for_bit(ray_cluster, routing, rule, hold, dtype, shards):
    _check_ray_equals_local(_cfg(routing, rule, hold, dtype), shards)


@pytest.mark.parametrize("routing,shards", [("bfs", 3), ("dfs", 1)])
def test_ray_step_lr_equals_local(ray_cluster, routing, shards):
    """Fractional Temporal (``training.step_lr=linear_decay``): the step of every gate and backward
    message reaches the actors with its position, so Ray equals the oracle-checked local runtime."""
    cfg = NetConfig(ModelConfig(SIZES, 1.2, "float64"),
                    TrainingConfig(rule="fsgd", steps=5, eta=0.25, step_lr="linear_decay"), routing=routing, seed=7)
    _check_ray_equals_local(cfg, shards)


def test_ray_refuses_regularization(ray_cluster):
    """Regularization runs in-process only: on Ray it is refused before any actor starts."""
    from distspike.config import ConfigError
    cfg = NetConfig(ModelConfig(SIZES, 1.2, "float64"), TrainingConfig(rule="fsgd", regularization=0.1), seed=7)
    with pytest.raises(ConfigError, match="training.regularization=0.1 needs runtime=local"):
        make_net(cfg, RuntimeConfig("ray_cluster", 1, address="auto"))


def _check_ray_equals_local(cfg, shards):
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


def test_counts_ride_along_with_backward_messages(ray_cluster):
    """With held errors a replica's counts travel in its backward message: fewer calls, same result."""
    cfg = _cfg("bfs", "fsgd", True)
    X, y = _data()
    local = local_net(cfg)
    _train(local, X, y)
    with make_net(cfg, RuntimeConfig("ray_cluster", 1, address="auto")) as net:
        _train(net, X, y)
        np.testing.assert_array_equal(net.raw_weights()[1], local.raw_weights()[1])
        # before: 5 forward-side + 5 backward-side calls per step (3 layers, 2 replicas counting)
        assert net.backend.calls < 10 * cfg.training.steps * len(X)
        assert not net.backend.deferred  # reading the weights sent every kept count
        busy = net.backend.busy()  # (messages applied, seconds in them, their thread CPU seconds)
        assert all(n > 0 and s > 0 and c >= 0 for n, s, c in busy.values())


def test_malformed_counts_are_rejected_before_anything_is_applied(ray_cluster):
    cfg = _cfg("bfs", "fsgd", True)
    X, y = _data()
    with make_net(cfg, RuntimeConfig("ray_cluster", 1, address="auto")) as net:
        net.train_sample(X[0], y[0])
        before = net.backend.state()
        b = net.backend
        name = "backward.2.0"
        ok_in, ok_err = SpikeBatch.of([0], [1]), SpikeBatch.of([0], [1])
        pos = (0, 0, 0, True)
        bad = [([((0, 5, 0, True), ("value",), 1)], "counts"),  # another sample
               ([(pos, ("value",), 3)], "counts"),  # more parts than given
               ("nope", "counts")]
        for meta, field in bad:
            ref = b.actors[name].counted_backward.remote((b.seq[name], 2), pos, meta, False, 0, ("value",),
                                                         ok_in, ok_err)
            with pytest.raises(ray.exceptions.RayTaskError) as err:
                ray.get(ref)
            assert isinstance(err.value.as_instanceof_cause(), MessageError)
            assert f"field '{field}'" in str(err.value)
        after = b.state()
        for k in before:
            np.testing.assert_array_equal(before[k], after[k], err_msg=k)


def test_a_sample_wide_output_gate_takes_only_segments(ray_cluster):
    """The compiled SGD graph's output gate (``graph_root_gate_wide``) rejects a plain batch as its
    output or target before anything is applied; its message number stays unused."""
    cfg = _cfg("bfs", "sgd", True)
    X, y = _data(2)
    with make_net(cfg, RuntimeConfig("ray_cluster", 1, address="auto")) as net:
        net.train_sample(X[0], y[0])
        b = net.backend
        before = b.state()
        name, layer = "forward.3.0", len(SIZES) - 1
        steps = Segments.of([SpikeBatch.of([0], [1])], steps=[0])
        pos = (0, 1, 0, True)
        for out, target in ((SpikeBatch.of([0], [1]), steps), (steps, SpikeBatch.of([1], [-1]))):
            ref = b.actors[name].graph_root_gate_wide.remote((b.seq[name], layer), pos, 1, ("value",), out, target)
            with pytest.raises(ray.exceptions.RayTaskError) as err:
                ray.get(ref)
            assert isinstance(err.value.as_instanceof_cause(), MessageError)
            assert "must be Segments" in str(err.value)
        after = b.state()
        for k in before:
            np.testing.assert_array_equal(before[k], after[k], err_msg=k)
        net.train_sample(X[1], y[1])  # the next numbered message is still the expected one


def test_two_nets_share_one_ray_instance(ray_cluster):
    """Each net gets its own placement group (names are unique per Ray namespace)."""
    X, y = _data(3)
    expected = local_net(_cfg(rule="fsgd"))
    _train(expected, X, y)
    runtime = RuntimeConfig("ray_cluster", 1, address="auto")
    with make_net(_cfg(rule="fsgd"), runtime) as a, make_net(_cfg(rule="fsgd"), runtime) as b:
        _train(a, X, y)
        _train(b, X, y)
        for w, wa, wb in zip(expected.raw_weights(), a.raw_weights(), b.raw_weights()):
            np.testing.assert_array_equal(wa, w)
            np.testing.assert_array_equal(wb, w)


def _rows_by_actor(run_dir) -> dict:
    from distspike.logs.traffic import read_traffic
    table = read_traffic(run_dir)
    cols = ["actor", "direction", "sample", "step", "events_in", "events_out_pos", "events_out_neg", "bytes_in",
            "bytes_out"]
    out = {}
    for row in zip(*[table[c].to_pylist() for c in cols]):
        out.setdefault(row[0], []).append(row[1:])
    return out


@pytest.mark.parametrize("rule,shards", [("sgd", 1), ("fsgd", 1), ("sgd", 2)])
def test_traffic_rows_per_actor_match_local(ray_cluster, tmp_path, rule, shards):
    """The same schedule logs the same rows, but for messages the in-process scheduler drops as empty.

    On Ray the scheduler cannot see that a pending batch is empty (it fetches only the
    output layer's spikes), so it sends it, and the actor logs the empty message it
    consumed. SGD sends each actor the whole sample in one message per direction: the
    very same rows. FSGD sends step-wise messages: the in-process rows are, in order, a
    subsequence of the Ray rows, and every other Ray row is empty (docs/traffic.md).
    With 2 shards the replicas count the shards' outputs gathered without the merge sort
    (``gather_parts``), and log the same rows.
    """
    from distspike.config import LoggingConfig
    cfg = _cfg("bfs", rule, True)
    X, y = _data()
    logging = LoggingConfig(flush_rows=50)
    local = local_net(cfg, shards=shards, logging=logging, run_dir=str(tmp_path / "local"))
    _train(local, X, y)
    local.close()
    with make_net(cfg, RuntimeConfig("ray_cluster", shards, address="auto"), logging=logging,
                  run_dir=str(tmp_path / "ray")) as net:
        _train(net, X, y)
    want, got = _rows_by_actor(tmp_path / "local"), _rows_by_actor(tmp_path / "ray")
    assert sorted(got) == sorted(want)
    for actor, rows in got.items():
        if rule == "sgd":
            assert rows == want[actor], actor
            continue
        it = iter(rows)
        extra = []
        for row in want[actor]:  # greedy: match each in-process row to the next equal Ray row
            for candidate in it:
                if candidate == row:
                    break
                extra.append(candidate)
            else:
                pytest.fail(f"{actor}: in-process row {row} not among the Ray rows in order")
        extra += list(it)
        assert all(r[3:6] == (0, 0, 0) for r in extra), (actor, extra)
        assert len(rows) > len(want[actor])  # this net does drop empty step-wise messages


# float64-3 is slow: float64 batches are checked at 1 shard, uneven shard splits at int-2 (7 units: 4 + 3),
# and a 3-shard predict(X) batch in every 3-shard case of test_ray_equals_local_bit_for_bit
@pytest.mark.parametrize("dtype,shards", [("float64", 1), ("int", 2),
                                          pytest.param("float64", 3, marks=pytest.mark.slow)])
def test_batched_predictions_equal_one_sample_at_a_time(ray_cluster, dtype, shards):
    """``predict`` sends each layer's shards a batch of samples per message: the scores equal
    the in-process runtime's bit for bit (each sample starts afresh in every shard), a
    partial last batch included, with ``L * shards`` calls per batch; training continues after."""
    cfg = _cfg("bfs", "fsgd", True, dtype)
    X, y = _data(7)
    local = local_net(cfg, shards=shards)
    with make_net(cfg, RuntimeConfig("ray_cluster", shards, address="auto")) as net:
        for k in range(3):
            local.train_sample(X[k], y[k])
            net.train_sample(X[k], y[k])
        want = local.predict(X)
        calls = net.backend.calls
        np.testing.assert_array_equal(net.predict(X, batch=3), want)
        n_shards = sum(len(s) for s in net.backend.fq.values())
        assert net.backend.calls - calls == 3 * n_shards  # batches of 3, 3 and 1 samples
        np.testing.assert_array_equal(net.predict(X), want)  # one batch
        np.testing.assert_array_equal(net.predict(X[2]), want[2:3])
        assert net.predict(X[:0]).shape == (0, SIZES[-1])
        for k in range(3, 7):  # prediction left no trace in the training state
            local.train_sample(X[k], y[k])
            net.train_sample(X[k], y[k])
        for a, b in zip(local.raw_weights(), net.raw_weights()):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(net.predict(X), local.predict(X))


def test_malformed_prediction_batches_are_rejected(ray_cluster):
    cfg = _cfg()
    with make_net(cfg, RuntimeConfig("ray_cluster", 1, address="auto")) as net:
        with pytest.raises(ValueError, match="batch must be a positive integer, got 0"):
            net.predict(_data(2)[0], batch=0)
        actor = net.backend.actors["forward.1.0"]
        head = (net.backend.seq["forward.1.0"], 1)
        with pytest.raises(ray.exceptions.RayTaskError, match="field 'samples' must be lists"):
            ray.get(actor.forward_many.remote(head, (0, 1, 0, False), 1, False, ("value",), SpikeBatch.empty()))
        with pytest.raises(ray.exceptions.RayTaskError, match="field 'batch' cannot be assembled"):
            ray.get(actor.forward_many.remote(head, (0, 1, 0, False), 1, False, ("value",), [np.zeros(3)]))
        with pytest.raises(ray.exceptions.RayTaskError, match="field 'last' must be a bool, got 'yes'"):
            ray.get(actor.forward_many.remote(head, (0, 1, 0, False), 1, "yes", ("value",), [SpikeBatch.empty()]))
        with pytest.raises(ray.exceptions.RayTaskError, match="field 'first' must be a non-negative integer"):
            ray.get(actor.forward_many.remote(head, (0, 1, 0, False), -1, False, ("value",), [SpikeBatch.empty()]))
        X, _ = _data(2)
        np.testing.assert_array_equal(net.predict(X), local_net(cfg).predict(X))  # nothing was applied
