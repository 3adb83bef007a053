"""Samples/s of online training: in-process vs Ray (1 and 2 shards), side by side in one run.

Not a test: prints figures (``--write``: also into section ``ray`` of
``results/benchmarks.md``). Example:

    python benchmarks/bench_runtimes.py --sizes 784-300-300-10 --rule fsgd --samples 200
    python benchmarks/bench_runtimes.py --sizes 784-20000-20000-10 --dtype float32 --samples 20

MNIST is read from --data (default ../shared/data); without it, MNIST-like random
inputs (19 % of pixels on) are used. Each runtime trains on the same samples after a
warm-up (numba compilation, actor start; Ray actors build their weight copies
asynchronously during the first samples), and reports training samples/s, actor (or
module) calls per training sample, the actors' busy time per sample (Ray: seconds
spent inside messages, summed over actors; the rest of the wall time is call
overhead and waiting), and predictions/s with calls per predicted sample.
With other runtimes, ``local:1`` runs first and again last, and the ratios use the mean
of both (a slow phase of this shared host once cut one in-process run to a quarter).

The timed region ends with a barrier that waits for every queued call (a tiny call
per actor), not with a read-back of the weights: fetching a 20000x20000 matrix
through the object store takes tens of seconds and is not training throughput.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from distspike.config import ModelConfig, NetConfig, RuntimeConfig, TrainingConfig
from distspike.runtime import make_net

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from report import machine, write_section  # noqa: E402


def load_inputs(data: Path, n: int, n_in: int):
    """First ``n`` MNIST training images, or random MNIST-like vectors when MNIST is absent."""
    if (data / "mnist").exists() and n_in == 784:
        from distspike.data import load_dataset
        ds = load_dataset("mnist", str(data))
        return ds.x_train[:n], ds.y_train[:n]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (n, n_in)) * (rng.uniform(0, 1, (n, n_in)) < 0.19)
    return x, rng.integers(0, 10, n)


def barrier(backend) -> float:
    """Wait until every queued call has been applied; the actors' summed busy seconds (0 in-process)."""
    busy = getattr(backend, "busy", None)
    return sum(v[1] for v in busy().values()) if busy else 0.0


def measure(cfg: NetConfig, runtime: RuntimeConfig, X, y, warmup: int, n_train: int, n_eval: int) -> dict:
    """Figures over ``X[warmup:n_train]`` after training on ``X[:warmup]``; then predictions of ``X[:n_eval]``."""
    with make_net(cfg, runtime) as net:
        for k in range(warmup):
            net.train_sample(X[k], y[k])
        busy0 = barrier(net.backend)
        calls0, t0 = net.backend.calls, time.perf_counter()
        for k in range(warmup, n_train):
            net.train_sample(X[k], y[k])
        busy = barrier(net.backend) - busy0
        dt = time.perf_counter() - t0
        n = n_train - warmup
        out = {"sps": n / dt, "calls": (net.backend.calls - calls0) / n, "busy": busy / n}
        if n_eval:
            calls0, t0 = net.backend.calls, time.perf_counter()
            net.predict(X[:n_eval])
            out["eval_sps"] = n_eval / (time.perf_counter() - t0)
            out["eval_calls"] = (net.backend.calls - calls0) / n_eval
        return out


