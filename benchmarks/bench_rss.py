"""Peak resident memory of one ``distspike-train runtime=local`` run on MNIST (issue 21 target: <= 250 MiB).

    python benchmarks/bench_rss.py [--n-train N] [--n-test N] [--model mnist_300] [--rule sgd] [--write]

Runs ``distspike-train runtime=local model=mnist_300 training.epochs=1 logging=default`` (traffic
logging on) as a child process, after a short warm-up run of the same command on 50 samples so that
the numba cache is warm, and reports the child's peak RSS (``ru_maxrss`` of the waited-for child,
the kernel's high-water mark of the whole process) and its CPU and wall time. Not a test: prints
figures; ``--write`` refreshes the "rss" section of results/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def train_command(args, run_dir: Path, n_train, n_test) -> list[str]:
    """The ``distspike-train`` command line of one run (the console script beside this Python)."""
    exe = Path(sys.executable).with_name("distspike-train")
    cmd = [str(exe), "runtime=local", f"model={args.model}", f"training.rule={args.rule}", "training.epochs=1",
           "logging=default", "progress=false", f"data.root={args.data}", f"hydra.run.dir={run_dir}"]
    if n_train is not None:
        cmd.append(f"data.n_train={n_train}")
    if n_test is not None:
        cmd.append(f"data.n_test={n_test}")
    return cmd


def measure(cmd: list[str]) -> dict:
    """Run ``cmd`` to the end; its peak RSS (MiB), CPU seconds and wall seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"bench_rss: {' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return {"rss_mib": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime,
            "wall_s": time.perf_counter() - t0}


IMPORTS = ("numpy", "numba", "pyarrow.parquet", "hydra", "omegaconf", "matplotlib.pyplot")
_IMPORT_CHILD = """
import importlib, json, sys
def peak():  # VmHWM: this address space's own high-water mark (ru_maxrss keeps the forking parent's)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
out = []
for name in sys.argv[1:]:
    importlib.import_module(name)
    out.append((name, peak()))
print(json.dumps(out))
"""


def import_costs() -> str:
    """Peak RSS of a fresh Python after importing each library a training run loads, one after another."""
    out = subprocess.run([sys.executable, "-c", _IMPORT_CHILD, *IMPORTS], capture_output=True, text=True, check=True)
    prev, parts = None, []
    for name, mib in json.loads(out.stdout):
        parts.append(f"`{name}` {mib - prev:+.0f}" if prev is not None else f"Python + `{name}` {mib:.0f}")
        prev = mib
    return "Peak RSS of a fresh Python importing, in turn (MiB): " + ", ".join(parts) + "."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mnist_300")
    ap.add_argument("--rule", default="sgd")
    ap.add_argument("--n-train", type=int, default=None, help="training samples (default: all 60,000)")
    ap.add_argument("--n-test", type=int, default=None, help="test samples (default: all 10,000)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--write", action="store_true", help="write results/benchmarks.md section 'rss'")
    args = ap.parse_args()
    head = machine()
    print("#", head, flush=True)
    with tempfile.TemporaryDirectory(prefix="distspike-rss-") as tmp:
        measure(train_command(args, Path(tmp) / "warm", 50, 50))  # numba cache warm, files paged in
        res = measure(train_command(args, Path(tmp) / "run", args.n_train, args.n_test))
        shown = " ".join(train_command(args, Path("RUN_DIR"), args.n_train, args.n_test)[1:])
        shown = shown.replace(f"data.root={args.data}", "data.root=DATA")  # no machine paths in results
    line = (f"| distspike-train {args.model} {args.rule} | {args.n_train or 60000} | {args.n_test or 10000} | "
            f"**{res['rss_mib']:.0f}** | {res['cpu_s']:.1f} | {res['wall_s']:.1f} |")
    table = ("| run | training samples | test samples | peak RSS (MiB) | CPU s | wall s |\n"
             "|---|---:|---:|---:|---:|---:|\n" + line)
    imports = import_costs()
    print(table)
    print(imports)
    if args.write:
        cmd = "python benchmarks/bench_rss.py " + " ".join(a for a in sys.argv[1:] if a != "--write")
        write_section("rss", f"## Peak memory of a training run (target <= 250 MiB)\n\n{head}\n\n"
                             f"Command: `{cmd.strip()}`, which runs `distspike-train {shown}` after a 50-sample "
                             f"warm-up run (numba cache warm). Peak RSS is the child's `ru_maxrss`.\n\n{table}\n\n{imports}\n")


if __name__ == "__main__":
    main()
