"""Convergence of spike counts to real values: paper Fig. 1 (eq. 9) and Fig. 4 (App. B).

Pure numeric functions over the herding kernels; the experiments and tests call them.
"""
from __future__ import annotations

import numpy as np

from distspike.kernels.herding import herd_rows, herd_vector, stochastic_sample

_HALF, _ONE = np.float64(0.5), np.float64(1.0)


def herding_error(v: np.ndarray, steps: int) -> float:
    """``||v - (1/T) sum_n e_{i_n} s_n||_1`` after ``T`` steps of signed herding (Alg. 1).

    Bounded by ``d / (2T)`` (eq. 9), since the residual ``T v - sum_n e_{i_n} s_n`` is
    the final ``phi`` with every ``|phi_i| <= 1/2``.
    """
    v = np.asarray(v, np.float64)
    phi = np.zeros_like(v)  # (d,)
    counts = np.zeros_like(v)  # (d,) signed spike counts
    for _ in range(steps):
        idx, sign, _ = herd_vector(phi, v, _HALF, _ONE, True, 0)
        np.add.at(counts, idx, sign)
    return float(np.abs(v - counts / steps).sum())


def sampling_error(v: np.ndarray, steps: int, rng: np.random.Generator) -> float:
    """The same L1 error for stochastic (Poisson) sampling (Alg. 5), which falls as ``1/sqrt(T)``.

    Unit ``i`` fires ``Poisson(mag) * |v_i| / mag`` spikes of sign ``sign(v_i)`` per step on
    average, so ``E[counts / T] = v``.
    """
    v = np.asarray(v, np.float64)
    idx, sign = stochastic_sample(v, steps, rng)
    counts = np.zeros_like(v)  # (d,)
    np.add.at(counts, idx, sign)
    return float(np.abs(v - counts / steps).sum())


def loglog_slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``log x``."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def spike_rates(weights: list[np.ndarray], x: np.ndarray, steps: int) -> list[np.ndarray]:
    """Per-layer spike counts / T of the spiking forward pass (rectified herding, float64).

    Layer 0 is the signed input quantizer; layer ``l`` herds the rows ``W_l[i]`` of its
    input spikes event by event (Alg. 3 generalised to any depth).
    """
    phis = [np.zeros(w.shape[1]) for w in weights]  # (n_l,) per layer
    sums = [np.zeros(w.shape[1]) for w in weights]
    counts = [np.zeros(w.shape[1]) for w in weights]
    phi0 = np.zeros(weights[0].shape[0])
    empty = np.zeros(0)
    for _ in range(steps):
        idx, sign, _ = herd_vector(phi0, x, _HALF, _ONE, True, 0)
        for l, w in enumerate(weights):
            _, idx, sign, _ = herd_rows(w, phis[l], sums[l], idx, sign, _HALF, _ONE, False, 0, True, empty, 0)
            np.add.at(counts[l], idx, sign)
    return [c / steps for c in counts]


def relative_errors(weights: list[np.ndarray], x: np.ndarray, steps: int) -> list[float]:
    """``||counts_l/T - relu_l|| / ||relu_l||`` for every layer (paper Fig. 4)."""
    h = np.asarray(x, np.float64)
    relus = []
    for w in weights:
        h = np.maximum(h @ w, 0.0)  # (n_l,)
        relus.append(h)
    rates = spike_rates(weights, np.asarray(x, np.float64), steps)
    return [float(np.linalg.norm(r - a) / max(np.linalg.norm(a), 1e-300)) for r, a in zip(rates, relus)]
