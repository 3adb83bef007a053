"""Per-event herding cost in ns per weight element touched (issue 7 target: <= 1 ns).

    python benchmarks/bench_kernels.py

For layers of 300, 2,000 and 20,000 units: 1,000 input events, each adding a row of
``W`` (784 x n) to the pre-activation sum and the rectified herder's potentials and
herding after it (``herd_rows``, the forward quantizer's inner loop). Not a test.
"""
from __future__ import annotations

import time

import numpy as np

from distspike.kernels.herding import NO_UPDATE, herd_rows


def ns_per_element(n_units: int, dtype=np.float64, seconds: float = 1.0) -> float:
    rng = np.random.default_rng(0)
    W = rng.normal(0, 0.01, (784, n_units)).astype(dtype)  # (784, n)
    phi, S = np.zeros(n_units, dtype), np.zeros(n_units, dtype)
    idx = rng.integers(0, 784, 1000).astype(np.int32)
    sign = np.ones(1000, np.int8)
    args = (dtype(0.5), dtype(1.0), False, 0, True, np.zeros(0, dtype), NO_UPDATE)
    herd_rows(W, phi, S, idx, sign, *args)  # compile
    t0, runs = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        phi[:] = 0
        herd_rows(W, phi, S, idx, sign, *args)
        runs += 1
    return (time.perf_counter() - t0) / runs / (1000 * n_units) * 1e9


if __name__ == "__main__":
    for dt in (np.float64, np.float32):
        for n in (300, 2000, 20000):
            print(f"{np.dtype(dt).name:8} {n:>6} units: {ns_per_element(n, dt):.2f} ns/element")
