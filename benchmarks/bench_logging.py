"""Overhead of the per-actor traffic logs on online training (goal: < 5 % of run time).

Not a test: prints figures (and writes them to ``results/benchmarks.md`` with ``--write``).
Trains identical nets (same config, seed and samples, hence the same spikes and the
same work) side by side in one process, for each training rule:

- ``off``:  logging off;
- ``control``: (in-process only) logging off too: what two identical nets differ by
  (the resolution of the figures);
- ``null``: (in-process only) every shell has a recorder that drops the messages it is
  handed, i.e. only the shell's side of logging (``Shell._log_*``: picking the fields;
  for fused samples the kernel's message table and its append, ``SampleRows``);
- ``on``:   ``LoggingConfig()`` (the default flush policy) writing Parquet to a temporary run dir.

Chunks of samples rotate over the nets (and their order) so that machine noise hits
all alike; absolute times mean little on a shared machine, the per-chunk ratios do.
In-process the roles also rotate over the net objects, chunk by chunk (a role's
recorders move to another net; all nets hold the same state between chunks): two
identical nets without logging differ systematically by up to 6 % in time (memory
placement), which would otherwise be read as the cost of logging.
For each role the overhead of chunk ``c`` is ``time_c(role) / time_c(off) - 1``; the
report gives the median over chunks, the quartiles and extremes (spread), and the
ratio of total times. ``on - null`` is the recorder's own share (packing + Parquet).
The last partial buffers written by ``close()`` are counted in ``on``'s last chunk (and
reported on their own: a real run pays them once, after many more samples).

    python benchmarks/bench_logging.py [--rules sgd,fsgd] [--samples 1500] [--chunk 50]
                                       [--ray-samples 0] [--ray-chunk 10] [--write]

``--ray-samples N`` also times ``off``/``on`` on the embedded Ray runtime (1 actor per
layer and quantizer; own temp dir, no dashboard), N samples per rule. Uses MNIST from
``--data`` when present, else random MNIST-like inputs (784 features, 10 classes).
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from distspike.config import LoggingConfig, ModelConfig, NetConfig, RuntimeConfig, TrainingConfig
from distspike.runtime import make_net

SIZES = (784, 300, 300, 10)


class NullRecorder:
    """Accepts messages and drops them: isolates the shell-side cost of logging."""

    every, capacity = 1, LoggingConfig().flush_rows
    _staged, sample_rows = (), None

    def keeps(self, sample: int) -> bool:
        return True

    def message(self, *message) -> None:
        pass

    def segments(self, *message) -> None:
        pass

    def take(self, *rows) -> None:
        pass

    def flush(self, wait: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def load_inputs(data_root: str | None, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """``(X, y, source)``: the first ``n`` MNIST training samples, or random stand-ins."""
    from distspike.data import default_data_root
    data_root = str(default_data_root()) if data_root is None else data_root
    if (Path(data_root) / "mnist").is_dir():
        from distspike.data import load_dataset
        data = load_dataset("mnist", data_root)
        return data.x_train[:n], data.y_train[:n], f"MNIST from {data_root}"
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, SIZES[0])), rng.integers(0, SIZES[-1], n), "random MNIST-like inputs"


def timed(net, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(wall, CPU) seconds of this process to train ``net`` on ``X, y``, waiting for pending actor calls."""
    t0, c0 = time.perf_counter(), time.process_time()
    for x, label in zip(X, y):
        net.train_sample(x, label)
    net.backend.spike_counts()  # Ray: a call to every actor, queued behind its work
    return time.perf_counter() - t0, time.process_time() - c0


def make_nets(cfg: NetConfig, runtime: RuntimeConfig, run_dir: Path) -> dict:
    """``off``, ``on`` (and ``control``, ``null`` in-process) nets of the same config."""
    if runtime.kind != "local":
        from distspike.runtime.ray_backend import start_ray
        start_ray(runtime, 64)  # logical CPUs for both nets' actors (they mostly wait); no-op if running
    nets = {"off": make_net(cfg, runtime)}
    if runtime.kind == "local":
        nets["control"] = make_net(cfg, runtime)
        nets["null"] = make_net(cfg, runtime, logging=LoggingConfig(), run_dir=str(run_dir / "null"))
        for _, shell in nets["null"].backend.shells():
            shell.recorder = NullRecorder()
    nets["on"] = make_net(cfg, runtime, logging=LoggingConfig(), run_dir=str(run_dir / "on"))
    return nets