def table(rows: list[tuple[str, dict]]) -> str:
    """Markdown table: one row per runtime, ratios against ``local:1`` and the 1-shard Ray run.

    When ``local:1`` was measured twice (first and last: ``AGAIN``), the in-process base is
    the mean of both runs, so that a slow phase of the host during one of them shows up
    as the two rows' difference instead of as a ratio.
    """
    runs = [r for spec, r in rows if spec in ("local:1", AGAIN)]
    base = {"sps": sum(r["sps"] for r in runs) / len(runs)} if runs else None
    ray1 = dict(rows).get("ray_local:1")
    ray1c = dict(rows).get("ray_local:1:compiled")
    lines = ["| runtime | train samples/s | calls/sample | actor busy s/sample | x local | x ray 1 shard (same mode) "
             "| predict samples/s | calls/predicted sample |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for spec, r in rows:
        vs_local = f"{r['sps'] / base['sps']:.3f}" if base else "-"
        ref = ray1c if spec.endswith(":compiled") else ray1  # shards compared within one mode
        vs_ray1 = f"{r['sps'] / ref['sps']:.2f}" if ref and spec.startswith("ray") else "-"
        busy = f"{r['busy']:.4f}" if spec.startswith("ray") else "-"
        ev = (f"{r['eval_sps']:.1f} | {r['eval_calls']:.2f}") if "eval_sps" in r else "- | -"
        lines.append(f"| {spec} | {r['sps']:.2f} | {r['calls']:.1f} | {busy} | {vs_local} | {vs_ray1} | {ev} |")
    return "\n".join(lines)


AGAIN = "local:1 (again, last)"  # the in-process run repeated after the Ray runs

RAY_TITLE = ("## Runtimes: in-process vs Ray\n\nOne block per network and rule (each refreshed by its own "
             "command); every ratio is measured side by side in one run.\n\n")


def current_section(name: str) -> str:
    """The text of section ``name`` of ``results/benchmarks.md`` ('' when absent)."""
    from report import RESULTS
    old = RESULTS.read_text() if RESULTS.exists() else ""
    m = re.search(rf"<!-- bench:{name} -->\n(.*?)<!-- /bench:{name} -->", old, re.S)
    return m.group(1) if m else ""


def merge_block(section: str, key: str, block: str) -> str:
    """The blocks of ``section`` with block ``key`` replaced by ``block`` (appended when new)."""
    begin, end = f"<!-- ray:{key} -->", f"<!-- /ray:{key} -->"
    blocks = re.findall(r"(<!-- ray:(.*?) -->\n.*?<!-- /ray:\2 -->)", section, re.S)
    kept = [(k, b) for b, k in blocks if k != key]
    kept.append((key, f"{begin}\n{block.rstrip()}\n{end}"))
    return "\n\n".join(b for _, b in sorted(kept))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="784-300-300-10")
    ap.add_argument("--rule", default="fsgd", choices=["sgd", "fsgd"])
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64", "int"])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--runtimes", default="local:1,ray_local:1,ray_local:2,ray_local:1:compiled,ray_local:2:compiled",
                    help="kind:shards[:compiled] (compiled: runtime.compiled, a Ray Compiled Graph per sample)")
    ap.add_argument("--eval", type=int, default=20, help="predictions timed after training (0: none)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--write", action="store_true", help="also write section 'ray' of results/benchmarks.md")
    args = ap.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split("-"))
    cfg = NetConfig(ModelConfig(sizes, 0.01, args.dtype), TrainingConfig(rule=args.rule))
    X, y = load_inputs(args.data, max(args.samples + args.warmup, args.eval), sizes[0])  # predictions: X[:eval]
    head = machine()
    config = (f"net {args.sizes} {args.dtype}, T=10, BFS, {args.rule}, held errors; {args.samples} training "
              f"samples after {args.warmup} warm-up, {args.eval} predictions; "
              f"inputs {'MNIST' if (args.data / 'mnist').exists() and sizes[0] == 784 else 'random'}")
    print(f"# {head}\n# {config}", flush=True)
    rows = []
    specs = args.runtimes.split(",")
    if "local:1" in specs and len(specs) > 1:
        specs.append(AGAIN)  # bracket the Ray runs: the in-process base is the mean of both runs
    for spec in specs:
        kind, shards, *mode = ("local:1" if spec == AGAIN else spec).split(":")
        runtime = RuntimeConfig(kind, int(shards), compiled=mode == ["compiled"])
        r = measure(cfg, runtime, X, y, args.warmup, args.samples + args.warmup, args.eval)
        rows.append((spec, r))
        print(f"{spec:<22}{r['sps']:>10.2f} samples/s{r['calls']:>8.1f} calls/sample"
              f"{r['busy']:>10.4f} busy s/sample", flush=True)
    text = table(rows)
    load = os.getloadavg()[0]
    print(text + f"\n# load average {load:.2f} at the end")
    if args.write:
        command = "python benchmarks/bench_runtimes.py " + " ".join(sys.argv[1:])
        block = (f"### {args.sizes} {args.dtype} {args.rule}\n\n{head}; load average {load:.2f} at the end.\n\n"
                 f"Command: `{command}`\n\nConfig: {config}.\n\n{text}\n")
        key = f"{args.sizes}-{args.dtype}-{args.rule}"
        write_section("ray", RAY_TITLE + merge_block(current_section("ray"), key, block))


if __name__ == "__main__":
    main()
