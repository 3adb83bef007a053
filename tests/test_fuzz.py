"""Fuzz: malformed spike batches, messages and configs each get a clear error and change nothing.

- Shells (in-process, ``validate=True``) and Ray actors receive random malformed
  batches: every one is rejected with a ``MessageError`` naming the actor and the
  field; afterwards the state is unchanged and valid input gives the right result.
- Random bad values for every typed config field, and random bad overrides through
  the Hydra schema (``preflight``), give one ``ConfigError``/``UserError`` naming
  the key, never another exception.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import ray

from distspike.cli.errors import UserError
from distspike.cli.preflight import preflight
from distspike.config import (ActorResources, CheckpointConfig, ConfigError, LoggingConfig, ModelConfig, NetConfig,
                              RunTags,
                              PlacementConfig, RuntimeConfig, TrainingConfig)
from distspike.core.messages import MessageError, SpikeBatch
from distspike.core.modules import LayerSpec, Numerics
from distspike.data import DataError, Dataset
from distspike.runtime import make_net
from distspike.runtime.local import local_net
from distspike.runtime.shell import Shell, make_module

N_IN, N_OUT = 9, 6


def bad_batches(rng, n: int) -> list[tuple[str, SpikeBatch]]:
    """``(field, batch)`` pairs, each malformed in one random way (sizes and values drawn from ``rng``)."""
    k = int(rng.integers(1, 6))
    idx = rng.integers(0, n, k).astype(np.int32)  # (k,)
    sign = rng.choice(np.array([-1, 1], np.int8), k)  # (k,)
    big = int(rng.integers(n, n + 1000))
    at = int(rng.integers(0, k))
    out_of_range = idx.copy()
    out_of_range[at] = big if rng.random() < 0.5 else -int(rng.integers(1, 50))
    bad_sign = sign.copy()
    bad_sign[at] = rng.choice([0, 2, -3, 127])
    return [
        ("idx", SpikeBatch(out_of_range, sign)),
        ("idx", SpikeBatch(idx.astype(rng.choice([np.int64, np.int16, np.float32, np.float64])), sign)),
        ("idx", SpikeBatch(idx.tolist(), sign)),
        ("idx", SpikeBatch(idx.reshape(1, -1), sign.reshape(1, -1))),
        ("sign", SpikeBatch(idx, sign.astype(rng.choice([np.int32, np.float64])))),
        ("sign", SpikeBatch(idx, np.full(k, np.nan))),
        ("sign", SpikeBatch(idx, bad_sign)),
        ("idx", SpikeBatch(np.append(idx, idx[:1]), sign)),  # mismatched lengths: names 'idx' and 'sign'
    ]


def _shells(num, seed=0):
    """A forward shard of layer 2 and the backward shard of layer 2, checking their input."""
    rng = np.random.default_rng(seed)
    W = num.encode(rng.normal(0, 0.8, (N_IN, N_OUT)))  # (N_IN, N_OUT)
    spec = LayerSpec(2, N_IN, N_OUT, 0, N_OUT, True, False, "random", 3)
    bspec = LayerSpec(2, N_IN, N_OUT, 0, N_IN, True, False, "random", 3)
    return (Shell("forward.2.0", make_module("forward", spec, num, W), None, validate=True),
            Shell("backward.2.0", make_module("backward", bspec, num, W), None, validate=True))


def _same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _drive(fwd: Shell, bwd: Shell, rng) -> list:
    """One valid training sample through both shells; the outputs."""
    fwd.set_position(0, 1, 0)
    bwd.set_position(0, 1, 0)
    x = SpikeBatch(rng.integers(0, N_IN, 8).astype(np.int32), rng.choice(np.array([-1, 1], np.int8), 8))
    bwd.count(x)
    out = fwd.forward(x, True)
    err = SpikeBatch(rng.integers(0, N_OUT, 4).astype(np.int32), rng.choice(np.array([-1, 1], np.int8), 4))
    passed = err.select(fwd.gate(err))
    back = bwd.backward(passed, False)
    return [out.idx.tolist(), out.sign.tolist(), passed.idx.tolist(), back.idx.tolist(), back.sign.tolist()]


@pytest.mark.parametrize("dtype", ["int", "float64"])
@pytest.mark.parametrize("seed", range(4))
def test_shells_reject_malformed_batches_and_keep_their_state(dtype, seed):
    cfg = NetConfig(ModelConfig((N_IN, N_IN, N_OUT), 0.5, dtype), TrainingConfig(rule="fsgd", steps=5, eta=0.25))
    num = Numerics.of(cfg)
    rng = np.random.default_rng(seed)
    fwd, bwd = _shells(num)
    twin_f, twin_b = _shells(num)
    _drive(fwd, bwd, np.random.default_rng(99))
    _drive(twin_f, twin_b, np.random.default_rng(99))
    before = {**fwd.state(), **{f"b.{k}": v for k, v in bwd.state().items()}}
    calls = [(fwd, "fwd", N_IN, lambda s, b: s.forward(b, True)), (fwd, "gate", N_OUT, lambda s, b: s.gate(b)),
             (bwd, "count", N_IN, lambda s, b: s.count(b)), (bwd, "bwd", N_OUT, lambda s, b: s.backward(b, False))]
    for _ in range(3):
        for shell, port, n, call in calls:
            for field, batch in bad_batches(rng, n):
                with pytest.raises(MessageError) as err:
                    call(shell, batch)
                msg = str(err.value)
                assert f"actor {shell.name}" in msg and port in msg, msg
                assert f"'{field}'" in msg, msg
    _same_state(before, {**fwd.state(), **{f"b.{k}": v for k, v in bwd.state().items()}})
    probe = np.random.default_rng(seed + 100)
    assert _drive(fwd, bwd, probe) == _drive(twin_f, twin_b, np.random.default_rng(seed + 100))
    _same_state(fwd.state(), twin_f.state())
    _same_state(bwd.state(), twin_b.state())


# -- Ray actors -------------------------------------------------------------------------
def _send(net, name, method, *args, head=None, pos=None):
    b = net.backend
    head = (b.seq[name], b.layer_of[name]) if head is None else head
    return getattr(b.actors[name], method).remote(head, (0, 2, 0, True) if pos is None else pos, *args)


def _bad_messages(rng):
    """``(actor, method, args, head, pos, field)`` of malformed messages to a 2-layer int net's actors."""
    ok = SpikeBatch.of([1], [1])
    out = []
    for field, batch in bad_batches(rng, 7):
        out.append(("forward.1.0", "forward", (True, ("value",), batch), None, None, field))
    for field, batch in bad_batches(rng, 5):
        out.append(("backward.2.0", "backward", (False, 0, ("value",), batch), None, None, field))
    nan = np.zeros(7)
    nan[int(rng.integers(0, 7))] = np.nan
    out += [
        ("forward.1.0", "forward", (True, ("nope",), ok), None, None, "batch"),
        ("forward.1.0", "forward", (True, ("value",), {"idx": [1]}), None, None, "batch"),
        ("forward.1.0", "forward", (True, ("value",), None), None, None, "batch"),
        ("forward.1.0", "forward", (True, ("shards",), "spikes"), None, None, "batch"),
        ("forward.2.0", "gate", (1, ("value",), np.zeros(3, np.int64), SpikeBatch.of([0], [1])), None, None,
         "smooth"),
        ("forward.2.0", "gate", (1, ("value",), nan, SpikeBatch.of([0], [1])), None, None, "smooth"),
        ("forward.1.0", "forward", (True, ("value",), ok), (0,), None, "header"),
        ("forward.1.0", "forward", (True, ("value",), ok), None, (0, -1, 0, True), "position"),
        ("forward.1.0", "forward", (True, ("value",), ok), None, ("0", 2, 0, True), "position"),
        ("forward.1.0", "forward", (True, ("value",), ok), None, (0, 2, 0), "position"),
    ]
    return out


