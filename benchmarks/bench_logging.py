"""Overhead of the per-actor traffic logs on in-process training (goal: < 5 %).

Trains identical in-process nets (same config, seed and samples, hence the same
spikes and the same work) side by side in one process:

- ``off``:  logging off;
- ``null``: every shell has a recorder whose ``record`` does nothing, i.e. only the
  shell's per-message bookkeeping (``Shell._log``: timing, counting events and bytes);
- ``on``:   ``LoggingConfig()`` (default flush policy) writing Parquet to a temporary run dir.

Chunks of samples rotate over the nets (and their order) so that machine noise hits
all alike. Overheads are ``time(net) / time(off) - 1`` over all chunks (and the median
over chunks); ``on - null`` is the recorder's own share (buffering + Parquet writes).

    python benchmarks/bench_logging.py [--samples 1000] [--chunk 50] [--shards 1] [--proposed-shell-log]

``--proposed-shell-log`` swaps in a cheaper ``Shell._log`` (a proposal for
``distspike/runtime/shell.py``, see ``proposed_log``) to measure what it would save.
Uses MNIST from ``--data`` (``/work/shared/data``) when present, else random
MNIST-like inputs (784 features in [0, 1], 10 classes).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from distspike.config import LoggingConfig, ModelConfig, NetConfig, TrainingConfig
from distspike.runtime.local import local_net

SIZES = (784, 300, 300, 10)


class NullRecorder:
    """Accepts rows and drops them: isolates the shell-side cost of logging."""

    def keeps(self, sample: int) -> bool:
        return True

    def record(self, *row) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def proposed_log(self, direction, batch, out, t0) -> None:
    """A cheaper ``Shell._log``: counts positive signs with ``bytes.count`` (no temporary array)."""
    from distspike.runtime.shell import EVENT_BYTES, HEADER_BYTES
    rec = self.recorder
    if rec is None:
        return
    seconds = time.perf_counter() - t0
    n_in = batch.idx.shape[0]
    if out is None:
        rec.record(direction, *self.position, n_in, 0, 0, HEADER_BYTES + EVENT_BYTES * n_in, 0, seconds)
        return
    n_out = out.idx.shape[0]
    pos = out.sign.tobytes().count(1) if n_out else 0
    rec.record(direction, *self.position, n_in, pos, n_out - pos, HEADER_BYTES + EVENT_BYTES * n_in,
               HEADER_BYTES + EVENT_BYTES * n_out, seconds)


def load_inputs(data_root: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``(X, y, source)``: the first ``n`` MNIST training samples, or random stand-ins."""
    if (Path(data_root) / "mnist").is_dir():
        from distspike.data import load_dataset
        data = load_dataset("mnist", data_root)
        return data.x_train[:n], data.y_train[:n], f"MNIST from {data_root}"
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, SIZES[0])), rng.integers(0, SIZES[-1], n), "random MNIST-like inputs"


def timed(net, X: np.ndarray, y: np.ndarray) -> float:
    t0 = time.perf_counter()
    for x, label in zip(X, y):
        net.train_sample(x, label)
    return time.perf_counter() - t0


def make_nets(cfg: NetConfig, shards: int, run_dir: Path) -> dict:
    nets = {"off": local_net(cfg, shards=shards),
            "null": local_net(cfg, shards=shards, logging=LoggingConfig(), run_dir=str(run_dir / "null")),
            "on": local_net(cfg, shards=shards, logging=LoggingConfig(), run_dir=str(run_dir / "on"))}
    for _, shell in nets["null"].backend.shells():
        shell.recorder = NullRecorder()
    return nets


def run(samples: int, chunk: int, warmup: int, shards: int, data_root: str, seed: int = 0) -> dict:
    X, y, source = load_inputs(data_root, samples + warmup, seed)
    cfg = NetConfig(ModelConfig(SIZES), TrainingConfig())
    tmp = Path(tempfile.mkdtemp(prefix="bench_logging_"))
    nets = make_nets(cfg, shards, tmp)
    times = {k: [] for k in nets}
    try:
        for net in nets.values():
            timed(net, X[:warmup], y[:warmup])  # numba compilation, caches
        order = list(nets)
        for c, k in enumerate(range(warmup, warmup + samples, chunk)):
            sl = slice(k, min(k + chunk, warmup + samples))
            for name in order[c % 3:] + order[:c % 3]:  # rotate who goes first
                times[name].append(timed(nets[name], X[sl], y[sl]))
        t0 = time.perf_counter()
        nets["on"].close()  # writes the last partial buffers: counted as logging time
        times["on"][-1] += time.perf_counter() - t0
        from distspike.logs.traffic import part_files, read_traffic
        files, rows = len(part_files(tmp / "on")), read_traffic(tmp / "on", columns=["sample"]).num_rows
    finally:
        for net in nets.values():
            net.close()
        shutil.rmtree(tmp, ignore_errors=True)
    t = {k: np.array(v) for k, v in times.items()}
    over = {k: t[k].sum() / t["off"].sum() - 1 for k in ("null", "on")}
    median = {k: float(np.median(t[k] / t["off"] - 1)) for k in ("null", "on")}
    return {"source": source, "samples": samples, "shards": shards, "seconds": {k: v.sum() for k, v in t.items()},
            "overhead": over, "median": median, "files": files, "rows": rows}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1000, help="timed samples per net")
    parser.add_argument("--chunk", type=int, default=50, help="samples per turn")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--data", default="/work/shared/data", help="data root holding mnist/")
    parser.add_argument("--proposed-shell-log", action="store_true", help="measure with proposed_log as Shell._log")
    args = parser.parse_args(argv)
    if args.proposed_shell_log:
        from distspike.runtime.shell import Shell
        Shell._log = proposed_log
    r = run(args.samples, args.chunk, args.warmup, args.shards, args.data)
    s, o, m = r["seconds"], r["overhead"], r["median"]
    print(f"{SIZES} net, {r['samples']} samples, shards={r['shards']}, {r['source']}"
          + (", proposed Shell._log" if args.proposed_shell_log else ""))
    print(f"logging off : {s['off']:.2f} s ({r['samples'] / s['off']:.1f} samples/s)")
    print(f"null record : {s['null']:.2f} s  shell-side overhead {100 * o['null']:+.2f} % "
          f"(median {100 * m['null']:+.2f} %)")
    print(f"logging on  : {s['on']:.2f} s  total overhead      {100 * o['on']:+.2f} % "
          f"(median {100 * m['on']:+.2f} %)")
    print(f"recorder share (on - null): {100 * (o['on'] - o['null']):+.2f} % of training time; "
          f"{r['rows']} rows in {r['files']} files ({r['rows'] / r['samples']:.0f} rows/sample)")


if __name__ == "__main__":
    main()
