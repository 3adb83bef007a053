"""Samples/s of online training: in-process vs Ray (1 and 2 shards), side by side in one run.

Not a test: prints figures. Example:

    python benchmarks/bench_runtimes.py --sizes 784-300-300-10 --rule fsgd --samples 200
    python benchmarks/bench_runtimes.py --sizes 784-20000-20000-10 --dtype float32 --samples 20

MNIST is read from --data (default ../shared/data); without it, MNIST-like random
inputs (19 % of pixels on) are used. Each runtime trains on the same samples after a
warm-up (numba compilation, actor start), and reports samples/s and actor (or module)
calls per training sample.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from distspike.config import ModelConfig, NetConfig, RuntimeConfig, TrainingConfig
from distspike.runtime import make_net

ROOT = Path(__file__).resolve().parents[1]


def load_inputs(data: Path, n: int, n_in: int):
    """First ``n`` MNIST training images, or random MNIST-like vectors when MNIST is absent."""
    if (data / "mnist").exists() and n_in == 784:
        from distspike.data import load_dataset
        ds = load_dataset("mnist", str(data))
        return ds.x_train[:n], ds.y_train[:n]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (n, n_in)) * (rng.uniform(0, 1, (n, n_in)) < 0.19)
    return x, rng.integers(0, 10, n)


def measure(cfg: NetConfig, runtime: RuntimeConfig, X, y, warmup: int) -> tuple[float, float]:
    """(samples/s, calls per sample) over ``X[warmup:]`` after training on ``X[:warmup]``."""
    with make_net(cfg, runtime) as net:
        for k in range(warmup):
            net.train_sample(X[k], y[k])
        calls0, t0 = net.backend.calls, time.perf_counter()
        for k in range(warmup, len(X)):
            net.train_sample(X[k], y[k])
        net.raw_weights()  # waits for every pending update
        dt = time.perf_counter() - t0
        n = len(X) - warmup
        return n / dt, (net.backend.calls - calls0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="784-300-300-10")
    ap.add_argument("--rule", default="fsgd", choices=["sgd", "fsgd"])
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64", "int"])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--runtimes", default="local:1,ray_local:1,ray_local:2")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split("-"))
    cfg = NetConfig(ModelConfig(sizes, 0.01, args.dtype), TrainingConfig(rule=args.rule))
    X, y = load_inputs(args.data, args.samples + args.warmup, sizes[0])
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"# net {args.sizes} {args.dtype} T=10 BFS {args.rule}, {args.samples} samples after {args.warmup} warm-up")
    print(f"{'runtime':<16}{'samples/s':>12}{'calls/sample':>14}")
    for spec in args.runtimes.split(","):
        kind, shards = spec.split(":")
        sps, calls = measure(cfg, RuntimeConfig(kind, int(shards)), X, y, args.warmup)
        print(f"{spec:<16}{sps:>12.1f}{calls:>14.1f}", flush=True)


if __name__ == "__main__":
    main()
