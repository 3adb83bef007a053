"""The first training sample and prediction on a clean numba cache: compile time (issue 21).

    taskset -c 0 python benchmarks/bench_compile.py [--sizes 784-300-300-10] [--rule sgd] [--dtype float64]
                                                    [--checkout DIR] [--write]

Runs a child Python with ``NUMBA_CACHE_DIR`` set to a fresh temporary directory (nothing cached),
which builds a ``runtime=local`` net, trains one sample and predicts one, and reports the CPU seconds
of each step and the number of compiled specializations of each kernel function (more of them, more
compile time). Then the same again with the now warm cache. The child imports distspike from
``--checkout`` (default: this script's checkout; it runs there, with ``PYTHONPATH`` set to it), so
another source tree (e.g. ``git archive COMMIT | tar -x -C DIR``) is measured by the same command. Not a
test; ``--write`` refreshes the "compile" section of results/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

CHILD = r"""
import json, sys, time
import numpy as np
t0 = time.process_time()
from numba.core.registry import CPUDispatcher
from distspike.config import ModelConfig, NetConfig, RuntimeConfig, TrainingConfig
from distspike.runtime import make_net
import distspike.kernels.fused as F, distspike.kernels.herding as H, distspike.kernels.updates as U
sizes, rule, dtype = tuple(json.loads(sys.argv[1])), sys.argv[2], sys.argv[3]
net = make_net(NetConfig(ModelConfig(sizes, 0.01, dtype), TrainingConfig(rule=rule), routing="bfs"),
               RuntimeConfig("local", 1))
t1 = time.process_time()
x = np.random.default_rng(0).random(sizes[0])
net.train_sample(x, 3)
t2 = time.process_time()
net.predict(x)
t3 = time.process_time()
sigs, detail = {}, {}  # each dispatcher once, under the module that defines it
for m in (H, U, F):
    for k, f in vars(m).items():
        if isinstance(f, CPUDispatcher) and f.signatures and f.py_func.__module__ == m.__name__:
            sigs[f"{m.__name__.split('.')[-1]}.{k}"] = len(f.signatures)
            if len(f.signatures) > 1:
                detail[f"{m.__name__.split('.')[-1]}.{k}"] = [str(s) for s in f.signatures]
import distspike
print(json.dumps({"source": distspike.__file__, "import_build_s": t1 - t0, "first_train_s": t2 - t1, "first_predict_s": t3 - t2, "sigs": sigs,
                  "detail": detail}))
"""


ROOT = Path(__file__).resolve().parents[1]


def child(args, cache: str) -> dict:
    """One child run in ``args.checkout`` (``python -c`` puts its working directory first on ``sys.path``)."""
    checkout = str(args.checkout)
    path = os.pathsep.join([checkout, *filter(None, [os.environ.get("PYTHONPATH")])])
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=path)
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args.sizes), args.rule, args.dtype], env=env,
                         cwd=checkout, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench_compile: the child failed: {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="784-300-300-10")
    ap.add_argument("--rule", default="sgd", choices=["sgd", "fsgd"])
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--signatures", action="store_true", help="also print the signatures of functions with several")
    ap.add_argument("--checkout", type=Path, default=ROOT, help="source tree whose distspike the child imports")
    ap.add_argument("--write", action="store_true", help="write results/benchmarks.md section 'compile'")
    args = ap.parse_args()
    if not (args.checkout / "distspike" / "__init__.py").is_file():
        raise SystemExit(f"bench_compile: --checkout {args.checkout}: no distspike/__init__.py there")
    args.sizes = [int(s) for s in args.sizes.split("-")]
    head = machine()
    print("#", head, flush=True)
    with tempfile.TemporaryDirectory(prefix="distspike-numba-") as cache:
        cold, warm = child(args, cache), child(args, cache)
    lines = ["| numba cache | import + build (CPU s) | first training sample (CPU s) | first prediction (CPU s) |",
             "|---|---:|---:|---:|"]
    for name, r in (("clean (fresh NUMBA_CACHE_DIR)", cold), ("warm (the same directory, second process)", warm)):
        lines.append(f"| {name} | {r['import_build_s']:.1f} | **{r['first_train_s']:.1f}** | {r['first_predict_s']:.1f} |")
    if Path(cold["source"]).resolve().parents[1] != args.checkout.resolve():
        raise SystemExit(f"bench_compile: the child imported {cold['source']}, not --checkout {args.checkout}")
    print(f"# distspike from {Path(cold['source']).parent}")
    sigs = cold["sigs"]
    lines += ["", f"Compiled specializations after one sample and one prediction: {sum(sigs.values())} in "
              f"{len(sigs)} functions; " + ", ".join(f"`{k}` {v}" for k, v in sorted(sigs.items()) if v > 1) + "."]
    text = "\n".join(lines)
    if args.signatures:
        for name, found in sorted(cold["detail"].items()):
            print(f"# {name}: " + "; ".join(found))
    print(text)
    if args.write:
        cmd = "taskset -c 0 python benchmarks/bench_compile.py " + " ".join(a for a in sys.argv[1:] if a != "--write")
        write_section("compile", f"## First sample on a clean numba cache\n\n{head}\n\nCommand: `{cmd.strip()}`, "
                                 f"net {'-'.join(map(str, args.sizes))} {args.rule} {args.dtype}, runtime=local.\n\n"
                                 f"{text}\n")


if __name__ == "__main__":
    main()
