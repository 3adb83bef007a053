"""Sharded training on the emulated cluster: hop cost across nodes, and the scaling points of issue 20.

Not a test: measures and appends JSON to ``results/``. Runs as a Ray driver inside a
running rig (``launch/emulated_cluster.sh``), in its driver namespace:

    launch/emulated_cluster.sh start 2 --mem-mb 4096 --object-store-mb 300
    launch/emulated_cluster.sh run -- .venv/bin/python benchmarks/bench_cluster.py hops --nodes 2
    launch/emulated_cluster.sh run -- .venv/bin/python benchmarks/bench_cluster.py points --nodes 2 \\
        --width 5000 --points sgd:1:plain,sgd:2:compiled --samples 20 --repeats 3

``hops``: chains of 8 dependent *stages* of echo actors (no work), ``fan`` actors per
stage, each receiving the refs of all actors of the stage before (as a layer's shards
receive every shard of the layer before), consecutive stages on different nodes where
the rig has more than one (``--nodes``); median ms per stage for plain calls (per
payload) and for a compiled graph, plus the echo actors' CPU per call. Written to
``results/cluster_hops.json`` under key ``nodes=<N>`` (the cost model's hop constants,
``benchmarks/cost_model.py``).

``points``: 784-w-w-10 float32, T=10, BFS, held errors; per point ``rule:shards:mode``
one net (``mode`` plain or compiled: ``runtime.compiled=false|true``), warm-up samples,
then ``--repeats`` windows of ``--samples`` MNIST samples. Placement: actor
``<kind>.<layer>.<shard>`` asks for ``node_<(shard + layer) mod N>`` (layers rotate
over the nodes, so even with one shard every forward hop crosses a node boundary when
N > 1). Per window: wall seconds per sample; each actor's CPU seconds (``/proc``: the
rig's nodes share this machine's pid namespace) and busy seconds (time inside messages,
``ShardActor.busy``); the critical path as the sum over (kind, layer) of the busiest
shard's busy seconds, by wall clock (``crit_busy``: it counts a shard's waits for a core that
other processes share) and by the applying thread's CPU clock (``crit_cpu``: the work the
cost model predicts); for plain calls also ``ray.timeline()``'s union of the actors'
task intervals (time some actor was executing) and the driver's CPU. Before and after the
windows (actors idle), ``core_share``: the share of a core that 1 and 2 processes spinning at
once got (the slower one), what the machine's other load left to a stage's shards. Spikes per sample
(forward per layer, errors passed per layer) feed the model's work term. One JSON
line per point (medians over windows, and every window) is appended to
``results/scaling_points.jsonl`` (``--out``) with the time it was measured.

The same ``points`` on 784-100-100-10 (``--width 100 --out results/gap_points.jsonl``)
are the cost model's scheduler microbenchmark: the real driver, scheduler, messages and
actors with kernels that cost next to nothing, so that ``wall - busy critical path``
is what a stage costs beyond its work.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hops import cpu_seconds, seconds_per_execution  # noqa: E402
from cost_model import PROBE_WIDTH  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
HOPS_JSON = RESULTS / "cluster_hops.json"
POINTS_JSONL = RESULTS / "scaling_points.jsonl"
STAGES = 8


# -- shared helpers ---------------------------------------------------------------------
def memory_of(pid: int) -> dict[str, float]:
    """Resident and transparent-huge-page memory of process ``pid`` in MiB, and its minor and major
    page faults so far (``/proc/<pid>/smaps_rollup`` and ``stat``): whether its weight blocks got huge pages."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "AnonHugePages"):
            out[key.lower() + "_mb"] = round(int(rest.split()[0]) / 1024, 1)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    out["minflt"], out["majflt"] = int(fields[7]), int(fields[9])
    return out


def pid_of(actor) -> int:
    return ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return done.stdout.strip() or "?"


def stamp() -> dict:
    return {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit(),
            "load_start": round(os.getloadavg()[0], 2), "cpus": len(os.sched_getaffinity(0))}


