"""Per-event herding cost in ns per weight element touched (issue 7 target: <= 1 ns).

    python benchmarks/bench_kernels.py [--write]

For layers of 300, 2,000 and 20,000 units: 1,000 input events, each adding a row of
``W`` (784 x n) to the pre-activation sum and the rectified herder's potentials and
herding after it (``herd_rows``, the forward quantizer's inner loop). Not a test;
``--write`` refreshes the "kernels" section of results/benchmarks.md. Times are CPU
seconds of this process (the machine may be shared), wall clock alongside.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

from distspike.kernels.herding import NO_UPDATE, herd_rows  # noqa: E402
from distspike.kernels.updates import gate_and_update  # noqa: E402


def ns_per_element(n_units: int, dtype=np.float64, seconds: float = 1.0) -> tuple[float, float]:
    """``(CPU ns, wall ns)`` per weight element touched by ``herd_rows``."""
    rng = np.random.default_rng(0)
    W = rng.normal(0, 0.01, (784, n_units)).astype(dtype)  # (784, n)
    phi, S = np.zeros(n_units, dtype), np.zeros(n_units, dtype)
    idx = rng.integers(0, 784, 1000).astype(np.int32)
    sign = np.ones(1000, np.int8)
    args = (dtype(0.5), dtype(1.0), False, 0, True, np.zeros(0, dtype), NO_UPDATE)
    herd_rows(W, phi, S, idx, sign, *args)  # compile
    t0, c0, runs = time.perf_counter(), time.process_time(), 0
    while time.process_time() - c0 < seconds:
        phi[:] = 0
        herd_rows(W, phi, S, idx, sign, *args)
        runs += 1
    per = runs * 1000 * n_units / 1e9
    return (time.process_time() - c0) / per, (time.perf_counter() - t0) / per


def column_ns_per_element(n_units: int, dtype=np.float64, seconds: float = 1.0) -> float:
    """CPU ns per weight element of FSGD's column update of the forward copy ``W`` (784 x n, row-major:
    the column is strided) by ``gate_and_update``, 1,000 passed error spikes at a time."""
    rng = np.random.default_rng(0)
    W = rng.normal(0, 0.01, (784, n_units)).astype(dtype)
    S, e = np.ones(n_units, dtype), np.zeros(n_units, dtype)
    delta = rng.uniform(0, 1e-6, 784).astype(dtype)
    idx = rng.integers(0, n_units, 1000).astype(np.int32)
    sign = np.where(rng.random(1000) < 0.5, 1, -1).astype(np.int8)
    gate_and_update(W, S, e, delta, idx, sign, 0, True)  # compile
    c0, runs = time.process_time(), 0
    while time.process_time() - c0 < seconds:
        gate_and_update(W, S, e, delta, idx, sign, 0, True)
        runs += 1
    return (time.process_time() - c0) / (runs * 1000 * 784) * 1e9


def message_overhead_us(rule: str = "sgd", samples: int = 40) -> float:
    """CPU µs per module message of the in-process runtime's unfused (2-shard) schedule on a net so
    narrow (784-16-16-10) that its kernels cost next to nothing: the fixed cost of handling a message
    in a shell (decode, merge, bookkeeping), which every actor pays on top of the Ray call itself."""
    from distspike.config import ModelConfig, NetConfig, RuntimeConfig, TrainingConfig
    from distspike.runtime import make_net
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (samples + 5, 784)) * (rng.uniform(0, 1, (samples + 5, 784)) < 0.19)
    cfg = NetConfig(ModelConfig((784, 16, 16, 10), 0.01, "float32"), TrainingConfig(rule=rule))
    with make_net(cfg, RuntimeConfig("local", 2)) as net:
        for k in range(5):
            net.train_sample(X[k], k % 10)
        calls0, c0 = net.backend.calls, time.process_time()
        for k in range(5, samples + 5):
            net.train_sample(X[k], k % 10)
        return (time.process_time() - c0) / max(net.backend.calls - calls0, 1) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write results/benchmarks.md section 'kernels'")
    args = ap.parse_args()
    head = machine()
    print("#", head)
    lines = ["| dtype | units | ns/element (CPU) | ns/element (wall) |", "|---|---:|---:|---:|"]
    for dt in (np.float64, np.float32):
        for n in (300, 2000, 20000):
            cpu, wall = ns_per_element(n, dt)
            lines.append(f"| {np.dtype(dt).name} | {n} | {cpu:.2f} | {wall:.2f} |")
            print(lines[-1], flush=True)
    for dt in (np.float64, np.float32):
        lines.append(f"| {np.dtype(dt).name} | 5000, column update (strided) | "
                     f"{column_ns_per_element(5000, dt):.2f} | - |")
        print(lines[-1], flush=True)
    for rule in ("sgd", "fsgd"):
        lines.append(f"| - | message overhead, {rule} (µs per message, 784-16-16-10, 2 shards in-process) | "
                     f"{message_overhead_us(rule) * 1e3:.0f} ns | - |")
        print(lines[-1], flush=True)
    if args.write:
        text = (f"## Kernels: forward herding cost per weight element (target <= 1 ns)\n\n{head}\n\n"
                f"`python benchmarks/bench_kernels.py`: 1,000 input events into a 784 x n layer (`herd_rows`); "
                f"load average {os.getloadavg()[0]:.2f} at the end\n\n" + "\n".join(lines) + "\n")
        write_section("kernels", text)


if __name__ == "__main__":
    main()
