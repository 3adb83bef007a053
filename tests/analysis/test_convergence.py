"""Paper Fig. 1 (herding 1/T vs sampling 1/sqrt(T)) and Fig. 4 (spiking -> ReLU net)."""
import numpy as np

from distspike.analysis.convergence import herding_error, loglog_slope, relative_errors, sampling_error

TS = [10, 30, 100, 300, 1000]


def test_fig1_herding_falls_as_1_over_T_and_sampling_as_1_over_sqrt_T():
    rng = np.random.default_rng(0)
    vs = rng.uniform(-1, 1, (10, 50))
    herd = [np.mean([herding_error(v, T) for v in vs]) for T in TS]
    samp = [np.mean([sampling_error(v, T, rng) for v in vs]) for T in TS]
    assert -1.1 < loglog_slope(TS, herd) < -0.9
    assert -0.6 < loglog_slope(TS, samp) < -0.4
    assert all(h < 50 / (2 * T) for h, T in zip(herd, TS))


def test_fig4_spiking_layers_converge_to_relu_layers():
    rng = np.random.default_rng(1)
    sizes = (784, 500, 500, 10)
    W = [rng.normal(0, 0.1, (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]  # N(0, 0.1): std 0.1
    x = rng.uniform(0, 1, 784)
    errs = np.array([relative_errors(W, x, T) for T in (10, 100, 1000)])  # (3 T, 3 layers)
    for layer in range(3):
        assert loglog_slope([10, 100, 1000], errs[:, layer]) < -0.8, errs
    assert np.all(errs[-1] < 0.01), errs