def cast(nets: dict, recorders: dict, c: int) -> dict:
    """In-process: the net object playing each role in chunk ``c`` (role ``i`` on object ``i + c``),
    given the role's recorders (``recorders[role]``, one per shell, None without logging)."""
    objects = list(nets.values())
    out = {}
    for i, role in enumerate(nets):
        net = objects[(i + c) % len(objects)]
        for (_, shell), recorder in zip(net.backend.shells(), recorders[role]):
            shell.recorder = recorder
        out[role] = net
    return out


def interleave(nets: dict, X, y, warmup: int, chunk: int) -> tuple[dict[str, np.ndarray], float]:
    """Per-chunk (wall, CPU) seconds of each role over ``X[warmup:]``, shape (chunks, 2), and the wall
    seconds of the ``on`` net's final ``close()`` (included in its last chunk).

    Who goes first rotates; in-process the roles also rotate over the net objects (``cast``).
    """
    for net in nets.values():
        timed(net, X[:warmup], y[:warmup])  # numba compilation, caches, actor start
    local = all(hasattr(net.backend, "train_fused") for net in nets.values())
    recorders = {role: [sh.recorder for _, sh in net.backend.shells()] for role, net in nets.items()} if local else {}
    order, times, n = list(nets), {k: [] for k in nets}, len(nets)
    playing = nets
    for c, k in enumerate(range(warmup, len(X), chunk)):
        sl = slice(k, min(k + chunk, len(X)))
        if local:
            playing = cast(nets, recorders, c)
        first = (c // n) % n  # with the cast's period n: every role goes first on every object
        for name in order[first:] + order[:first]:
            times[name].append(timed(playing[name], X[sl], y[sl]))
    t0, c0 = time.perf_counter(), time.process_time()
    playing["on"].close()  # writes the last partial buffers: counted as logging time
    last = times["on"][-1]
    closing = time.perf_counter() - t0
    times["on"][-1] = (last[0] + closing, last[1] + time.process_time() - c0)
    return {k: np.array(v) for k, v in times.items()}, closing


CLOCKS = ("wall", "cpu")


def summarize(t: dict[str, np.ndarray], clock: int) -> dict:
    """Overhead of each net against ``off`` on one clock: per-chunk median, quartiles, extremes; total ratio."""
    out = {}
    for name in t:
        if name == "off":
            continue
        r = t[name][:, clock] / t["off"][:, clock] - 1
        q = np.percentile(r, [0, 25, 50, 75, 100])
        out[name] = {"median": q[2], "q1": q[1], "q3": q[3], "min": q[0], "max": q[4],
                     "total": t[name][:, clock].sum() / t["off"][:, clock].sum() - 1}
    return out


def run(rule: str, runtime: RuntimeConfig, X, y, warmup: int, chunk: int) -> dict:
    """Time ``off``/``null``/``on`` nets of one rule on one runtime; figures and log size."""
    from distspike.logs.traffic import part_files, read_traffic
    cfg = NetConfig(ModelConfig(SIZES), TrainingConfig(rule=rule))
    tmp = Path(tempfile.mkdtemp(prefix="bench_logging_"))
    nets = {}
    try:
        nets = make_nets(cfg, runtime, tmp)
        t, closing = interleave(nets, X, y, warmup, chunk)
        files = part_files(tmp / "on")
        rows = read_traffic(tmp / "on", columns=["sample"]).num_rows
        size = sum(p.stat().st_size for p in files)
    finally:
        for net in nets.values():
            net.close()
        shutil.rmtree(tmp, ignore_errors=True)
    samples = len(X) - warmup
    # in-process all work is this process's CPU time; on Ray the actors do it elsewhere: wall only
    clocks = CLOCKS if runtime.kind == "local" else CLOCKS[:1]
    return {"rule": rule, "runtime": f"{runtime.kind}:{runtime.shards}", "samples": samples,
            "chunks": len(t["off"]), "chunk": chunk, "off_wall": float(t["off"][:, 0].sum()),
            "over": {c: summarize(t, k) for k, c in enumerate(clocks)},
            "trained": len(X), "files": len(files), "rows": rows, "bytes": size, "close_s": closing,
            "on_wall": float(t["on"][:, 0].sum())}


def pct(x: float) -> str:
    return f"{100 * x:+.1f} %"


NET_NAMES = {"control": "logging off (a 2nd net: noise floor)", "null": "shell only (null recorder)",
             "on": "logging on"}


def lines(r: dict) -> list[str]:
    """The figures of one (rule, runtime) as Markdown table rows."""
    out = []
    for clock, over in r["over"].items():
        for name, o in over.items():
            out.append(f"| {r['runtime']} | {r['rule']} | {NET_NAMES[name]} | {clock} | **{pct(o['median'])}** | "
                       f"{pct(o['q1'])} .. {pct(o['q3'])} | {pct(o['min'])} .. {pct(o['max'])} | "
                       f"{pct(o['total'])} | {r['chunks']} x {r['chunk']} | {r['samples'] / r['off_wall']:.0f} |")
    return out


HEADER = ["| runtime:shards | rule | net (vs logging off) | clock | median overhead per chunk | quartiles | "
          "min .. max | ratio of totals | chunks x samples | samples/s (off, wall) |",
          "|---|---|---|---|---|---|---|---|---|---|"]


def report(results: list[dict], args, source: str) -> str:
    """Markdown: command, config, table, log sizes."""
    from report import machine
    cmd = "python benchmarks/bench_logging.py " + " ".join(shlex.quote(a) for a in args.argv)
    flush = LoggingConfig()
    text = [f"## Traffic logging overhead\n", machine(), "",
            f"Command: `{cmd.strip()}`", "",
            f"Config: {'-'.join(map(str, SIZES))}, T={TrainingConfig().steps}, BFS, float64, {source}; "
            f"`logging.every={flush.every}`, `logging.flush_rows={flush.flush_rows}` (default). "
            f"Nets with and without logging train the same samples in one process, in interleaved "
            f"chunks; overhead = time(net) / time(off) - 1 per chunk.", ""]
    text += HEADER + [row for r in results for row in lines(r)]
    text.append("")
    for r in results:
        text.append(f"- {r['runtime']} {r['rule']}: {r['rows']} rows ({r['rows'] / r['trained']:.0f} per sample, "
                    f"warm-up included) "
                    f"in {r['files']} part files, {r['bytes'] / 1e6:.1f} MB "
                    f"({r['bytes'] / max(r['rows'], 1):.1f} bytes per row); the final `close()` took "
                    f"{1e3 * r['close_s']:.0f} ms ({100 * r['close_s'] / r['on_wall']:.1f} % of the logging net's "
                    f"time, in its last chunk and its ratio of totals)")
    return "\n".join(text)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", default="sgd,fsgd", help="training rules, comma-separated")
    parser.add_argument("--samples", type=int, default=1500, help="timed samples per net in-process (0: skip)")
    parser.add_argument("--chunk", type=int, default=50, help="samples per turn (in-process)")
    parser.add_argument("--warmup", type=int, default=50,
                        help="untimed samples per net first (numba, caches, a first spill of the fused rows)")
    parser.add_argument("--ray-samples", type=int, default=0, help="timed samples per net on Ray (0: skip Ray)")
    parser.add_argument("--ray-chunk", type=int, default=10, help="samples per turn on Ray")
    parser.add_argument("--data", default=None,
                        help="data root holding mnist/ (default: $DISTSPIKE_DATA, else ~/.cache/distspike/data)")
    parser.add_argument("--write", action="store_true", help="write the figures to results/benchmarks.md")
    args = parser.parse_args(argv)
    args.argv = argv
    n = max(args.samples, args.ray_samples) + args.warmup
    X, y, source = load_inputs(args.data, n)
    plan = [(RuntimeConfig("local", 1), args.samples, args.chunk)] if args.samples else []
    if args.ray_samples:
        plan.append((RuntimeConfig("ray_local", 1), args.ray_samples, args.ray_chunk))
    results = []
    ray_tmp = tempfile.mkdtemp(prefix="dsray-bench-", dir="/tmp")
    if args.ray_samples:
        plan[-1] = (RuntimeConfig("ray_local", 1, temp_dir=ray_tmp), args.ray_samples, args.ray_chunk)
    for runtime, samples, chunk in plan:
        for rule in args.rules.split(","):
            m = samples + args.warmup
            results.append(run(rule, runtime, X[:m], y[:m], args.warmup, chunk))
            print("\n".join(lines(results[-1])), flush=True)
    if args.ray_samples:
        import ray
        ray.shutdown()  # the embedded instance this script started
    shutil.rmtree(ray_tmp, ignore_errors=True)
    text = report(results, args, source)
    print("\n" + text)
    if args.write:
        from report import write_section
        print(f"wrote section 'logging' of {write_section('logging', text)}")


if __name__ == "__main__":
    main()