@pytest.mark.ray
def test_ray_actors_reject_malformed_messages_and_keep_their_state(ray_cluster):
    cfg = NetConfig(ModelConfig((7, 7, 5), 1.0, "int"), TrainingConfig(rule="fsgd", steps=5, eta=0.25), seed=3)
    rng = np.random.default_rng(5)
    X, y = rng.uniform(0, 1, (4, 7)), rng.integers(0, 5, 4)
    ref = local_net(cfg)
    with make_net(cfg, RuntimeConfig("ray_cluster", 1, address="auto")) as net:
        for k in range(2):
            net.train_sample(X[k], y[k])
            ref.train_sample(X[k], y[k])
        before = net.backend.state()
        for name, method, args, head, pos, field in _bad_messages(rng):
            with pytest.raises(ray.exceptions.RayTaskError) as err:
                ray.get(_send(net, name, method, *args, head=head, pos=pos))
            assert isinstance(err.value.as_instanceof_cause(), MessageError), err.value
            msg = str(err.value).splitlines()[-1]
            assert f"actor {name}" in msg and f"'{field}'" in msg, msg
        _same_state(before, net.backend.state())
        for k in range(2, 4):  # the numbering and the state are intact: training goes on exactly
            net.train_sample(X[k], y[k])
            ref.train_sample(X[k], y[k])
        for a, b in zip(ref.raw_weights(), net.raw_weights()):
            np.testing.assert_array_equal(a, b)
        assert net.stats.as_dict() == ref.stats.as_dict()


