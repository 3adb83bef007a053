"""Un-held depth-first training (Table 3's ``dfs_unheld``), per-message path vs one compiled call per sample.

    taskset -c 0 python benchmarks/bench_depth.py [--data DIR] [--first 0] [--n 600] [--chunk 100]
        [--dtype float64] [--profile 0] [--write]

Both contestants are ``runtime=local`` nets of ``experiment=table3_dfs_unheld`` (784-200-200-10,
SGD, T = 10, eta 0.01, ``w_init`` 0.01, seed 1234, routing=dfs, hold_error=false) built from the
same initial weights; the fused net first trains on samples ``0..first-1`` untimed and hands its state
to the other (``state_dict``), so the window ``first..`` is measured at that point of training. "per-message" runs the scheduler's event-by-event recursion (every batch
split into single events, one module call each; ``Scheduler.fused_depth`` off), "fused" runs the
same recursion in one compiled call per sample (``kernels/depth.py``). Both train online on
MNIST training samples in file order, ``first+1..first+n``, in chunks of ``--chunk`` samples,
alternating A B A B on the same chunk (both nets stay in the same state: the script checks that
their weights and spike totals are equal, bit for bit, at the end). One untimed sample first
warms the compiled kernels. Figures: samples per second of process CPU time and of wall time,
summed over the chunks. ``--profile N``: a cProfile of the per-message path over N more samples
(top functions by own time). Not a test; ``--write`` refreshes the "depth" section of
results/benchmarks.md.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

from distspike.config import ModelConfig, NetConfig, TrainingConfig  # noqa: E402
from distspike.data import load_dataset  # noqa: E402
from distspike.runtime.local import local_net  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def table3_dfs_unheld(dtype: str) -> NetConfig:
    """``experiment=table3_dfs_unheld`` as a ``NetConfig`` (conf/experiment/table3_*.yaml)."""
    return NetConfig(ModelConfig((784, 200, 200, 10), 0.01, dtype),
                     TrainingConfig(rule="sgd", steps=10, eta=0.01, hold_error=False), routing="dfs", seed=1234)


def train(net, X, y, lo: int, hi: int) -> tuple[float, float]:
    """Train on samples ``lo..hi-1``; ``(cpu_s, wall_s)``."""
    c0, w0 = time.process_time(), time.perf_counter()
    for k in range(lo, hi):
        net.train_sample(X[k], y[k])
    return time.process_time() - c0, time.perf_counter() - w0


def profile(net, X, y, lo: int, hi: int, top: int = 14) -> str:
    prof = cProfile.Profile()
    prof.enable()
    train(net, X, y, lo, hi)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    text = out.getvalue().replace(str(ROOT) + "/", "").replace(str(Path(sys.prefix)) + "/", "")
    return "\n".join(line for line in text.splitlines() if line.strip() and "List reduced" not in line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--profile", type=int, default=0)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    ds = load_dataset("mnist", str(args.data))
    X, y = ds.x_train, ds.y_train
    cfg = table3_dfs_unheld(args.dtype)
    nets = {"per-message": local_net(cfg), "fused": local_net(cfg)}
    nets["per-message"].scheduler.fused_depth = False
    assert nets["fused"].scheduler.fused_depth, "the fused depth-first path does not apply"
    warm = args.first
    train(nets["fused"], X, y, 0, warm)  # untimed: the fused net reaches sample ``first``, the other takes its state
    nets["per-message"].load_state_dict(nets["fused"].state_dict())
    for net in nets.values():  # untimed: compiles (or loads) the kernels
        train(net, X, y, warm, warm + 1)
    fwd0, passed0 = np.asarray(nets["fused"].stats.fwd), np.asarray(nets["fused"].stats.err_passed)
    cpu = dict.fromkeys(nets, 0.0)
    wall = dict.fromkeys(nets, 0.0)
    lo, end = warm + 1, warm + 1 + args.n
    while lo < end:
        hi = min(lo + args.chunk, end)
        for name, net in nets.items():  # A B A B on the same chunk
            c, w = train(net, X, y, lo, hi)
            cpu[name] += c
            wall[name] += w
        lo = hi
    a, b = nets["per-message"], nets["fused"]
    same = all(np.array_equal(wa, wb) for wa, wb in zip(a.raw_weights(), b.raw_weights())) and \
        a.stats.as_dict() == b.stats.as_dict()
    spikes = (np.asarray(b.stats.fwd) - fwd0) / args.n
    passed = (np.asarray(b.stats.err_passed) - passed0) / args.n
    sizes = cfg.model.sizes
    # synaptic events: forward row elements (spikes_{l-1} * n_l) and backward column elements (passed_l * n_{l-1}, l >= 2)
    events = sum(spikes[l - 1] * sizes[l] for l in range(1, len(sizes))) + \
        sum(passed[l] * sizes[l - 1] for l in range(2, len(sizes)))
    lines = [f"samples {args.first + 1}..{end - 1} of the MNIST training set (file order) after {args.first + 1} untimed ones, "
             f"{args.chunk} per chunk, A B A B; {args.dtype}; weights and spike totals equal: {same}",
             f"per sample: spikes (input, layer 1, 2, 3) {', '.join(f'{v:.0f}' for v in spikes)}; "
             f"errors passed (gate 1, 2, 3) {', '.join(f'{v:.0f}' for v in passed[1:])}; "
             f"{events:.0f} synaptic events",
             "", "| path | samples/s (CPU) | samples/s (wall) | CPU s | ns per synaptic event (CPU) |",
             "|---|---:|---:|---:|---:|"]
    for name in nets:
        ns = cpu[name] / args.n / events * 1e9
        lines.append(f"| {name} | {args.n / cpu[name]:.0f} | {args.n / wall[name]:.0f} | {cpu[name]:.2f} | {ns:.1f} |")
    lines.append(f"\nfused / per-message (CPU): {cpu['per-message'] / cpu['fused']:.1f}x")
    if args.profile:
        lines += ["", f"Where the per-message path's time goes: cProfile of samples {end}..{end + args.profile - 1} "
                  "(own time, top functions):", "", "```", profile(a, X, y, end, end + args.profile).strip(), "```"]
    text = "\n".join(lines)
    print(text)
    if not same:
        raise SystemExit("bench_depth: the two paths diverged")
    if args.write:
        cmd = "taskset -c 0 python benchmarks/bench_depth.py " + " ".join(sys.argv[1:]).replace("--write", "").strip()
        write_section("depth", "## Un-held depth-first training (Table 3 `dfs_unheld`): per-message vs fused\n\n"
                      f"{machine()}\n\nCommand: `{cmd}`\n\n{text}\n")


if __name__ == "__main__":
    main()
