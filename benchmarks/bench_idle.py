"""CPU that an idle Ray Compiled Graph actor burns while it waits for input (does the channel read busy-wait?).

Not a test: prints figures. On an embedded instance (``start_ray``), one echo actor is
bound into a compiled graph, executed a few times, then left waiting for ``--idle``
seconds while its process's user and system CPU seconds and context switches are
read from ``/proc``. ``--strace`` also counts its system calls for 2 s (``strace -c
-f``): a read-acquire loop that spins shows as ~10^5 ``sched_yield`` calls per second.
``--env NAME=VALUE`` repeats the measurement with that setting in the environment of
the driver and the actor (e.g. ``RAY_CGRAPH_read_iteration_timeout_s=1``).
``--beside 1,2,4``: how much slower a compute loop runs on one core beside that many
idle compiled-graph actors pinned to the same core, as the share of the core its thread gets (thread CPU
per wall second) alone over beside them (the cost model's contention of
spinning actors; ``slowdown`` 1.0 = as fast as alone).

On the emulated rig, across a node boundary: ``BENCH_IDLE_ADDRESS=<rig address>
BENCH_IDLE_RESOURCE=node_1 launch/emulated_cluster.sh --dir D run -- .venv/bin/python
benchmarks/bench_idle.py ...`` (the actors on node 1, the driver in the rig's driver namespace; every
process is on this machine, so ``/proc`` and affinities reach them).
``BENCH_IDLE_DETAIL=1`` also prints, per ``m``, the loop's share alone before, beside and alone after,
and the spinners' own CPU per second with each busy thread's last CPU and allowed CPUs.

    python benchmarks/bench_idle.py [--idle 3] [--strace] [--env RAY_CGRAPH_read_iteration_timeout_s=1] [--beside 1,2,4]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMON = r"""
import json, os, subprocess, sys, tempfile, time
import numpy as np
import ray
from ray.dag import InputNode
from distspike.config import RuntimeConfig
from distspike.runtime.ray_backend import start_ray

@ray.remote(num_cpus=0)
class Echo:
    def echo(self, x):
        return x
    def pid(self):
        return os.getpid()

def connect(tmp):
    # an existing cluster (BENCH_IDLE_ADDRESS, e.g. the emulated rig) or an embedded instance
    addr = os.environ.get("BENCH_IDLE_ADDRESS")
    if addr:
        ray.init(address=addr, include_dashboard=False, logging_level="ERROR")
    else:
        start_ray(RuntimeConfig("ray_local", 1, temp_dir=tmp), 2)

def make_echo():
    # on the node holding BENCH_IDLE_RESOURCE (e.g. node_1: a channel across a node boundary), else anywhere
    res = os.environ.get("BENCH_IDLE_RESOURCE")
    return (Echo.options(resources={res: 0.001}) if res else Echo).remote()

"""

CHILD = COMMON + r"""
def ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]), int(f[12])

def switches(pid):
    n = [0, 0]
    for t in os.listdir(f"/proc/{pid}/task"):
        for line in open(f"/proc/{pid}/task/{t}/status"):
            if line.startswith("voluntary_ctxt"):
                n[0] += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt"):
                n[1] += int(line.split()[1])
    return n

idle, do_strace = float(sys.argv[1]), sys.argv[2] == "1"
tmp = tempfile.mkdtemp(prefix="dsr-idle-", dir="/tmp")
connect(tmp)
actor = make_echo()
pid = ray.get(actor.pid.remote())
with InputNode() as inp:
    node = actor.echo.bind(inp)
graph = node.experimental_compile()
for _ in range(5):
    ray.get(graph.execute(1))
time.sleep(0.5)
def machine_busy():
    # non-idle jiffies of the whole machine (user nice system irq softirq steal)
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(f) - f[3] - f[4]

(u0, s0), c0, m0, t0 = ticks(pid), switches(pid), machine_busy(), time.monotonic()
time.sleep(idle)
(u1, s1), c1, m1, dt = ticks(pid), switches(pid), machine_busy(), time.monotonic() - t0
hz = os.sysconf("SC_CLK_TCK")
out = {"user": (u1 - u0) / hz / dt, "sys": (s1 - s0) / hz / dt,
       "voluntary_per_s": (c1[0] - c0[0]) / dt, "involuntary_per_s": (c1[1] - c0[1]) / dt,
       "machine_cores": (m1 - m0) / hz / dt}
if do_strace:
    done = subprocess.run(["timeout", "2", "strace", "-c", "-f", "-p", str(pid)], capture_output=True, text=True)
    rows = [l.split() for l in done.stderr.splitlines() if l.strip() and l.split()[0][0].isdigit()]
    out["syscalls_2s"] = {r[-1]: int(r[3]) for r in rows if len(r) >= 5}
graph.teardown()
ray.shutdown()
print("RESULT " + json.dumps(out))
"""


BESIDE = COMMON + r"""
def loop_rate(seconds=1.0):
    # the share of its core the loop got: its thread's CPU seconds per wall second (a rate per wall
    # second would also carry the clock and cache noise of this shared machine)
    a = np.ones(200_000, np.float32)
    t0, c0 = time.perf_counter(), time.thread_time()
    while time.perf_counter() - t0 < seconds:
        a += 1.0
    return (time.thread_time() - c0) / (time.perf_counter() - t0)