# -- configs ----------------------------------------------------------------------------
BAD = [-1, 0, -0.5, 2.5, "abc", "", None, True, [], {}, [1, -2], math.inf, math.nan, 10 ** 30]

FIELDS = {  # class, defaults, field -> the key its errors name
    ModelConfig: ({}, {"sizes": "model.sizes", "w_init": "model.w_init", "dtype": "model.dtype"}),
    TrainingConfig: ({}, {k: f"training.{k}" for k in ("rule", "smooth", "eta", "steps", "epochs", "hold_error",
                                                        "backward_reset")}),
    LoggingConfig: ({}, {k: f"logging.{k}" for k in ("traffic", "every", "flush_rows", "tracker", "tracking_uri",
                                                        "tags")}),
    RunTags: ({}, {k: f"logging.tags.{k}" for k in ("run_id", "routing", "rule", "job")}),
    CheckpointConfig: ({}, {k: f"checkpoint.{k}" for k in ("keep", "every_samples", "max_restarts")}),
    PlacementConfig: ({}, {"strategy": "placement.strategy", "timeout_s": "placement.timeout_s"}),
    ActorResources: ({}, {"num_cpus": "num_cpus", "memory": "memory", "resources": "resources"}),
    RuntimeConfig: ({}, {"kind": "runtime", "shards": "runtime.shards", "address": "runtime.address",
                         "temp_dir": "runtime.temp_dir"}),
    NetConfig: ({}, {"routing": "routing", "seed": "seed"}),
}


@pytest.mark.parametrize("cls", list(FIELDS), ids=lambda c: c.__name__)
def test_every_bad_config_value_is_a_config_error_naming_the_key(cls):
    defaults, fields = FIELDS[cls]
    for field, key in fields.items():
        for value in BAD:
            try:
                cls(**{**defaults, field: value})
            except ConfigError as err:
                assert key in str(err), f"{cls.__name__}({field}={value!r}): {err}"
            except Exception as err:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{cls.__name__}({field}={value!r}) raised {type(err).__name__}: {err}")


OVERRIDES = {  # key -> bad values (as override strings)
    "training.eta": ["abc", "-1", "0", "nan", "inf"],
    "training.steps": ["0", "-3", "2.5", "x"],
    "training.rule": ["foo", "1"],
    "model.sizes": ["[64,-1,10]", "[64,0,10]", "[64,a,10]", "5", "[]"],
    "model.w_init": ["-1", "nan", "x"],
    "model.dtype": ["int8", "7"],
    "checkpoint.every_samples": ["-1", "x", "1.5"],
    "checkpoint.keep": ["-2", "y"],
    "checkpoint.max_restarts": ["-1", "z"],
    "logging.every": ["0", "-1", "q"],
    "logging.flush_rows": ["0"],
    "runtime.shards": ["0", "-1", "1000"],
    "placement.strategy": ["FOO"],
    "placement.timeout_s": ["0", "-5", "nan"],
    "seed": ["-1", "x"],
    "eval_train": ["0", "-4"],
    "data.n_train": ["-1", "x"],
    "training.rulez": ["sgd"],
    "+checkpoint.every": ["5"],
}


@pytest.mark.parametrize("seed", range(3))
def test_random_bad_overrides_through_the_hydra_schema_name_the_key(seed, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(seed)
    keys = list(OVERRIDES)
    for key in rng.choice(keys, 8, replace=False):
        value = str(rng.choice(OVERRIDES[key]))
        argv = ["runtime=local", "data=digits", "model=digits_small", f"{key}={value}"]
        with pytest.raises(UserError) as err:
            preflight(argv)
        msg = str(err.value)
        assert key.lstrip("+") in msg and "\n" not in msg, f"{argv}: {msg}"


def test_datasets_with_non_finite_values_are_rejected_naming_the_cell():
    x = np.zeros((3, 2))
    x[1, 0] = np.nan
    with pytest.raises(DataError, match=r"x_train\[1, 0\]=nan"):
        Dataset("toy", x, np.zeros(3, int), np.zeros((1, 2)), np.zeros(1, int), 2)
