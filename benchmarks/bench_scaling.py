"""How in-process training cost grows with layer width, spikes per sample and shards.

    python benchmarks/bench_scaling.py [--samples 60] [--write]

784-n-n-10, T=10, BFS, held errors, SGD and FSGD, MNIST, in-process. For each width:
samples per CPU second, spikes per sample (forward + error) and CPU microseconds per
1,000 weight elements touched by spikes (forward rows of ``W_l`` per incoming spike,
backward columns per passed error). Shards > 1 run the (unfused) batched schedule.
Not a test; ``--write`` refreshes the "scaling" section of results/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inprocess import load_mnist  # noqa: E402
from report import machine, write_section  # noqa: E402

from distspike.config import ModelConfig, NetConfig, RuntimeConfig, TrainingConfig  # noqa: E402
from distspike.runtime import make_net  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def measure(width: int, rule: str, shards: int, X, y, warmup: int = 5):
    sizes = (784, width, width, 10)
    cfg = NetConfig(ModelConfig(sizes, 0.01, "float64"), TrainingConfig(rule=rule))
    with make_net(cfg, RuntimeConfig("local", shards)) as net:
        for k in range(warmup):
            net.train_sample(X[k], y[k])
        s0 = net.stats
        c0 = time.process_time()
        for k in range(warmup, len(X)):
            net.train_sample(X[k], y[k])
        cpu = time.process_time() - c0
        s1 = net.stats
    n = len(X) - warmup
    fwd = (s1.fwd - s0.fwd) / n  # spikes per sample emitted by layer l (0 = input)
    passed = (s1.err_passed - s0.err_passed) / n
    elems = sum(fwd[l - 1] * sizes[l] for l in range(1, 4)) + sum(passed[l] * sizes[l - 1] for l in range(2, 4))
    return n / cpu, fwd.sum(), (s1.err_in - s0.err_in).sum() / n, cpu / n / elems * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--widths", default="300,1000,3000")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    head = machine()
    print("#", head, flush=True)
    X, y = load_mnist(args.data, args.samples + 5)
    lines = ["| net | rule | shards | samples per CPU-s | forward spikes/sample | error spikes/sample | "
             "CPU ns per element touched |", "|---|---|---:|---:|---:|---:|---:|"]
    runs = [(w, r, 1) for w in map(int, args.widths.split(",")) for r in ("sgd", "fsgd")]
    runs += [(300, r, 2) for r in ("sgd", "fsgd")]
    for w, rule, shards in runs:
        rate, fwd, err, ns = measure(w, rule, shards, X, y)
        lines.append(f"| 784-{w}-{w}-10 | {rule} | {shards} | {rate:.0f} | {fwd:.0f} | {err:.0f} | {ns:.2f} |")
        print(lines[-1], flush=True)
    if args.write:
        write_section("scaling", f"## Scaling (in-process)\n\n{head}\n\n`python benchmarks/bench_scaling.py "
                      f"--samples {args.samples} --widths {args.widths}`\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
