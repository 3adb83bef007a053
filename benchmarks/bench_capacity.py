"""A layer larger than any node: a float32 784-n-n-10 net across emulated nodes, one shard per node.

Not a test: prints figures. Starts an emulated cluster (``launch/emulated_cluster.sh``:
``--nodes`` nodes, each a memory cgroup capped at ``--mem-mb``), then, for each width in
``--widths``, runs a driver inside the rig (``run``) that builds the net with
``runtime=ray_cluster placement=one_per_node runtime.shards=<nodes>``, trains
``--samples`` MNIST samples (SGD, T=10), writes the state part by part (every actor its
own block), reads it back into the actors, and reports each actor's peak RSS
(``VmHWM``), each node cgroup's peak (``memory.max_usage_in_bytes``, v1) and the
driver's peak RSS. Last, the widest net with one shard, pinned to one node, which the
memory preflight must refuse with one line. Stops the rig.

    sudo python benchmarks/bench_capacity.py [--nodes 4] [--mem-mb 2560] [--widths 2000,20000]
                                             [--samples 200] [--data-root ../shared/data]

Needs root, network namespaces and the cgroup memory controller (as the rig does).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

RIG = [sys.executable, "-m", "distspike.cluster.emulated"]


def inner(args) -> None:
    """The driver, inside the rig: build, train, save and restore; one JSON line of figures."""
    import numpy as np
    import ray

    from distspike.config import ActorResources, ModelConfig, NetConfig, PlacementConfig, RuntimeConfig, \
        TrainingConfig
    from distspike.data import load_dataset
    from distspike.runtime import make_net, shard_state
    width = args.width
    cfg = NetConfig(ModelConfig((784, width, width, 10), 0.01, "float32"), TrainingConfig(rule="sgd", steps=10))
    free = ActorResources(num_cpus=0)
    runtime = RuntimeConfig("ray_cluster", args.shards, address=os.environ["RAY_ADDRESS"],
                            placement=PlacementConfig(forward=free, backward=free, pin_shards=True, timeout_s=300))
    data = load_dataset("mnist", args.data_root)
    out = {"width": width, "shards": args.shards, "weights_bytes": 4 * (784 * width + 2 * width * width + 20 * width)}
    t0 = time.perf_counter()
    try:
        net = make_net(cfg, runtime)
    except Exception as err:  # the preflight's refusal is the figure here
        out["refused"] = str(err).splitlines()[0]
        print(json.dumps(out), flush=True)
        return
    with net:
        out["start_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for k in range(args.samples):
            net.train_sample(data.x_train[k], data.y_train[k])
        net.backend.check()
        out["train_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        saved = shard_state.save_net(net, Path(args.parts))
        out["save_s"] = time.perf_counter() - t0
        out["parts_bytes"] = sum(p.stat().st_size for p in Path(args.parts).glob("*.npz"))
        t0 = time.perf_counter()
        shard_state.load_net(net, saved)
        out["load_s"] = time.perf_counter() - t0
        shard_state.remove(shard_state.SavedState(saved.dir, saved.sha256, scratch=True))
        names = list(net.backend.actors)
        mem = ray.get([net.backend.actors[n].memory.remote() for n in names])
        where = ray.get([net.backend.actors[n].where.remote() for n in names])
        out["actors"] = {n: {"peak": m["peak"], "node": w["node"]} for n, m, w in zip(names, mem, where)}
        out["test_error_200"] = float(np.mean(net.predict(data.x_test[:200]).argmax(1) != data.y_test[:200]) * 100)
    out["driver_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
    print(json.dumps(out), flush=True)


def node_peaks(rig_dir: str) -> list[int]:
    """Each rig node cgroup's peak memory use (v1 ``memory.max_usage_in_bytes``; v2 ``memory.peak``)."""
    state = json.loads((Path(rig_dir) / "rig.json").read_text())
    out = []
    for node in state["nodes"]:
        cg = node["cgroup"]
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            if os.path.exists(os.path.join(cg, name)):
                out.append(int(open(os.path.join(cg, name)).read()))
                break
    return out


def reset_peaks(rig_dir: str) -> None:
    state = json.loads((Path(rig_dir) / "rig.json").read_text())
    for node in state["nodes"]:
        path = os.path.join(node["cgroup"], "memory.max_usage_in_bytes")
        if os.path.exists(path):
            with open(path, "w") as f:
                f.write("0")


def run_inner(args, width: int, shards: int) -> dict:
    cmd = [*RIG, "--dir", args.dir, "run", "--", sys.executable, os.path.abspath(__file__), "--inner",
           "--width", str(width), "--shards", str(shards), "--samples", str(args.samples),
           "--data-root", args.data_root, "--parts", os.path.join(args.parts_dir, f"w{width}.parts")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode or not lines:
        raise SystemExit(f"inner run failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(lines[-1])


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def report(runs: list[dict], peaks: list[list[int]], refused: dict, args) -> None:
    print(f"{args.nodes} emulated nodes, each a memory cgroup capped at {args.mem_mb} MiB; float32 784-n-n-10, "
          f"SGD, T=10, {args.samples} MNIST samples; runtime=ray_cluster placement=one_per_node "
          f"runtime.shards={args.nodes}")
    for run, node in zip(runs, peaks):
        k = run["shards"]
        print(f"\nn = {run['width']:,}: weights (forward W + backward replicas) {mb(run['weights_bytes'])} in all "
              f"= {mb(run['weights_bytes'] / k)} per node; start {run['start_s']:.1f} s, train "
              f"{run['train_s']:.1f} s, save {run['save_s']:.1f} s ({mb(run['parts_bytes'])}), "
              f"restore {run['load_s']:.1f} s; test error (200) {run['test_error_200']:.1f} %")
        print(f"  driver peak RSS {mb(run['driver_peak'])}")
        print("  node cgroup peaks: " + ", ".join(mb(p) for p in node))
        for name, a in run["actors"].items():
            print(f"  {name:14s} on {a['node']}: peak RSS {mb(a['peak'])}")
    print(f"\nn = {refused['width']:,} on one node (runtime.shards=1, pinned to node_0): {refused.get('refused')}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--mem-mb", type=int, default=2560)
    p.add_argument("--widths", default="2000,20000")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    p.add_argument("--dir", default=f"/tmp/dsrc-{os.getuid()}")
    p.add_argument("--parts-dir", default=None, help="where the states are written (default: under --dir)")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--width", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--shards", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--parts", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inner:
        return inner(args)
    args.parts_dir = args.parts_dir or os.path.join(args.dir, "states")
    subprocess.run([*RIG, "--dir", args.dir, "stop"], capture_output=True)
    subprocess.run([*RIG, "--dir", args.dir, "start", str(args.nodes), "--mem-mb", str(args.mem_mb)], check=True)
    try:
        os.makedirs(args.parts_dir, exist_ok=True)
        runs, peaks = [], []
        for width in map(int, args.widths.split(",")):
            reset_peaks(args.dir)
            runs.append(run_inner(args, width, args.nodes))
            peaks.append(node_peaks(args.dir))
        refused = run_inner(args, runs[-1]["width"], 1)
    finally:
        subprocess.run([*RIG, "--dir", args.dir, "stop"], capture_output=True)
    report(runs, peaks, refused, args)


if __name__ == "__main__":
    main()
