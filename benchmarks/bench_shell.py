"""Busy time of the real shells per training sample: in-process, across idle gaps, inside a Ray actor.

Not a test: measures and writes ``results/shell_busy.json`` (the cost model's work term,
``benchmarks/cost_model.py``). The scaling points' actors are busy 2-5x the kernels'
hot-loop cost (``bench_kernels.py``): this prices that work by measurement.

    taskset -c 0 python benchmarks/bench_shell.py [--width 5000] [--rules sgd,fsgd] [--shards 1,2,4,8]
        [--gap-ms 2] [--samples 20] [--repeats 3]

Per rule and shard count ``k``: the in-process runtime (``runtime=local``, the unfused
schedule: one ``Shell`` call per message, as each Ray actor gets) trains the MNIST
samples the scaling points train (``bench_cluster.py points``: 3 warm-up samples, then
``--repeats`` windows of ``--samples``), with a timer around every ``Shell`` message
method (``forward``, ``count``, ``gate``, ``backward``, ``end_sample``, ``penalize``):
the real deserialised-batch work (validation, kernels, SGD updates, counters), without
Ray. Per shell name: milliseconds per sample, median over windows, twice: ``busy_ms`` (wall
time) and ``cpu_busy_ms`` (the thread's CPU time, ``time.thread_time``), which the cost
model uses: pinned to one core that other processes share (the nice-19 trainings sit in
their own autogroup, so their nice value does not hold them back), the wall time also
counts the waits for the core. At width 20000 on 12-02 19:14 UTC that doubled it (busy
286 ms per sample against 145 ms of CPU, ``fsgd:1:20000``).

With ``k = 1`` (where the actor runs its messages alone, one stage at a time) the
same is measured twice more, alternating with the hot run (A B C A B C ...):

- ``gap``: a sleep of ``--gap-ms`` before every message (the stage latency an actor
  waits between its messages on the rig), not counted: what an idle gap costs the
  next message (caches, TLB, frequency);
- ``actor``: the same gapped run inside one Ray actor (an embedded instance, own temp
  dir, no dashboard): what the actor's process adds (Ray's threads, allocator).

``actor / hot`` is the model's factor from in-process shell work to an actor's busy
time (``ShardActor.busy`` times the same method bodies plus the message checks and
``assemble``, which the ``bench_kernels`` message overhead covers).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "shell_busy.json"
METHODS = ("forward", "count", "gate", "backward", "end_sample", "penalize")
WARMUP = 3


def timed_shells(gap_s: float):
    """Wrap ``Shell``'s message methods with a timer (and a sleep of ``gap_s`` before each, not timed);
    returns (busy seconds by shell name, this thread's CPU seconds by shell name, calls by shell name, undo).

    Busy is wall time (``perf_counter``): it also counts the time the thread waited for its core;
    the CPU seconds (``thread_time``) do not."""
    from distspike.runtime import shell as sh
    busy, cpu, calls, saved = collections.defaultdict(float), collections.defaultdict(float), collections.Counter(), {}
    for meth in METHODS:
        f = saved[meth] = getattr(sh.Shell, meth)

        def timed(self, *a, _f=f, **kw):
            if gap_s:
                time.sleep(gap_s)
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return _f(self, *a, **kw)
            finally:
                busy[self.name] += time.perf_counter() - t0
                cpu[self.name] += time.thread_time() - c0
                calls[self.name] += 1
        setattr(sh.Shell, meth, timed)

    def undo():
        for meth, f in saved.items():
            setattr(sh.Shell, meth, f)
    return busy, cpu, calls, undo


def measure(width: int, rule: str, shards: int, gap_ms: float, samples: int, repeats: int, data: str) -> dict:
    """Per shell: ms per sample (median over windows) of the unfused in-process runtime; spikes per sample."""
    from distspike.config import ModelConfig, NetConfig, RuntimeConfig, TrainingConfig
    from distspike.data import load_dataset
    from distspike.runtime import local, make_net
    ds = load_dataset("mnist", data)
    n = WARMUP + samples * repeats
    X, y = np.asarray(ds.x_train[:n], np.float64), np.asarray(ds.y_train[:n])
    cfg = NetConfig(ModelConfig((784, width, width, 10), 0.01, "float32"), TrainingConfig(rule=rule))
    fuse = local.LocalBackend.can_fuse
    local.LocalBackend.can_fuse = lambda self: False  # one Shell call per message, as the actors get
    busy, cpu, calls, undo = timed_shells(gap_ms * 1e-3)
    wins = []
    try:
        with make_net(cfg, RuntimeConfig("local", shards)) as net:
            for k in range(WARMUP):
                net.train_sample(X[k], y[k])
            for r in range(repeats):
                busy.clear(), cpu.clear(), calls.clear()
                s0, c0 = net.stats, time.process_time()
                for k in range(WARMUP + r * samples, WARMUP + (r + 1) * samples):
                    net.train_sample(X[k], y[k])
                s1 = net.stats
                wins.append({"busy_ms": {a: v / samples * 1e3 for a, v in busy.items()},
                             "cpu_busy_ms": {a: v / samples * 1e3 for a, v in cpu.items()},
                             "calls": {a: v / samples for a, v in calls.items()},
                             "cpu_ms": (time.process_time() - c0) / samples * 1e3,
                             "fwd": ((s1.fwd - s0.fwd) / samples).tolist(),
                             "passed": ((s1.err_passed - s0.err_passed) / samples).tolist()})
    finally:
        undo()
        local.LocalBackend.can_fuse = fuse
    med = {k: {a: float(np.median([w[k][a] for w in wins])) for a in wins[0][k]} for k in ("busy_ms", "cpu_busy_ms", "calls")}
    return {**med, "cpu_ms": float(np.median([w["cpu_ms"] for w in wins])),
            "fwd": np.median([w["fwd"] for w in wins], axis=0).tolist(),
            "passed": np.median([w["passed"] for w in wins], axis=0).tolist(), "windows": wins}


def in_actor(*args) -> dict:
    """``measure(*args)`` inside one Ray actor of an embedded instance (started here, own temp dir)."""
    import ray
    from distspike.config import RuntimeConfig
    from distspike.runtime.ray_backend import start_ray

    @ray.remote(num_cpus=0)
    class Runner:
        def run(self, *a):
            sys.path.insert(0, str(ROOT / "benchmarks"))
            import bench_shell
            return bench_shell.measure(*a)

    owns = start_ray(RuntimeConfig("ray_local", 1, temp_dir=tempfile.mkdtemp(prefix="dsr-shell-", dir="/tmp")), 1)
    try:
        runner = Runner.remote()
        return ray.get(runner.run.remote(*args))
    finally:
        if owns:
            ray.shutdown()


def work_ms(rec: dict) -> dict[str, float]:
    """ms per sample by shell: the shells' CPU seconds where measured (a record of before they were: wall)."""
    return rec.get("cpu_busy_ms") or rec["busy_ms"]


def total(rec: dict) -> float:
    return sum(work_ms(rec).values())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=5000)
    ap.add_argument("--rules", default="sgd,fsgd")
    ap.add_argument("--shards", default="1,2,4,8")
    ap.add_argument("--gap-ms", type=float, default=2.0)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="A B C rounds of the hot / gap / actor comparison")
    ap.add_argument("--no-actor", action="store_true", help="skip the gap and actor runs")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args(argv)
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    stamp = {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_start": os.getloadavg()[0],
             "cpus": sorted(os.sched_getaffinity(0))}
    for rule in args.rules.split(","):
        for k in map(int, args.shards.split(",")):
            a = (args.width, rule, k)
            rec = {**stamp, "hot": measure(*a, 0.0, args.samples, args.repeats, args.data)}
            print(f"{rule} k={k} width {args.width}: hot {total(rec['hot']):.2f} CPU ms/sample "
                  f"(wall {sum(rec['hot']['busy_ms'].values()):.2f}) "
                  + " ".join(f"{n}={v:.2f}" for n, v in sorted(work_ms(rec["hot"]).items())), flush=True)
            if k == 1 and not args.no_actor:
                rounds = {"hot": [total(rec["hot"])], "gap": [], "actor": []}
                for r in range(args.rounds):
                    if r:
                        rounds["hot"].append(total(measure(*a, 0.0, args.samples, args.repeats, args.data)))
                    g = measure(*a, args.gap_ms, args.samples, args.repeats, args.data)
                    rounds["gap"].append(total(g))
                    act = in_actor(*a, args.gap_ms, args.samples, args.repeats, args.data)
                    rounds["actor"].append(total(act))
                    rec["gap"], rec["actor"] = g, act
                    print(f"  round {r}: hot {rounds['hot'][-1]:.2f} gap {rounds['gap'][-1]:.2f} "
                          f"actor {rounds['actor'][-1]:.2f} ms/sample", flush=True)
                rec["rounds"] = rounds
                rec["gap_ms"] = args.gap_ms
                rec["gap_factor"] = float(np.median(rounds["gap"]) / np.median(rounds["hot"]))
                rec["actor_factor"] = float(np.median(rounds["actor"]) / np.median(rounds["hot"]))
                print(f"  gap / hot {rec['gap_factor']:.3f}, actor / hot {rec['actor_factor']:.3f}", flush=True)
            old[f"{rule}:{k}:{args.width}"] = rec
            OUT.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
