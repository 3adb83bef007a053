"""What one dependent Ray actor call costs here: the floor under every Ray figure of distspike.

Not a test: prints figures (and writes them to ``results/benchmarks.md`` with ``--write``).
On the embedded instance distspike starts (``start_ray``: loopback, no dashboard, own
temp dir), with echo actors that do no work:

- **plain calls**: a chain of 8 calls, each passing the previous call's result (a ref) to
  the next actor, as the scheduler chains a sample's messages; median time per hop over
  repeated chains, for payloads around Ray's inline limit (results under
  ``max_direct_call_object_size``, 100 KB by default, travel inside the reply; larger ones
  through the object store);
- **compiled graph**: the same chain bound once as a Ray Compiled Graph
  (``runtime.compiled=true``): actors hand values over through shared-memory channels;
- **idle compiled graph**: CPU seconds its actors burn per second while no execution is
  in flight (Linux ``/proc``): its channel reads busy-wait.

A training sample's critical path is a chain of such hops (about 9 per sample for SGD,
about 8 per time step for FSGD), so these figures bound the Ray runtime's samples/s from
above on this machine, whatever the kernels cost.

    python benchmarks/bench_hops.py [--sizes-kb 1,40,90,160,400] [--chains 30] [--write]
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

from distspike.config import RuntimeConfig
from distspike.runtime.ray_backend import start_ray

HOPS = 8  # calls per chain
ACTORS = 4  # echo actors the plain chain cycles through


@ray.remote(num_cpus=0)
class Echo:
    """Returns what it is sent; ``pid`` for the CPU reading."""

    def echo(self, x):
        return x

    def pid(self) -> int:
        return os.getpid()


def plain_hop_ms(actors: list, payload: np.ndarray, chains: int) -> float:
    """Median wall time per hop of ``chains`` chains of ``HOPS`` dependent calls, in ms."""
    times = []
    for _ in range(chains + 2):  # the first two warm up
        t0 = time.perf_counter()
        ref = payload
        for k in range(HOPS):
            ref = actors[k % len(actors)].echo.remote(ref)
        ray.get(ref)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[2:])) / HOPS * 1e3


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seconds_per_execution(graph, executions: int) -> float:
    """Wall seconds per ``graph.execute`` of a compiled graph, after 5 untimed executions."""
    for _ in range(5):
        ray.get(graph.execute(1))
    t0 = time.perf_counter()
    for _ in range(executions):
        ray.get(graph.execute(1))
    return (time.perf_counter() - t0) / executions


def compiled_figures(actors: list, pids: list[int], executions: int, idle_s: float) -> tuple[float, float | None]:
    """(ms per hop of a compiled chain through ``actors`` (processes ``pids``), CPU s/s they burn while the
    graph idles, or None without ``/proc``)."""
    from ray.dag import InputNode
    with InputNode() as inp:
        node = inp
        for actor in actors:
            node = actor.echo.bind(node)
    graph = node.experimental_compile()
    try:
        hop = seconds_per_execution(graph, executions) / len(actors) * 1e3
        idle = None
        if Path("/proc/self/stat").exists():
            before = [cpu_seconds(p) for p in pids]
            time.sleep(idle_s)
            idle = sum(cpu_seconds(p) - b for p, b in zip(pids, before)) / idle_s
        return hop, idle
    finally:
        graph.teardown()


def report(plain: list[tuple[int, float]], hop_c: float, idle: float | None, n_compiled: int, args) -> str:
    from report import machine
    cmd = "python benchmarks/bench_hops.py " + " ".join(shlex.quote(a) for a in args.argv)
    lines = ["## Ray hop cost (the floor under the Ray runtime's figures)\n", machine(), "",
             f"Command: `{cmd.strip()}`", "",
             f"Embedded instance (`start_ray`), echo actors doing no work: median time per hop of chains of "
             f"{HOPS} dependent calls (each passes its result, a ref, to the next actor), {args.chains} chains "
             f"per payload.", "",
             "| hop | payload | ms per hop |", "|---|---:|---:|"]
    lines += [f"| plain actor call | {kb} KB | {ms:.2f} |" for kb, ms in plain]
    lines.append(f"| compiled graph ({n_compiled} actors, `runtime.compiled=true`) | 8 bytes | {hop_c:.2f} |")
    lines.append("")
    if idle is not None:
        lines.append(f"- An idle compiled graph's {n_compiled} actors burned {idle:.2f} CPU-seconds per second "
                     f"({os.cpu_count()} cores here): their channel reads busy-wait.")
    lines.append("- Results over Ray's inline limit (`max_direct_call_object_size`, 100 KB by default) go "
                 "through the object store, which shows as the step between 90 and 160 KB.")
    return "\n".join(lines)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-kb", default="1,40,90,160,400", help="payload sizes of the plain chain, KB")
    parser.add_argument("--chains", type=int, default=30, help="chains timed per payload")
    parser.add_argument("--executions", type=int, default=200, help="compiled-graph executions timed")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds the compiled graph idles while its CPU is read")
    parser.add_argument("--write", action="store_true", help="write the figures to results/benchmarks.md")
    args = parser.parse_args(argv)
    args.argv = argv
    sizes = [int(s) for s in args.sizes_kb.split(",")]
    tmp = tempfile.mkdtemp(prefix="dsray-hops-", dir="/tmp")
    started = start_ray(RuntimeConfig("ray_local", 1, temp_dir=tmp), ACTORS + 1)
    try:
        actors = [Echo.remote() for _ in range(ACTORS + 1)]
        pids = ray.get([a.pid.remote() for a in actors])
        plain = []
        for kb in sizes:
            plain.append((kb, plain_hop_ms(actors[:ACTORS], np.zeros(kb * 1024, np.uint8), args.chains)))
            print(f"plain actor call, {kb:4d} KB: {plain[-1][1]:.2f} ms per hop", flush=True)
        hop_c, idle = compiled_figures(actors, pids, args.executions, args.idle)
        print(f"compiled graph: {hop_c:.2f} ms per hop; idle: "
              f"{'-' if idle is None else f'{idle:.2f} CPU-s per s'}", flush=True)
    finally:
        if started:
            ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    text = report(plain, hop_c, idle, len(actors), args)
    print("\n" + text)
    if args.write:
        from report import write_section
        print(f"wrote section 'hops' of {write_section('hops', text)}")


if __name__ == "__main__":
    main()