def _spin(seconds: float, out, start) -> None:
    """(In a child process.) Spin for ``seconds`` of wall time once all have started; put this thread's CPU
    over wall time."""
    start.wait()
    t0, c0 = time.perf_counter(), time.thread_time()
    while time.perf_counter() - t0 < seconds:
        pass
    out.put((time.thread_time() - c0) / (time.perf_counter() - t0))


def core_share(procs: int, seconds: float = 1.0) -> float:
    """The share of a core the slower of ``procs`` processes spinning at once got (CPU over wall seconds): what
    the machine's other load (other sessions' processes, nice-19 trainings in their own autogroups) leaves to
    ``procs`` shards of a stage working at once."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")  # no fork of a Ray driver's threads
    out, start = ctx.Queue(), ctx.Barrier(procs)
    ps = [ctx.Process(target=_spin, args=(seconds, out, start)) for _ in range(procs)]
    for q in ps:
        q.start()
    got = [out.get() for _ in ps]
    for q in ps:
        q.join()
    return min(1.0, min(got))


def probe_shares(counts=(1, 2), seconds: float = 1.0) -> dict[str, float]:
    """``core_share`` for each process count (keys as strings, for JSON)."""
    return {str(n): round(core_share(n, seconds), 3) for n in counts}


def stream_gbs(mb: int = 256, seconds: float = 0.5) -> float:
    """GB/s of one thread copying a ``mb`` MiB array (read + write), far larger than the caches: what the
    machine's memory gave one stream just then (a cloud VM's memory bandwidth moves with its neighbours'
    load, which ``core_share`` does not see)."""
    a = np.ones(mb << 18, np.float32)
    b = np.empty_like(a)
    np.copyto(b, a)  # fault the pages in
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        np.copyto(b, a)
        n += 1
    return round(2 * a.nbytes * n / (time.perf_counter() - t0) / 1e9, 2)


def kernel_ns(width: int = PROBE_WIDTH, seconds: float = 0.5) -> float:
    """CPU ns per element of the forward herding kernel on a ``784 x width`` float32 block, this process
    (``bench_kernels.ns_per_element``, the cost model's ``row_ns``): the machine's speed beside a point,
    to compare with the calibration's (this machine's has moved by up to 2x within hours)."""
    from bench_kernels import ns_per_element
    return round(ns_per_element(width, np.float32, seconds)[0], 4)


def _shell_child(args: tuple, out) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_shell import measure
    rec = measure(*args)
    out.put({k: rec[k] for k in ("cpu_busy_ms", "busy_ms", "calls", "fwd", "passed")})


def shell_probe(width: int, rule: str, shards: int, samples: int, data: str) -> dict:
    """The cost model's work term measured beside a point: ``bench_shell.measure`` (the in-process shells
    of ``runtime=local``, unfused, hot, one window of ``samples`` after the same warm-up samples, CPU ms per
    sample by shell name) in a spawned child, so its own copy of the blocks is freed before the windows
    and the driver's memory does not grow. Where the machine's speed drifts between calibration and a
    point (this VM's has moved by up to 2x within hours), this is the calibration's ``shell_ms`` taken
    again at the point's own hour (``cost_model.py compare --beside``)."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")  # no fork of a Ray driver's threads
    out = ctx.Queue()
    child = ctx.Process(target=_shell_child, args=((width, rule, shards, 0.0, samples, 1, data), out))
    child.start()
    rec = out.get()
    child.join()
    return rec


# -- hops ---------------------------------------------------------------------------------
@ray.remote(num_cpus=0)
class Echo:
    """Returns the first thing it is sent."""

    def echo(self, *xs):
        return xs[0]


def echo_sets(fan: int, nodes: int) -> list[list]:
    """Two sets of ``fan`` echo actors, set ``j`` on node ``j mod nodes`` (stages alternate sets)."""
    return [[Echo.options(resources={f"node_{j % nodes}": 0.001}).remote() for _ in range(fan)] for j in range(2)]


def plain_stage_ms(sets: list[list], payload: np.ndarray, chains: int) -> float:
    """Median ms per stage of ``chains`` chains of ``STAGES`` dependent stages (2 warm-up chains)."""
    times = []
    for _ in range(chains + 2):
        t0 = time.perf_counter()
        refs = [ray.put(payload)]
        for s in range(STAGES):
            refs = [a.echo.remote(*refs) for a in sets[s % 2]]
        ray.get(refs)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[2:])) / STAGES * 1e3


