"""What ``runtime.storage=collect`` costs per checkpoint against ``shared``, on a running Ray cluster.

Not a test: run it inside the emulated rig (``docs/cluster.md``), which sets ``RAY_ADDRESS``:

    launch/emulated_cluster.sh --dir D run -- .venv/bin/python benchmarks/bench_storage.py
        --nodes N [--width 5000] [--shards 2] [--rounds 3] [--out results/storage_costs.json]

Two nets of the same 784-width-width-10 float32 model and seed run side by side (shard
``i`` of every layer on node ``i``, as ``bench_cluster.py`` places them), one
with ``runtime.storage=shared`` (each actor writes its part into the run directory) and
one with ``collect`` (each actor writes on its node, the driver takes the parts through
Ray in 8 MiB calls, hashes and renames them: ``ray_storage.Collecting``), one SGD
sample trained in each. Then, ``--rounds`` times, alternating ``shared`` and
``collect`` (A B A B): a checkpoint (``shard_state.save_net``: every actor writes its
part, plus the driver's ``net.npz``), timed by the driver's wall clock, and the restore
of that checkpoint (``load_net``; with ``collect`` the driver first sends each actor its
part). The run directory is a fresh directory under ``/tmp``, which every rig node
sees. The figure: median seconds per checkpoint and per restore for each setting, and
collect's extra over shared per checkpoint and per MB of parts. The result is printed
as one line marked ``STORAGE_RESULT`` (the last line so marked is the result) and
merged into ``--out`` under ``nodes:width:shards``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "storage_costs.json"
PREFIX = "STORAGE_RESULT "


def _parts_mb(parts_dir: Path) -> float:
    return sum(p.stat().st_size for p in parts_dir.glob("*.npz")) / 2 ** 20


def measure(width: int, shards: int, rounds: int, data: str, nodes: int) -> dict:
    """Median save and restore seconds per setting over ``rounds`` alternating rounds."""
    import distspike.runtime.ray_backend as rb
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_cluster import rotating_bundles
    from distspike.config import ModelConfig, NetConfig, PlacementConfig, RuntimeConfig, TrainingConfig
    rb.shard_bundles = rotating_bundles(nodes)  # bench_cluster's benchmark-only placement: shard i on node i
    from distspike.data import load_dataset
    from distspike.runtime import make_net
    from distspike.runtime.shard_state import load_net, save_net
    ds = load_dataset("mnist", data)
    x, y = np.asarray(ds.x_train[0], np.float64), int(ds.y_train[0])
    cfg = NetConfig(ModelConfig((784, width, width, 10), 0.01, "float32"), TrainingConfig(rule="sgd"))
    base = Path(tempfile.mkdtemp(prefix="dss-storage-", dir="/tmp"))
    nets, times = {}, {m: {"save_s": [], "load_s": []} for m in ("shared", "collect")}
    mb = {}
    try:
        for mode in times:
            run = base / mode
            run.mkdir()
            rt = RuntimeConfig("ray_cluster", shards, address=os.environ.get("RAY_ADDRESS", "auto"),
                               placement=PlacementConfig(timeout_s=300.0), compiled=False, storage=mode)
            nets[mode] = make_net(cfg, rt, run_dir=str(run))
            nets[mode].train_sample(x, y)
        for r in range(rounds):
            for mode, net in nets.items():
                parts = base / mode / "checkpoints" / f"r{r}.parts"
                t0 = time.perf_counter()
                saved = save_net(net, parts)
                times[mode]["save_s"].append(time.perf_counter() - t0)
                mb[mode] = _parts_mb(parts)
                t0 = time.perf_counter()
                load_net(net, saved)
                times[mode]["load_s"].append(time.perf_counter() - t0)
                shutil.rmtree(parts, ignore_errors=True)
    finally:
        for net in nets.values():
            net.close()
        shutil.rmtree(base, ignore_errors=True)
    med = {m: {k: float(np.median(v)) for k, v in t.items()} for m, t in times.items()}
    extra = med["collect"]["save_s"] - med["shared"]["save_s"]
    return {"rounds": times, "median": med, "parts_mb": mb["shared"],
            "collect_extra_save_s": extra, "collect_extra_save_s_per_mb": extra / mb["shared"],
            "collect_extra_load_s": med["collect"]["load_s"] - med["shared"]["load_s"]}


def section(recs: dict) -> str:
    """The ``storage`` section of ``results/benchmarks.md`` from ``results/storage_costs.json``."""
    lines = ["## Checkpoints with `runtime.storage=collect` against `shared` (emulated rig)", "",
             "Command (under `flock /tmp/distspike-cpu.lock`; the rig: `launch/emulated_cluster.sh --dir D start N "
             "--mem-mb 4096 --object-store-mb 300`): `launch/emulated_cluster.sh --dir D run -- .venv/bin/python "
             "benchmarks/bench_storage.py --nodes N --width W --shards K --rounds R`, then "
             "`python benchmarks/bench_storage.py --report`. Two nets side by side (same model and seed, one SGD "
             "sample trained; shard i of every layer on node i, as `bench_cluster.py` places them), a checkpoint "
             "(`save_net`) and its restore (`load_net`) per round, alternating shared "
             "and collect; the driver's wall clock, median over the rounds. The rig's nodes share this machine's "
             "disk and page cache, and its \"network\" is a veth pair, so collect's extra here is Ray's own cost of "
             "moving the parts (8 MiB calls, sha256, rename), not a network's; nice-19 paper trainings shared the "
             "2 cores throughout.", "",
             "| measured (UTC) | nodes | model | shards | parts MB | checkpoint s: shared / collect (rounds' range) | "
             "collect extra per checkpoint (medians) | per MB | restore s: shared / collect (rounds' range) |",
             "|---|---:|---|---:|---:|---|---:|---:|---|"]
    def cell(r, q):
        return " / ".join(f"{r['median'][m][q]:.2f} ({min(r['rounds'][m][q]):.2f}-{max(r['rounds'][m][q]):.2f})"
                          for m in ("shared", "collect"))
    for key, r in sorted(recs.items()):
        lines.append(f"| {r['measured'][5:]}, {len(r['rounds']['shared']['save_s'])} rounds | {r['nodes']} | "
                     f"784-{r['width']}-{r['width']}-10 float32 | {r['shards']} | {r['parts_mb']:.0f} | "
                     f"{cell(r, 'save_s')} | {r['collect_extra_save_s']:+.2f} s | "
                     f"{r['collect_extra_save_s_per_mb'] * 1e3:+.1f} ms | {cell(r, 'load_s')} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=0, help="nodes of the running rig (recorded; needed to measure)")
    ap.add_argument("--width", type=int, default=5000)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--report", action="store_true",
                    help="measure nothing: write the section of results/benchmarks.md from --out")
    args = ap.parse_args(argv)
    if args.report:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from report import write_section
        print(f"wrote section 'storage' of {write_section('storage', section(json.loads(args.out.read_text())))}")
        return
    if args.nodes < 1:
        raise SystemExit(f"--nodes={args.nodes}: give the running rig's node count (1 or more)")
    rec = {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_start": os.getloadavg()[0],
           "nodes": args.nodes, "width": args.width, "shards": args.shards,
           **measure(args.width, args.shards, args.rounds, args.data, args.nodes)}
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    old[f"{args.nodes}:{args.width}:{args.shards}"] = rec
    args.out.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")
    m = rec["median"]
    print(f"nodes={args.nodes} width {args.width} shards {args.shards}: parts {rec['parts_mb']:.0f} MB; checkpoint "
          f"shared {m['shared']['save_s']:.2f} s, collect {m['collect']['save_s']:.2f} s "
          f"(+{rec['collect_extra_save_s']:.2f} s, {rec['collect_extra_save_s_per_mb'] * 1e3:.1f} ms per MB); "
          f"restore shared {m['shared']['load_s']:.2f} s, collect {m['collect']['load_s']:.2f} s", flush=True)
    print(PREFIX + json.dumps({k: v for k, v in rec.items() if k != "rounds"}), flush=True)


if __name__ == "__main__":
    main()
