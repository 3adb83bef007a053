"""distspike/runtime/progress.py: progress lines off a terminal, one estimate line for long runs."""
import logging

import numpy as np
import pytest

from distspike.config import ModelConfig, NetConfig, TrainingConfig
from distspike.runtime import progress
from distspike.runtime.local import local_net
from distspike.runtime.loop import fit

SIZES = (12, 7, 5, 4)


def _net():
    cfg = NetConfig(ModelConfig(SIZES, 1.2, "int"), TrainingConfig(steps=5, eta=0.25, epochs=2), seed=7)
    return local_net(cfg)


def _data(n=50):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (n, SIZES[0])), rng.integers(0, SIZES[-1], n)


def _fit(net, caplog, hint="", epochs=2):
    X, y = _data()
    with caplog.at_level(logging.INFO, logger="distspike.train"):
        fit(net, X, y, X[:10], y[:10], epochs, progress=False, hint=hint)
    return [r.getMessage() for r in caplog.records]


def test_a_line_every_tenth_of_an_epoch(caplog):
    lines = [m for m in _fit(_net(), caplog) if "samples/s" in m]
    assert len(lines) == 2 * 9  # at 10 %, 20 %, ..., 90 % of each epoch (the epoch end has its own line)
    assert lines[0].startswith("epoch 1: 10 % (5/50 samples)") and "ETA" in lines[0]
    assert "output error spikes" in lines[0] and lines[-1].startswith("epoch 2: 90 %")


def test_progress_lines_do_not_change_the_result(caplog):
    a, b = _net(), _net()
    _fit(a, caplog)
    X, y = _data()
    fit(b, X, y, X[:10], y[:10], 2, progress=True)
    assert all(np.array_equal(u, v) for u, v in zip(a.weights(), b.weights()))


def test_long_run_logs_one_estimate_with_the_hint(caplog, monkeypatch):
    monkeypatch.setattr(progress, "LONG_RUN_S", 0.0)
    monkeypatch.setattr(progress, "ESTIMATE_AFTER", 20)
    lines = [m for m in _fit(_net(), caplog, hint="try runtime=local") if "this run will take" in m]
    assert len(lines) == 1 and lines[0].endswith("; try runtime=local") and "80 samples to go" in lines[0]


def test_short_run_logs_no_estimate(caplog):
    assert not [m for m in _fit(_net(), caplog, hint="x") if "this run will take" in m]


@pytest.mark.parametrize("seconds, text", [(42, "42 s"), (720, "12 min"), (7500, "2 h 05 min")])
def test_duration(seconds, text):
    assert progress.duration(seconds) == text
