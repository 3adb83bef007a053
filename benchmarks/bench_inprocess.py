"""In-process online training and prediction: spiking (SGD, FSGD) vs a numpy ReLU MLP, side by side.

    python benchmarks/bench_inprocess.py [--samples 600] [--chunk 50] [--write]

Issue 7 target: 784-300-300-10, T=10, breadth-first, one core, at least 1,200 training
samples/s (twice the authors' Java engine, about 550-630 samples/s; 590 is used as its
midpoint). All nets train online (batch 1) on the same first MNIST training images, in
interleaved chunks so that machine noise hits every figure alike; the ReLU MLP is the
conventional numpy one (``ReluMLP.train_one``, one sample per step). Prediction is one
sample per call for both. Reports samples/s, ratios, module calls per sample and the
load average. Not a test: prints figures; ``--write`` refreshes the "inprocess" section of
results/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core for every contestant, numpy's BLAS included

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

from distspike.config import ModelConfig, NetConfig, RuntimeConfig, TrainingConfig  # noqa: E402
from distspike.relu import ReluMLP, relu_forward  # noqa: E402
from distspike.runtime import make_net  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AUTHORS = 590.0  # samples/s of the authors' Java engine on this configuration (550-630)


def load_mnist(data: Path, n: int):
    from distspike.data import load_dataset
    ds = load_dataset("mnist", str(data))
    return np.asarray(ds.x_train[:n], np.float64), np.asarray(ds.y_train[:n])


class Timer:
    """Accumulated seconds and samples of one contestant."""

    def __init__(self):
        self.seconds, self.cpu, self.samples, self.calls = 0.0, 0.0, 0, 0
        self._t = None

    def __enter__(self):
        self._t = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc):
        self.seconds += time.perf_counter() - self._t[0]
        self.cpu += time.process_time() - self._t[1]

    def rate(self) -> float:
        """Samples per wall-clock second."""
        return self.samples / max(self.seconds, 1e-12)

    def cpu_rate(self) -> float:
        """Samples per CPU second of this process: what one unshared core would give."""
        return self.samples / max(self.cpu, 1e-12)


def spiking_net(sizes, rule: str, dtype: str):
    cfg = NetConfig(ModelConfig(sizes, 0.01, dtype), TrainingConfig(rule=rule), routing="bfs")
    return make_net(cfg, RuntimeConfig("local", 1))


def run(X, y, Xp, sizes, dtype: str, chunk: int, warmup: int) -> dict:
    """Train and predict chunk by chunk, every contestant on each chunk before the next one."""
    nets = {"sgd": spiking_net(sizes, "sgd", dtype), "fsgd": spiking_net(sizes, "fsgd", dtype)}
    relu = ReluMLP(sizes, 0.01, 0.01, seed=1234)
    eye = np.eye(sizes[-1])
    for net in nets.values():  # numba compilation and first-touch, not timed
        for k in range(warmup):
            net.train_sample(X[k], y[k])
        net.predict(Xp[:2])
    train = {k: Timer() for k in ("sgd", "fsgd", "relu")}
    pred = {k: Timer() for k in ("spiking", "relu")}
    for lo in range(warmup, X.shape[0], chunk):
        hi = min(lo + chunk, X.shape[0])
        for rule, net in nets.items():
            calls0 = net.backend.calls
            with train[rule]:
                for k in range(lo, hi):
                    net.train_sample(X[k], y[k])
            train[rule].samples += hi - lo
            train[rule].calls += net.backend.calls - calls0
        with train["relu"]:
            for k in range(lo, hi):
                relu.train_one(X[k], eye[y[k]])
        train["relu"].samples += hi - lo
        plo, phi = (lo - warmup) % Xp.shape[0], (lo - warmup) % Xp.shape[0] + (hi - lo)
        xs = Xp[plo:phi]
        net = nets["sgd"]
        calls0 = net.backend.calls
        with pred["spiking"]:
            for x in xs:
                net.predict(x)
        pred["spiking"].samples += len(xs)
        pred["spiking"].calls += net.backend.calls - calls0
        with pred["relu"]:
            for x in xs:
                relu_forward(relu.weights, x)
        pred["relu"].samples += len(xs)
    for net in nets.values():
        net.close()
    return {"train": train, "pred": pred}


def relu_numba_rate(X, y, sizes) -> float:
    """The compiled ReLU epoch loop (``ReluMLP.train_epoch``), for reference."""
    relu = ReluMLP(sizes, 0.01, 0.01, seed=1234)
    relu.train_epoch(X[:10], y[:10])
    return relu.train_epoch(X, y)


def report(res: dict, relu_nb: float, args, load0: float, load1: float) -> str:
    tr, pr = res["train"], res["pred"]
    r_relu, c_relu = tr["relu"].rate(), tr["relu"].cpu_rate()
    lines = [f"config: {args.sizes} {args.dtype} T=10 BFS, hold_error, in-process 1 shard; "
             f"{tr['relu'].samples} MNIST training samples after {args.warmup} warm-up, chunks of {args.chunk}, "
             f"interleaved; load average {load0:.2f} before, {load1:.2f} after. samples/s is wall clock; "
             f"per CPU-s is samples per CPU second of this process (the one-unshared-core estimate "
             f"when other jobs load the machine).", "",
             "| | samples/s | per CPU-s | / numpy ReLU (wall) | / numpy ReLU (CPU-s) | / authors' 590 (CPU-s) "
             "| module calls/sample |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for key, label in (("sgd", "train spiking SGD"), ("fsgd", "train spiking FSGD")):
        t = tr[key]
        lines.append(f"| {label} | {t.rate():.0f} | {t.cpu_rate():.0f} | {t.rate() / r_relu:.2f} | "
                     f"{t.cpu_rate() / c_relu:.2f} | {t.cpu_rate() / AUTHORS:.2f} | {t.calls / max(t.samples, 1):.1f} |")
    lines.append(f"| train numpy ReLU MLP (batch 1) | {r_relu:.0f} | {c_relu:.0f} | 1.00 | 1.00 | "
                 f"{c_relu / AUTHORS:.2f} | - |")
    lines.append(f"| train numba ReLU MLP (batch 1, compiled loop; own pass) | {relu_nb:.0f} | - | "
                 f"{relu_nb / r_relu:.2f} | - | - | - |")
    p_s, p_r = pr["spiking"], pr["relu"]
    lines.append(f"| predict spiking (T=10) | {p_s.rate():.0f} | {p_s.cpu_rate():.0f} | {p_s.rate() / p_r.rate():.2f} | "
                 f"{p_s.cpu_rate() / p_r.cpu_rate():.2f} | {p_s.cpu_rate() / AUTHORS:.2f} | "
                 f"{p_s.calls / max(p_s.samples, 1):.1f} |")
    lines.append(f"| predict numpy ReLU MLP (batch 1) | {p_r.rate():.0f} | {p_r.cpu_rate():.0f} | 1.00 | 1.00 | - | - |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="784-300-300-10")
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64", "int"])
    ap.add_argument("--samples", type=int, default=600, help="timed training samples per contestant")
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--write", action="store_true", help="write results/benchmarks.md section 'inprocess'")
    args = ap.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split("-"))
    head = machine()
    print("#", head, flush=True)
    X, y = load_mnist(args.data, args.samples + args.warmup + 1000)
    Xt, yt, Xp = X[:args.samples + args.warmup], y[:args.samples + args.warmup], X[-1000:]
    load0 = os.getloadavg()[0]
    res = run(Xt, yt, Xp, sizes, args.dtype, args.chunk, args.warmup)
    relu_nb = relu_numba_rate(Xt, yt, sizes)
    text = report(res, relu_nb, args, load0, os.getloadavg()[0])
    print(text)
    if args.write:
        cmd = "python benchmarks/bench_inprocess.py " + " ".join(sys.argv[1:]).replace("--write", "").strip()
        write_section("inprocess", f"## In-process training and prediction\n\n{head}\n\n`{cmd.strip()}`\n\n{text}\n")


if __name__ == "__main__":
    main()