def busy_threads(pids):
    # {(pid, tid): (cpu ticks, last cpu, allowed cpus)} of every thread of these processes
    out = {}
    for pid in pids:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                f = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
                allowed = next(l.split()[1] for l in open(f"/proc/{pid}/task/{t}/status")
                               if l.startswith("Cpus_allowed_list"))
            except (OSError, StopIteration):
                continue
            out[(pid, t)] = (int(f[11]) + int(f[12]), int(f[36]), allowed)
    return out

counts = [int(m) for m in sys.argv[1].split(",")]
cpu = min(os.sched_getaffinity(0))
tmp = tempfile.mkdtemp(prefix="dsr-idle-", dir="/tmp")
connect(tmp)
os.sched_setaffinity(0, {cpu})
time.sleep(3.0)  # let Ray's daemons and the first workers settle before the loop is timed alone
hz = os.sysconf("SC_CLK_TCK")
out, detail = {}, {}
for m in counts:
    actors = [make_echo() for _ in range(m)]
    # every thread of the actor (the channel-reading thread the graph starts later inherits it)
    pin = lambda self, c=cpu: [os.sched_setaffinity(int(t), {c}) for t in os.listdir("/proc/self/task")]
    ray.get([a.__ray_call__.remote(pin) for a in actors])
    pids = ray.get([a.__ray_call__.remote(lambda self: os.getpid()) for a in actors])
    alone_before = loop_rate()
    with InputNode() as inp:
        node = inp
        for a in actors:
            node = a.echo.bind(node)
    graph = node.experimental_compile()
    for _ in range(3):
        ray.get(graph.execute(1))
    time.sleep(0.5)
    b0, t0 = busy_threads(pids), time.perf_counter()
    beside = loop_rate()
    b1, dt = busy_threads(pids), time.perf_counter() - t0
    graph.teardown()
    time.sleep(0.5)
    alone_after = loop_rate()
    spin = [[(b1[k][0] - b0[k][0]) / hz / dt, b1[k][1], b1[k][2]] for k in b1 if k in b0]
    hot = [s for s in spin if s[0] > 0.05]
    out[str(m)] = (alone_before + alone_after) / 2 / beside
    detail[str(m)] = {"share_alone_before": round(alone_before, 3), "share_beside": round(beside, 3), "share_alone_after": round(alone_after, 3),
                      "spinner_cpu_s_per_s": round(sum(s[0] for s in hot), 3),
                      "spinner_threads": [[round(s[0], 3), s[1], s[2]] for s in hot]}
    for a in actors:
        ray.kill(a)
ray.shutdown()
print("DETAIL " + json.dumps(detail))
print("RESULT " + json.dumps(out))
"""


def slowdown_beside(counts: list[int]) -> dict[str, float]:
    """``{m: slowdown}`` of a compute loop on one core beside ``m`` idle compiled actors on that core."""
    done = subprocess.run([sys.executable, "-c", BESIDE, ",".join(map(str, counts))], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"probe failed: {done.stderr.strip().splitlines()[-1:]}")
    detail = next((l for l in done.stdout.splitlines() if l.startswith("DETAIL ")), None)
    if detail and os.environ.get("BENCH_IDLE_DETAIL"):
        print(detail, file=sys.stderr)
    return json.loads(line[len("RESULT "):])


def measure(idle: float, strace: bool, env: dict[str, str]) -> dict:
    """Run the probe in a fresh interpreter (so the settings in ``env`` reach Ray's import); its figures."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(idle), "1" if strace else "0"], capture_output=True,
                          text=True, env={**os.environ, **env}, cwd=ROOT, timeout=300)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"probe failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(line[len("RESULT "):])


def idle_cpu_per_actor(idle: float = 3.0) -> float:
    """CPU seconds per second one idle compiled-graph actor burns, with Ray's default settings."""
    r = measure(idle, False, {})
    return r["user"] + r["sys"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=float, default=3.0)
    ap.add_argument("--strace", action="store_true")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE, measured after the default")
    ap.add_argument("--beside", default="", help="M,M,...: slowdown of a loop beside M idle compiled actors")
    args = ap.parse_args(argv)
    if args.beside:
        for m, f in slowdown_beside([int(m) for m in args.beside.split(",")]).items():
            print(f"a compute loop beside {m} idle compiled actor(s) on its core: {f:.2f}x as slow as alone")
    for setting in [None, *args.env]:
        env = dict([setting.split("=", 1)]) if setting else {}
        r = measure(args.idle, args.strace, env)
        calls = r.get("syscalls_2s", {})
        top = ", ".join(f"{k} {v}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:4])
        print(f"{setting or 'defaults'}: idle compiled actor burns {r['user'] + r['sys']:.2f} CPU-s/s "
              f"(user {r['user']:.2f}, sys {r['sys']:.2f}); context switches/s {r['voluntary_per_s']:.0f} "
              f"voluntary, {r['involuntary_per_s']:.0f} involuntary; the whole machine {r.get('machine_cores', 0):.2f} cores busy" + (f"; syscalls in 2 s: {top}" if top else ""),
              flush=True)


if __name__ == "__main__":
    main()
