"""Where one in-process training sample's time goes (issue 21): Python, input herding, kernel parts, updates.

    taskset -c 0 python benchmarks/bench_profile.py [--sizes 784-300-300-10] [--rule sgd] [--dtype float64]
        [--first 500] [--n 2000] [--write]

Two nets from the same weights train MNIST samples ``0..first-1`` untimed, then ``first..first+n-1``:

1. the plain net, with timing wrappers (``time.process_time_ns`` around each call) on the fused kernel
   call (``fused.herd_and_train``, which runs the input and target quantizers and, for SGD, the end-of-sample
   updates too) and any SGD updates called from Python (``sgd_outer_counts``: none on the fused path); what remains of the sample is
   Python (scheduler, shells, arguments);
2. the same net with the fused kernel replaced by ``timed_train_sample`` below: the kernel's code with
   clock reads (``clock_gettime(CLOCK_MONOTONIC)`` through ctypes: wall time, so run it alone on its core) between its
   parts. It does the same work on the same state (it is checked to give the same weights), so its
   parts add up to the kernel's time plus the clock reads; no traffic log (``bench_logging.py``
   measures that).

Not a test: prints figures; ``--write`` refreshes the "profile" section of results/benchmarks.md.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

import distspike.core.modules as modules  # noqa: E402
import distspike.kernels.fused as fused  # noqa: E402
from distspike.config import ModelConfig, NetConfig, RuntimeConfig, TrainingConfig  # noqa: E402
from distspike.core.network import init_weights  # noqa: E402
from distspike.kernels.fused import BWD_OUT, ERR_IN, ERR_PASSED, FWD_OUT, relu_delta, select_segments  # noqa: E402
from distspike.kernels.herding import (NO_UPDATE, UPDATE_AFTER, UPDATE_BEFORE, herd_rows_into,  # noqa: E402
                                       herd_segments_into, herd_vector_steps, scratch)
from distspike.kernels.updates import count_events, gate_and_update_into, launch_errors, sgd_outer_counts  # noqa: E402
from distspike.runtime import make_net  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
_libc = ctypes.CDLL(None)
_clock = _libc.clock_gettime
_clock.argtypes = [ctypes.c_int, ctypes.c_void_p]
_clock.restype = ctypes.c_int
#: kernel parts, in ``timed_train_sample``'s accumulator order
PARTS = ("input herding (784 inputs x T, herd_vector_steps)", "target herding (herd_vector_steps)",
         "forward: input counts (count_events)", "forward: herding layer 1", "forward: herding layer 2",
         "forward: herding layer 3", "held errors: counter and launch (launch_errors, roots)",
         "backward: delta = lr relu(c) per message (relu_delta)", "backward: gates + updates (gate_and_update)",
         "backward: passed-event selection (select_segments)", "backward: herding (herd_segments)",
         "backward: SGD error counts (count_events)", "SGD updates at the sample's end (sgd_outer_counts, 5 modules)")


@njit
def _now(buf):
    _clock(1, buf.ctypes)  # CLOCK_MONOTONIC: vDSO, no system call (a thread-CPU clock is one, and perturbs)
    return buf[0] * 1000000000 + buf[1]


@njit
def _add(acc, part, ns):
    """One timed interval of ``part``: its ns (row 0 of ``acc``) and the count of intervals (row 1)."""
    acc[0, part] += ns
    acc[1, part] += 1


@njit
def read_cost(n):
    """Mean ns between two back-to-back clock reads (subtracted from every timed interval)."""
    clk = np.zeros(2, np.int64)
    total = 0
    for _ in range(n):
        t0 = _now(clk)
        total += _now(clk) - t0
    return total / n


@njit
def timed_train_sample(acc, x, in_phi, in_total, neg_y, tg_phi, tg_total, steps, Ws, Ss, phis, cs, es, WTs, bphis,
                       bcs, bes, counts, thresh, unit, lr, fractional, read_first, stats):
    """``fused.herd_and_train`` without traffic rows, with the ns of each part (``PARTS``) added to ``acc``."""
    clk = np.zeros(2, np.int64)
    t0 = _now(clk)
    in_phi[:] = 0
    in_total[:] = 0
    # the flags as typed values, as the kernel passes them (``herding.py``): literals compile other code
    false, true, no_lo, no_update = np.bool_(False), np.bool_(True), np.int64(0), np.int64(NO_UPDATE)
    in_idx, in_sign, in_bounds = herd_vector_steps(in_phi, in_total, x, steps, thresh, unit, true)
    t1 = _now(clk)
    tg_phi[:] = 0
    tg_total[:] = 0
    tg_idx, tg_sign, tg_bounds = herd_vector_steps(tg_phi, tg_total, neg_y, steps, thresh, unit, true)
    _add(acc, 0, t1 - t0)
    _add(acc, 1, _now(clk) - t1)
    for t in range(steps):
        stats[t, FWD_OUT, 0] += in_bounds[t + 1] - in_bounds[t]
    L = len(Ws)
    per_batch = NO_UPDATE if not fractional else UPDATE_AFTER if read_first else UPDATE_BEFORE
    none = np.zeros(2, np.int64)
    width = 1
    for l in range(L):
        width = max(width, phis[l].shape[0], bphis[l].shape[0])
    fsc0, fsc1, bsc = scratch(phis[0], width), scratch(phis[0], width), scratch(phis[0], width)
    for t in range(in_bounds.shape[0] - 1):
        idx = in_idx[in_bounds[t]:in_bounds[t + 1]]
        sign = in_sign[in_bounds[t]:in_bounds[t + 1]]
        for l in range(L):
            if idx.shape[0] == 0:
                break
            t0 = _now(clk)
            count_events(cs[l], idx, sign, no_lo)
            if l >= 1:
                count_events(bcs[l], idx, sign, no_lo)
            t1 = _now(clk)
            no_delta = np.zeros(0, Ws[l].dtype)
            if l % 2 == 0:
                _, idx, sign, _, fsc0 = herd_rows_into(Ws[l], phis[l], Ss[l], idx, sign, thresh, unit, false, no_lo,
                                                       true, no_delta, no_update, fsc0)
            else:
                _, idx, sign, _, fsc1 = herd_rows_into(Ws[l], phis[l], Ss[l], idx, sign, thresh, unit, false, no_lo,
                                                       true, no_delta, no_update, fsc1)
            t2 = _now(clk)
            _add(acc, 2, t1 - t0)
            _add(acc, 3 + min(l, 2), t2 - t1)
            stats[t, FWD_OUT, l + 1] += idx.shape[0]
        t0 = _now(clk)
        out_bounds = none.copy()
        out_bounds[1] = idx.shape[0]
        tb = np.zeros(2, np.int64)
        tb[0], tb[1] = tg_bounds[t], tg_bounds[t + 1]
        idx, sign, _ = launch_errors(counts, idx, sign, out_bounds, tg_idx, tg_sign, tb)
        bounds = np.arange(idx.shape[0] + 1).astype(np.int64)
        _add(acc, 6, _now(clk) - t0)
        if idx.shape[0] == 0:
            continue
        for l in range(L - 1, -1, -1):
            if idx.shape[0] == 0:
                break
            t0 = _now(clk)
            delta = relu_delta(cs[l], lr, np.empty(cs[l].shape[0], Ws[l].dtype))
            t1 = _now(clk)
            mask = np.zeros(idx.shape[0], np.bool_)
            for p in range(bounds.shape[0] - 1):
                a, b = bounds[p], bounds[p + 1]
                gate_and_update_into(Ws[l], Ss[l], es[l], delta, idx, sign, a, b, no_lo, fractional, mask)
            stats[t, ERR_IN, l + 1] += idx.shape[0]
            t2 = _now(clk)
            idx, sign, bounds = select_segments(idx, sign, bounds, mask)
            stats[t, ERR_PASSED, l + 1] += idx.shape[0]
            t3 = _now(clk)
            _add(acc, 7, t1 - t0)
            _add(acc, 8, t2 - t1)
            _add(acc, 9, t3 - t2)
            if l == 0 or idx.shape[0] == 0:
                break
            t0 = _now(clk)
            bdelta = relu_delta(bcs[l], lr, np.empty(bcs[l].shape[0], WTs[l].dtype))
            t1 = _now(clk)
            if not fractional:
                count_events(bes[l], idx, sign, no_lo)
            t2 = _now(clk)
            no_hist = np.zeros((0, bphis[l].shape[0]), WTs[l].dtype)
            no_rows = np.zeros(0, np.int64)
            _, idx, sign, _, bounds, bsc = herd_segments_into(WTs[l], bphis[l], bphis[l], idx, sign, bounds, thresh,
                                                              unit, true, no_lo, false, bdelta, no_update, per_batch,
                                                              no_hist, no_rows, bsc)
            t3 = _now(clk)
            _add(acc, 7, t1 - t0)
            _add(acc, 11, t2 - t1)
            _add(acc, 10, t3 - t2)
            stats[t, BWD_OUT, l + 1] += idx.shape[0]
    if not fractional:
        t0 = _now(clk)
        for l in range(L):
            sgd_outer_counts(Ws[l], cs[l], lr, es[l], false)
            if l >= 1:
                sgd_outer_counts(WTs[l], bcs[l], lr, bes[l], true)
        _add(acc, 12, _now(clk) - t0)


class Clock:
    """CPU ns of this process spent in wrapped calls."""

    def __init__(self):
        self.ns = 0

    def wrap(self, fn):
        def timed(*a, **kw):
            t0 = time.process_time_ns()
            try:
                return fn(*a, **kw)
            finally:
                self.ns += time.process_time_ns() - t0
        return timed


def make(args, weights):
    cfg = NetConfig(ModelConfig(args.sizes, 0.01, args.dtype), TrainingConfig(rule=args.rule), routing="bfs")
    return make_net(cfg, RuntimeConfig("local", 1), weights=weights)


def python_breakdown(args, weights, X, y) -> tuple[dict, object]:
    """Part 1: ns per sample of the quantizers, the kernel call, the SGD updates and the rest (Python)."""
    net = make(args, weights)
    for k in range(args.first):
        net.train_sample(X[k], y[k])
    clocks = {name: Clock() for name in ("fused kernel call (input and target herding, SGD updates included)",
                                         "SGD updates called from Python (sgd_outer_counts; none when fused)")}
    c_k, c_sgd = clocks.values()
    kernel, sgd = fused.herd_and_train, modules.sgd_outer_counts
    fused.herd_and_train, modules.sgd_outer_counts = c_k.wrap(kernel), c_sgd.wrap(sgd)
    try:
        t0 = time.process_time_ns()
        for k in range(args.first, args.first + args.n):
            net.train_sample(X[k], y[k])
        total = time.process_time_ns() - t0
    finally:
        fused.herd_and_train, modules.sgd_outer_counts = kernel, sgd
    out = {name: c.ns / args.n for name, c in clocks.items()}
    out["Python: scheduler, shells, arguments (the rest)"] = total / args.n - sum(out.values())
    out["total per sample"] = total / args.n
    return out, net


def kernel_breakdown(args, weights, X, y, reference) -> tuple[dict, float]:
    """Part 2: ns per sample of each kernel part (``PARTS``) and of the timed twin as a whole."""
    net = make(args, weights)
    acc = np.zeros((2, len(PARTS)), np.int64)

    def twin(*a):
        timed_train_sample(acc, *a[:-6])  # up to ``stats``: no traffic rows, constant step_lr, no penalty
        return a[-6], a[-5]
    for k in range(args.first):
        net.train_sample(X[k], y[k])
    kernel = fused.herd_and_train
    fused.herd_and_train = twin
    try:
        net.train_sample(X[args.first], y[args.first])  # compiles the twin (untimed)
        acc[:] = 0
        t0 = time.process_time_ns()
        for k in range(args.first + 1, args.first + args.n):
            net.train_sample(X[k], y[k])
        total = (time.process_time_ns() - t0) / (args.n - 1)
    finally:
        fused.herd_and_train = kernel
    for a, b in zip(net.weights(), reference.weights()):
        if not np.array_equal(a, b):
            raise SystemExit("bench_profile: the timed twin of the kernel did not give the same weights")
    cost = min(read_cost(20000) for _ in range(3))  # one clock read, charged once per interval
    return {p: (v - c * cost) / (args.n - 1) for p, v, c in zip(PARTS, acc[0], acc[1])}, total, cost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="784-300-300-10")
    ap.add_argument("--rule", default="sgd", choices=["sgd", "fsgd"])
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--first", type=int, default=500)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--write", action="store_true", help="write results/benchmarks.md section 'profile'")
    args = ap.parse_args()
    args.sizes = tuple(int(s) for s in args.sizes.split("-"))
    head = machine()
    print("#", head, flush=True)
    from distspike.data import load_dataset
    ds = load_dataset("mnist", str(args.data))
    X, y = np.asarray(ds.x_train[:args.first + args.n]), ds.y_train[:args.first + args.n]
    weights = init_weights(args.sizes, 0.01, 1234)
    py, net = python_breakdown(args, weights, X, y)
    parts, twin_total, cost = kernel_breakdown(args, weights, X, y, net)
    kernel = py["fused kernel call (input and target herding, SGD updates included)"]
    lines = ["| part | µs per sample | share of the sample |", "|---|---:|---:|"]
    for name, ns in py.items():
        lines.append(f"| {name} | {ns / 1e3:.1f} | {100 * ns / py['total per sample']:.1f} % |")
        if name.startswith("fused kernel call"):
            for p, v in parts.items():
                lines.append(f"| &nbsp;&nbsp; kernel: {p} | {v / 1e3:.1f} | {100 * v / py['total per sample']:.1f} % |")
            rest = kernel - sum(parts.values())
            lines.append(f"| &nbsp;&nbsp; kernel: the rest (loops, per-step allocations, clock reads) | {rest / 1e3:.1f} | {100 * rest / py['total per sample']:.1f} % |")
    net.close()
    text = (f"{'-'.join(map(str, args.sizes))} {args.rule} {args.dtype}, T=10, BFS, held errors, runtime=local; "
            f"MNIST samples {args.first}..{args.first + args.n - 1} after {args.first} untimed; CPU time of this "
            f"process. The timed twin of the kernel took {twin_total / 1e3:.1f} µs per sample in all (plain net: "
            f"{py['total per sample'] / 1e3:.1f}), its clock reads {cost:.0f} ns each (subtracted from each part); load average {os.getloadavg()[0]:.2f} at the end.\n\n"
            + "\n".join(lines))
    print(text)
    if args.write:
        cmd = "taskset -c 0 python benchmarks/bench_profile.py " + " ".join(a for a in sys.argv[1:] if a != "--write")
        write_section("profile", f"## Where a training sample's time goes\n\n{head}\n\nCommand: `{cmd.strip()}`\n\n"
                                 f"{text}\n")


if __name__ == "__main__":
    main()
