"""A network whose output layer never fires gets one warning naming model.w_init."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.datasets import load_digits

from distspike.config import ModelConfig, NetConfig, TrainingConfig
from distspike.runtime.local import local_net
from distspike.runtime.watch import silent_output_warning, watch_outputs


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def train(sizes, w_init, digits, n, after):
    X, y = digits
    net = local_net(NetConfig(ModelConfig(sizes, w_init, "float64"), TrainingConfig()))
    watch_outputs(net, after=after)
    for k in range(n):
        net.train_sample(X[k], y[k])
    return net


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "no output spike" in r.getMessage()]


def test_the_default_deep_digits_net_is_told_to_raise_w_init(digits, caplog):
    """64-40-30-10 at the default w_init=0.01: no output unit ever fires (issue 19)."""
    with caplog.at_level(logging.WARNING, "distspike.train"):
        net = train((64, 40, 30, 10), 0.01, digits, 60, after=50)
    msgs = warnings(caplog)
    fwd = net.stats.as_dict()["fwd"]
    assert len(msgs) == 1 and fwd[-1] == 0
    assert "first 50 training samples" in msgs[0] and "raise model.w_init (now 0.01)" in msgs[0]
    assert f"layer 1: " in msgs[0] and "layer 3: 0" in msgs[0]


def test_a_net_whose_outputs_fire_is_not_warned(digits, caplog):
    with caplog.at_level(logging.WARNING, "distspike.train"):
        net = train((64, 30, 10), 0.3, digits, 30, after=20)
    assert net.stats.as_dict()["fwd"][-1] > 0 and not warnings(caplog)


def test_the_message_lists_every_layer():
    assert silent_output_warning([5, 3, 1], 0.01, 300) is None
    msg = silent_output_warning([640, 12, 0], 0.01, 300)
    assert msg == ("no output spike in the first 300 training samples (forward spikes per layer: layer 0: 640, "
                   "layer 1: 12, layer 2: 0): the network cannot learn; raise model.w_init (now 0.01)")