def compiled_stage_ms(sets: list[list], executions: int) -> float:
    """Mean ms per stage of a compiled graph of the same chain (8-byte payload)."""
    from ray.dag import InputNode, MultiOutputNode
    with InputNode() as inp:
        nodes = [inp]
        for s in range(STAGES // 2):  # an actor appears once per graph: two sets give two stages
            for group in sets:
                nodes = [a.echo.bind(*nodes) for a in group]
        dag = MultiOutputNode(nodes)
    graph = dag.experimental_compile()
    try:
        return seconds_per_execution(graph, executions) / (2 * (STAGES // 2)) * 1e3
    finally:
        graph.teardown()


def hops(args) -> None:
    """Measure the stage latencies for each fan-out and payload; merge them into ``HOPS_JSON``."""
    out = {**stamp(), "nodes": args.nodes, "stages": STAGES, "plain_ms": {}, "compiled_ms": {}, "call_cpu_ms": {}}
    for fan in map(int, args.fans.split(",")):
        sets = echo_sets(fan, args.nodes)
        actors = [a for s in sets for a in s]
        pids = [pid_of(a) for a in actors]
        out["plain_ms"][str(fan)] = {}
        for kb in map(int, args.sizes_kb.split(",")):
            c0 = sum(cpu_seconds(p) for p in pids)
            ms = plain_stage_ms(sets, np.zeros(kb * 1024, np.uint8), args.chains)
            calls = (args.chains + 2) * STAGES * fan
            out["plain_ms"][str(fan)][str(kb)] = round(ms, 4)
            if kb == 1:
                out["call_cpu_ms"][str(fan)] = round((sum(cpu_seconds(p) for p in pids) - c0) / calls * 1e3, 4)
            print(f"nodes={args.nodes} fan={fan} {kb:4d} KB plain: {ms:.3f} ms per stage", flush=True)
        if fan * 2 <= args.max_compiled_actors:
            out["compiled_ms"][str(fan)] = round(compiled_stage_ms(sets, args.executions), 4)
            print(f"nodes={args.nodes} fan={fan} compiled: {out['compiled_ms'][str(fan)]:.3f} ms per stage", flush=True)
        for a in actors:
            ray.kill(a)
    old = json.loads(HOPS_JSON.read_text()) if HOPS_JSON.exists() else {}
    old[f"nodes={args.nodes}"] = out
    HOPS_JSON.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")
    print(f"wrote {HOPS_JSON.relative_to(ROOT)} key nodes={args.nodes}")


# -- scaling points -------------------------------------------------------------------------
def node_of(name: str, nodes: int) -> int:
    """The node of actor ``<kind>.<layer>.<shard>``: ``(shard + layer) mod nodes``."""
    _, layer, shard = name.split(".")
    return (int(shard) + int(layer)) % nodes


def rotating_bundles(nodes: int):
    """A ``shard_bundles`` replacement pinning each actor to ``node_of`` its name, asking for no CPU."""
    def bundles(names, kinds, placement):
        return [{f"node_{node_of(n, nodes)}": 0.001} for n in names]
    return bundles


def timeline_union(t0: float, t1: float) -> float:
    """Seconds within ``[t0, t1]`` (epoch) in which some ``ShardActor`` task was executing."""
    spans = []
    for ev in ray.timeline():
        if ev.get("cat") != "task:execute" or not str(ev.get("tid", "")).startswith("worker") or "dur" not in ev:
            continue
        a, b = ev["ts"] / 1e6, (ev["ts"] + ev["dur"]) / 1e6
        a, b = max(a, t0), min(b, t1)
        if b > a:
            spans.append((a, b))
    total, end = 0.0, -1.0
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def critical_busy(busy: dict[str, float]) -> float:
    """Sum over (kind, layer) of the busiest shard's seconds."""
    groups: dict[str, float] = {}
    for name, s in busy.items():
        key = name.rsplit(".", 1)[0]
        groups[key] = max(groups.get(key, 0.0), s)
    return sum(groups.values())


def window(net, X, y, start: int, n: int, pids: dict[str, int], plain: bool) -> dict:
    """Train ``X[start:start+n]``; figures per sample of that window."""
    backend = net.backend
    b0 = backend.busy()
    c0 = {k: cpu_seconds(p) for k, p in pids.items()}
    s0 = net.stats
    d0, e0, t0 = time.process_time(), time.time(), time.perf_counter()
    for k in range(start, start + n):
        net.train_sample(X[k], y[k])
    b1 = backend.busy()  # also the barrier: waits for queued calls
    wall = time.perf_counter() - t0
    e1, d1 = time.time(), time.process_time()
    c1 = {k: cpu_seconds(p) for k, p in pids.items()}
    s1 = net.stats
    busy = {k: (b1[k][1] - b0[k][1]) / n for k in b1}
    busy_cpu = {k: (b1[k][2] - b0[k][2]) / n for k in b1}
    out = {"wall": wall / n, "driver_cpu": (d1 - d0) / n, "busy": busy, "crit_busy": critical_busy(busy),
           "busy_cpu": busy_cpu, "crit_cpu": critical_busy(busy_cpu),
           "cpu": {k: (c1[k] - c0[k]) / n for k in c1},
           "fwd": ((s1.fwd - s0.fwd) / n).tolist(), "passed": ((s1.err_passed - s0.err_passed) / n).tolist()}
    if plain:
        out["timeline_union"] = timeline_union(e0, e1) / n
    return out


def median_of(windows: list[dict]) -> dict:
    """Medians over windows of the scalar figures, per actor for CPU and busy seconds."""
    med = {k: float(np.median([w[k] for w in windows])) for k in windows[0] if isinstance(windows[0][k], float)}
    for k in ("cpu", "busy", "busy_cpu"):
        if k in windows[0]:
            med[k] = {a: float(np.median([w[k][a] for w in windows])) for a in windows[0][k]}
    for k in ("fwd", "passed"):
        med[k] = np.median([w[k] for w in windows], axis=0).tolist()
    return med


def point(spec: str, args, X, y) -> dict:
    """Measure one ``rule:shards:mode`` point; its record."""
    from distspike.config import ModelConfig, NetConfig, PlacementConfig, RuntimeConfig, TrainingConfig
    from distspike.runtime import make_net
    rule, shards, mode = spec.split(":")
    sizes = (784, args.width, args.width, 10)
    cfg = NetConfig(ModelConfig(sizes, 0.01, "float32"), TrainingConfig(rule=rule))
    runtime = RuntimeConfig("ray_cluster", int(shards), address=os.environ.get("RAY_ADDRESS", "auto"),
                            placement=PlacementConfig(timeout_s=300.0), compiled=mode == "compiled")
    rec = {**stamp(), "nodes": args.nodes, "sizes": list(sizes), "dtype": "float32", "rule": rule,
           "shards": int(shards), "mode": mode, "samples": args.samples, "repeats": args.repeats,
           "warmup": args.warmup}
    t_build = time.perf_counter()
    with make_net(cfg, runtime) as net:
        pids = {n: pid_of(a) for n, a in net.backend.actors.items()}
        rec["where"] = {n: node_of(n, args.nodes) for n in pids}
        rec["rig_nodes"] = sum(1 for node in ray.nodes() if node["Alive"])  # may exceed the nodes used
        for k in range(args.warmup):
            net.train_sample(X[k], y[k])
        net.backend.busy()
        rec["build_and_warmup_s"] = round(time.perf_counter() - t_build, 1)
        shells = [shell_probe(args.width, rule, int(shards), args.samples, str(args.data))] if args.shell_probe else []
        before = probe_shares()  # the cores' share left by other load, beside the windows (actors idle)
        gbs, kern = [stream_gbs()], [kernel_ns()]
        wins = [window(net, X, y, args.warmup + r * args.samples, args.samples, pids, mode == "plain")
                for r in range(args.repeats)]
        after = probe_shares()
        gbs.append(stream_gbs())
        kern.append(kernel_ns())
        rec["stream_gbs"], rec["kernel_ns"] = gbs, kern  # before and after the windows
        if args.shell_probe:
            shells.append(shell_probe(args.width, rule, int(shards), args.samples, str(args.data)))
            rec["shell_probe"] = shells
        rec["memory"] = {n: memory_of(p) for n, p in pids.items()}
        rec["core_share"] = {k: round((before[k] + after[k]) / 2, 3) for k in before}
        rec["core_share_probes"] = [before, after]
    rec["median"] = median_of(wins)
    rec["windows"] = wins
    rec["load_end"] = round(os.getloadavg()[0], 2)
    return rec


def points(args) -> None:
    """Measure every ``--points`` spec; append one JSON line each to ``--out`` (``POINTS_JSONL``)."""
    import distspike.runtime.ray_backend as rb
    from distspike.data import load_dataset
    rb.shard_bundles = rotating_bundles(args.nodes)  # benchmark-only placement (module docstring)
    ds = load_dataset("mnist", str(args.data))
    n = args.warmup + args.samples * args.repeats
    X, y = np.asarray(ds.x_train[:n], np.float64), np.asarray(ds.y_train[:n])
    for spec in args.points.split(","):
        t0 = time.perf_counter()
        try:
            signal.alarm(args.limit_s)  # a point that cannot finish is recorded as such
            rec = point(spec, args, X, y)
        except BaseException:
            if not FIRED:
                raise
            FIRED.clear()  # Ray's C code may have turned the PointTimeout into a SystemError
            rule, shards, mode = spec.split(":")
            rec = {**stamp(), "nodes": args.nodes, "sizes": [784, args.width, args.width, 10], "rule": rule,
                   "shards": int(shards), "mode": mode, "timed_out": args.limit_s}
            with args.out.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"nodes={args.nodes} {spec}: not done within {args.limit_s} s", flush=True)
            continue
        finally:
            signal.alarm(0)
        with args.out.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        m = rec["median"]
        print(f"nodes={args.nodes} {spec}: wall {m['wall'] * 1e3:.1f} ms/sample, critical path (busy) "
              f"{m['crit_busy'] * 1e3:.1f} ms (CPU {m['crit_cpu'] * 1e3:.1f}), timeline union {m.get('timeline_union', float('nan')) * 1e3:.1f} ms, "
              f"actor CPU max {max(m['cpu'].values()) * 1e3:.1f} sum {sum(m['cpu'].values()) * 1e3:.1f} ms; "
              f"point took {time.perf_counter() - t0:.0f} s", flush=True)


class PointTimeout(BaseException):
    """A point ran past ``--limit-s`` (a BaseException: no ``except Exception`` inside Ray swallows it)."""


FIRED: list[bool] = []  # set when the alarm of the current point went off


def _alarm(signum, frame):
    FIRED.append(True)
    raise PointTimeout


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hops")
    h.add_argument("--nodes", type=int, required=True, help="nodes of the running rig")
    h.add_argument("--fans", default="1,2,4,8")
    h.add_argument("--sizes-kb", default="1,8,40,160")
    h.add_argument("--chains", type=int, default=20)
    h.add_argument("--executions", type=int, default=200)
    h.add_argument("--max-compiled-actors", type=int, default=4, help="compiled graphs only up to this many actors")
    p = sub.add_parser("points")
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--width", type=int, default=5000)
    p.add_argument("--points", required=True, help="rule:shards:mode,... (mode plain|compiled)")
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--limit-s", type=int, default=150, help="seconds a point may take (else recorded as timed out)")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--shell-probe", action="store_true",
                   help="measure bench_shell's in-process shells at the point's width, rule and shards before and "
                        "after its windows (the record's shell_probe; cost_model.py compare --beside)")
    p.add_argument("--out", type=Path, default=POINTS_JSONL,
                   help="JSON lines to append to (the cost model's scheduler microbenchmark: results/gap_points.jsonl)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGALRM, _alarm)
    ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=False)
    try:
        (hops if args.cmd == "hops" else points)(args)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
