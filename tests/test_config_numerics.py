"""Numerics that overflow or diverge at once are refused before training, stating the limit."""
from __future__ import annotations

import subprocess

import pytest

from distspike.config import SPIKES_PER_UNIT_MAX, ConfigError, ModelConfig, NetConfig, TrainingConfig
from distspike.kernels.herding import MAX_SPIKES_PER_UNIT

from test_train_cli import run


def net(sizes=(64, 30, 10), w_init=0.01, dtype="float64", **training) -> NetConfig:
    return NetConfig(ModelConfig(sizes, w_init, dtype), TrainingConfig(**training))


def test_the_limit_is_the_herding_kernels():
    assert SPIKES_PER_UNIT_MAX == MAX_SPIKES_PER_UNIT


@pytest.mark.parametrize("w_init,dtype", [(1e308, "float64"), (1e308, "float32"), (1e6, "int"), (1e6, "float64"),
                                          (1e4, "int")])
def test_a_huge_w_init_is_refused_naming_the_limit(w_init, dtype):
    with pytest.raises(ConfigError, match=r"^model.w_init=.* is too large: with fan-in 64 and T=10 steps .* "
                                          r"use model.w_init < 260.4$"):
        net(w_init=w_init, dtype=dtype)


def test_the_limit_depends_on_fan_in_and_steps():
    net((784, 200, 10), w_init=21.2)
    with pytest.raises(ConfigError, match="use model.w_init < 21.26"):
        net((784, 200, 10), w_init=21.3)
    net((784, 200, 10), w_init=40.0, steps=5)


def test_an_integer_scale_beyond_int64_is_refused():
    with pytest.raises(ConfigError, match=r"^training.eta=1e-17 is too small for model.dtype='int': K = T\^2/eta = "
                                          r"1e\+19 \(T=10\) overflows int64 potentials \(K <= 9.22e\+12\); "
                                          r"use training.eta >= 1.08e-11$"):
        net(dtype="int", eta=1e-17)
    net(dtype="float64", eta=1e-17)  # float mode has no K
    net(dtype="int", eta=1e-10)


@pytest.mark.parametrize("override", ["model.w_init=1e308", "training.eta=1e-17"])
def test_the_command_line_refuses_them_in_one_line(tmp_path, override):
    res = run(["runtime=local", "data=digits", "model.sizes=[64,30,10]", "model.dtype=int", override,
               f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"distspike-train: error: {override.split('=')[0]}="), res.stderr
    assert "Traceback" not in res.stderr + res.stdout
