"""Weight transfer between the spiking net and its ReLU twin (paper Table 2, rows 4-5)."""
import numpy as np

from distspike.config import ModelConfig, NetConfig, TrainingConfig
from distspike.relu import ReluMLP
from distspike.runtime.local import local_net


def _digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    return d.data[:1347] / 16.0, d.target[:1347], d.data[1347:] / 16.0, d.target[1347:]


def test_spiking_net_with_relu_weights_classifies_like_the_relu_net():
    Xtr, ytr, Xte, yte = _digits()
    relu = ReluMLP((64, 40, 10), w_init=0.05, eta=0.1, seed=3)
    for _ in range(3):
        relu.train_epoch(Xtr, ytr)
    cfg = NetConfig(ModelConfig((64, 40, 10)), TrainingConfig(steps=50))
    spiking = local_net(cfg, weights=relu.weights)
    agree = np.mean(spiking.predict(Xte[:150]).argmax(1) == relu.predict(Xte[:150]).argmax(1))
    assert agree > 0.9
    assert abs(spiking.error(Xte[:150], yte[:150]) - relu.error(Xte[:150], yte[:150])) < 5.0


def test_relu_net_with_spiking_weights_uses_the_decoded_real_weights():
    Xtr, ytr, _, _ = _digits()
    cfg = NetConfig(ModelConfig((64, 30, 10), 0.05, "int"), TrainingConfig(rule="fsgd"))
    spiking = local_net(cfg)
    spiking.train_epoch(Xtr[:200], ytr[:200])
    relu = ReluMLP.from_weights(spiking.weights())
    for w_relu, w_raw in zip(relu.weights, spiking.raw_weights()):
        np.testing.assert_allclose(w_relu, w_raw / cfg.scale)
