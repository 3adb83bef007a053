"""Time to detect and to recover from a lost worker node, on the emulated cluster (needs root).

Starts a 3-node rig (``distspike/cluster/emulated.py``, its shortened GCS health checks:
``emulated.HEALTH_CHECK``), then per case runs a ``runtime=ray_cluster`` training
(integer mode, digits, ``placement=spread``, 1 shard: one actor per node) through the
rig's ``run``, and once its first mid-epoch checkpoint is on disk damages node 2:

- ``kill``: SIGKILL every process of the node (``faults.kill_node``);
- ``partition``: its link down for ``--cut-s`` seconds (longer than the health checks allow).

Printed per case: *detect*, from the fault to the driver's first failed call (the
``detected at`` time of the recovery log line); *recover*, from there until training
resumes (the lost actors re-created on a surviving node, the last snapshot loaded into
every actor); the whole run; and whether its final weights equal those of the undisturbed
``runtime=local`` run. Node 2 is restarted after each case.

    python benchmarks/bench_node_loss.py [--cases kill:plain,kill:compiled,partition:plain] [--repeat 1]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from distspike.cluster import emulated, faults

RUN = ["data=digits", "model=digits_small", "model.dtype=int", "training.epochs=1", "data.n_train=120",
       "data.n_test=10", "eval_train=10", "logging=off", "checkpoint.every_samples=5"]
LOST = re.compile(r"actor (\S+) lost \((.+?)\); revived.*detected at unix time ([\d.]+), training again ([\d.]+) s later")


def train_cmd() -> list[str]:
    script = Path(sys.executable).with_name("distspike-train")
    return [str(script)] if script.exists() else [sys.executable, "-m", "distspike.train"]


def final_weights(run_dir: Path) -> dict[str, np.ndarray]:
    """The weight blocks of the run's last checkpoint (one ``.npz`` in-process, a part per actor on Ray)."""
    from distspike.cli import checkpoint
    z = checkpoint.latest(run_dir).load_state()
    return {k: z[k] for k in z if k.endswith((".W", ".WT"))}


def reference(out: Path) -> dict[str, np.ndarray]:
    subprocess.run(train_cmd() + ["runtime=local", *RUN, f"hydra.run.dir={out}"], check=True, capture_output=True)
    return final_weights(out)


def same(a: dict, b: dict) -> bool:
    """Equal per layer once shards are reassembled (the local run has one shard per layer)."""
    def whole(w):
        out = {}
        for k in sorted(w):
            kind, layer, _, field = k.split(".")
            out.setdefault((kind, layer, field), []).append(w[k])
        return {key: np.concatenate(v, axis=1) for key, v in out.items()}
    wa, wb = whole(a), whole(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def one_case(rig_dir: str, address: str, fault: str, calls: str, cut_s: float, out: Path) -> dict:
    """One training with node 2 damaged mid-run; the figures of its first recovery."""
    cmd = [sys.executable, "-m", "distspike.cluster.emulated", "--dir", rig_dir, "run", "--", *train_cmd(),
           "runtime=ray_cluster", f"runtime.address={address}", "placement=spread",
           f"runtime.compiled={'true' if calls == 'compiled' else 'false'}", *RUN, f"hydra.run.dir={out}"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not list((out / "checkpoints").glob("epoch_0000_plus_*.json")):
        if proc.poll() is not None or time.time() - t0 > 300:
            proc.kill()
            raise SystemExit(f"{fault}:{calls}: the run ended or stalled before its first checkpoint")
        time.sleep(0.05)
    at = faults.kill_node(rig_dir, 2) if fault == "kill" else faults.partition(rig_dir, 2, cut_s)
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{fault}:{calls}: exit {proc.returncode}: {err.strip().splitlines()[-1:]}")
    m = LOST.search((out / "train.log").read_text())
    if m is None:
        raise SystemExit(f"{fault}:{calls}: no recovery in {out}/train.log (did node 2 hold an actor?)")
    return {"actor": m[1], "error": m[2], "detect": float(m[3]) - at, "recover": float(m[4]),
            "run": time.time() - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", default="/tmp/dsnl", help="rig dir (short: Ray socket paths must fit 107 bytes)")
    p.add_argument("--cases", default="kill:plain,kill:compiled,partition:plain")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--cut-s", type=float, default=25.0, help="partition length (s)")
    p.add_argument("--out", default="/tmp/dsnl-runs")
    args = p.parse_args(argv)
    out = Path(args.out)
    subprocess.run(["rm", "-rf", str(out)], check=True)
    ref = reference(out / "local")
    emulated.stop(args.dir, grace_s=1.0)
    # 2 logical CPUs per node whatever this process's affinity (taskset -c 0 gives 1): a survivor
    # must have a free CPU for the lost node's bundle, else the run stops for want of room
    address = emulated.start(args.dir, 3, num_cpus=2)
    print("health checks:", " ".join(f"{k}={v}" for k, v in emulated.HEALTH_CHECK.items()))
    print(f"{'case':<20} {'actor lost':<14} {'error':<30} {'detect s':>8} {'recover s':>9} {'run s':>6}  bit-identical")
    try:
        for r in range(args.repeat):
            for case in args.cases.split(","):
                fault, calls = case.split(":")
                run_dir = out / f"{fault}-{calls}-{r}"
                f = one_case(args.dir, address, fault, calls, args.cut_s, run_dir)
                print(f"{case:<20} {f['actor']:<14} {f['error']:<30} {f['detect']:>8.2f} {f['recover']:>9.2f} "
                      f"{f['run']:>6.1f}  {same(ref, final_weights(run_dir))}", flush=True)
                faults.restart_node(args.dir, 2)
                emulated.wait_nodes(emulated.Rig.load(args.dir), 3)
    finally:
        emulated.stop(args.dir, grace_s=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
