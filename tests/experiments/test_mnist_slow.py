"""Slow: the authors' default run on MNIST (skipped in CI; run with ``pytest -m slow``)."""
from pathlib import Path

import pytest

from distspike.config import ModelConfig, NetConfig, TrainingConfig
from distspike.runtime.local import local_net
from distspike.runtime.loop import fit

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.slow
def test_one_epoch_784_200_200_10_matches_authors_engine():
    """semantics.md: the authors' engine reaches 5.44 % test error after one epoch."""
    if not (DATA / "mnist").exists():
        pytest.skip(f"MNIST not found under {DATA}")
    from distspike.data import load_dataset
    ds = load_dataset("mnist", str(DATA))
    net = local_net(NetConfig(ModelConfig((784, 200, 200, 10)), TrainingConfig()))
    res = fit(net, ds.x_train, ds.y_train, ds.x_test, ds.y_test, epochs=1, eval_train=10000)
    err = res.curve[-1].test_error
    print(f"test error {err:.2f} %, {res.samples_per_s:.0f} samples/s")
    assert abs(err - 5.44) < 1.0
