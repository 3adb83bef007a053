"""Lost actors: the Ray runtime notices, restores the last snapshot, replays, and ends bit-equal.

Runs on the session's two-node cluster (``ray_cluster`` in tests/conftest.py): a small
integer-mode net trains a tiny random dataset while forward and backward actors are
killed with ``ray.kill`` at random points (between samples and, from another thread,
in the middle of one). Every run must end with the weights of the undisturbed run.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray

from distspike.config import ModelConfig, NetConfig, RuntimeConfig, TrainingConfig
from distspike.core.messages import MessageError, SpikeBatch
from distspike.runtime import make_net
from distspike.runtime.local import local_net
from distspike.runtime.loop import fit
from distspike.runtime.recovery import Guard, RecoveryError

pytestmark = pytest.mark.ray
SIZES = (12, 7, 5, 4)
N_TRAIN = 24


def _cfg(rule="sgd"):
    # spiking-heavy integer net (K = T^2 / eta = 100): every layer fires, errors flow back
    return NetConfig(ModelConfig(SIZES, 1.2, "int"), TrainingConfig(rule=rule, steps=5, eta=0.25, epochs=2), seed=7)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (N_TRAIN + 6, SIZES[0]))
    y = rng.integers(0, SIZES[-1], N_TRAIN + 6)
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]


def _fit(net, data, guard):
    X, y, Xt, yt = data
    return fit(net, X, y, Xt, yt, 2, progress=False, guard=guard)


@pytest.fixture(scope="module")
def expected():
    """Final weights and spike totals of the undisturbed run, per rule (in-process: equal to Ray)."""
    out = {}
    for rule in ("sgd", "fsgd"):
        net = local_net(_cfg(rule))
        res = _fit(net, _data(), Guard(net))
        out[rule] = (net.raw_weights(), net.stats.as_dict(), [(r.train_error, r.test_error) for r in res.curve])
    return out


def _kill_after(net, kills: dict[int, str], log: list) -> None:
    """Kill actor ``kills[k]`` right after global sample ``k`` is submitted (once each)."""
    train_sample = net.train_sample

    def wrapped(x, label):
        train_sample(x, label)
        name = kills.pop(net.samples_seen, None)
        if name is not None:
            log.append((name, time.time()))
            ray.kill(net.backend.actors[name])
    net.train_sample = wrapped


def _kill_later(net, name: str, after: int, delay: float, log: list) -> threading.Thread:
    """Kill actor ``name`` from another thread ``delay`` seconds after sample ``after`` started (mid-sample)."""
    def run():
        while net.samples_seen < after:
            time.sleep(0.001)
        time.sleep(delay)
        log.append((name, time.time()))
        ray.kill(net.backend.actors[name])
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _check(net, expected, rule, guard, res):
    weights, stats, curve = expected[rule]
    for l, (a, b) in enumerate(zip(weights, net.raw_weights()), start=1):
        np.testing.assert_array_equal(a, b, err_msg=f"W_{l}")
    fw = net.raw_weights()
    for l, wb in net.backend.backward_weights().items():
        np.testing.assert_array_equal(wb, fw[l - 1], err_msg=f"backward replica of W_{l}")
    assert net.stats.as_dict() == stats
    assert [(r.train_error, r.test_error) for r in res.curve] == curve


# seed 3 runs seed 1's configuration (fsgd, 2 shards) with other kill points: slow, for breadth on demand
@pytest.mark.parametrize("seed", [1, 2, pytest.param(3, marks=pytest.mark.slow)])
def test_killed_forward_and_backward_actors_are_restored_and_the_run_ends_bit_equal(ray_cluster, expected, seed):
    rng = np.random.default_rng(seed)
    rule = ("sgd", "fsgd")[seed % 2]
    with make_net(_cfg(rule), RuntimeConfig("ray_cluster", 1 + seed % 2, address="auto")) as net:
        names = list(net.backend.actors)
        fwd = [n for n in names if n.startswith("forward.")]
        bwd = [n for n in names if n.startswith("backward.")]
        at = sorted(rng.choice(np.arange(2, 2 * N_TRAIN - 1), 2, replace=False).tolist())
        kills, log = {at[0]: str(rng.choice(fwd)), at[1]: str(rng.choice(bwd))}, []
        _kill_after(net, kills, log)
        guard = Guard(net, every=int(rng.integers(3, 9)), max_restarts=5)
        res = _fit(net, _data(), guard)
        assert not kills, "not every planned kill happened"
        assert [r["actor"] for r in guard.restarts] == [name for name, _ in log]
        for rec in guard.restarts:
            assert rec["revived"] == [rec["actor"]]
        _check(net, expected, rule, guard, res)


def test_an_actor_killed_mid_sample_from_another_thread(ray_cluster, expected):
    with make_net(_cfg("fsgd"), RuntimeConfig("ray_cluster", 1, address="auto")) as net:
        log = []
        guard = Guard(net, every=4, max_restarts=5)
        t = _kill_later(net, "backward.2.0", 5, 0.005, log)
        t0 = time.time()
        res = _fit(net, _data(), guard)
        t.join()
        assert log, "the kill never happened"
        assert guard.restarts and guard.restarts[0]["actor"] == "backward.2.0"
        detect = guard.restarts[0]["detected_at"] - log[0][1]
        print(f"detected {detect:.3f} s after the kill; restored in {guard.restarts[0]['seconds']:.2f} s; "
              f"run {time.time() - t0:.1f} s")
        assert detect < 5.0
        _check(net, expected, "fsgd", guard, res)


def test_with_collected_storage_a_killed_actor_is_restored_from_parts_the_driver_sends(ray_cluster, expected,
                                                                                      tmp_path):
    """``runtime.storage=collect``: the restore points and traffic live in the driver's run dir; the revived
    actor gets its part through Ray. The run ends bit-equal, with its traffic readable, the nodes empty."""
    from distspike.config import LoggingConfig
    from distspike.logs.traffic import read_traffic
    run = tmp_path / "run"
    runtime = RuntimeConfig("ray_cluster", 2, address="auto", storage="collect")
    with make_net(_cfg("sgd"), runtime, logging=LoggingConfig(flush_rows=50), run_dir=str(run)) as net:
        log = []
        _kill_after(net, {9: "forward.2.1", 30: "backward.2.0"}, log)
        guard = Guard(net, every=4, max_restarts=5, run_dir=run)
        res = _fit(net, _data(), guard)
        assert [r["actor"] for r in guard.restarts] == ["forward.2.1", "backward.2.0"]
        _check(net, expected, "sgd", guard, res)
        guard.close()
    assert read_traffic(run).num_rows > 0
    assert not list(run.glob("checkpoints/.restore-*"))
    assert not list(Path(ray_cluster.head_node.get_temp_dir_path()).glob("distspike-collect/*"))


def test_recovery_gives_up_after_max_restarts_naming_the_actor_and_checkpoint(ray_cluster):
    with make_net(_cfg(), RuntimeConfig("ray_cluster", 1, address="auto")) as net:
        _kill_after(net, {3: "forward.2.0"}, [])
        guard = Guard(net, every=2, max_restarts=0)
        with pytest.raises(RecoveryError) as err:
            _fit(net, _data(), guard)
        msg = str(err.value)
        assert "actor forward.2.0" in msg and "checkpoint.max_restarts=0" in msg
        assert "last checkpoint: epoch 0 + 2 samples" in msg


def _send(net, name, method, *args, layer=None, seq=None):
    """One raw message to an actor, with a header of our choosing."""
    b = net.backend
    head = (b.seq[name] if seq is None else seq, b.layer_of[name] if layer is None else layer)
    return getattr(b.actors[name], method).remote(head, (0, 0, 0, True), *args)


def test_messages_out_of_order_or_for_another_layer_are_rejected(ray_cluster):
    with make_net(_cfg(), RuntimeConfig("ray_cluster", 1, address="auto")) as net:
        X, y, _, _ = _data()
        net.train_sample(X[0], y[0])
        before = net.backend.state()
        ok = SpikeBatch.of([0], [1])
        n = net.backend.seq["forward.1.0"]
        cases = [({"seq": n - 1}, "already applied"), ({"seq": n + 1}, "skips messages"),
                 ({"layer": 2}, "field 'layer' is 2")]
        for kw, what in cases:
            with pytest.raises(ray.exceptions.RayTaskError) as err:
                ray.get(_send(net, "forward.1.0", "forward", True, ("value",), ok, **kw))
            assert isinstance(err.value.as_instanceof_cause(), MessageError)
            assert "actor forward.1.0" in str(err.value) and what in str(err.value)
        after = net.backend.state()
        for k in before:
            np.testing.assert_array_equal(before[k], after[k], err_msg=k)
        net.train_sample(X[1], y[1])  # the numbering is intact: training goes on
        ref = local_net(_cfg())
        ref.train_sample(X[0], y[0])
        ref.train_sample(X[1], y[1])
        for a, b in zip(ref.raw_weights(), net.raw_weights()):
            np.testing.assert_array_equal(a, b)
