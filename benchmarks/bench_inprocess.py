"""In-process online training and prediction, side by side: distspike, the authors' engine, numpy MLPs.

    taskset -c 0 python benchmarks/bench_inprocess.py [--deepspike BUILD] [--configs 784-300-300-10:sgd,...]
        [--first 500] [--n 5000] [--npred 1000] [--rounds 2] [--dtypes float64,float32]
        [--baseline CHECKOUT [--baseline-dtypes float64]] [--write]

For each configuration (net and rule), every contestant starts from the same initial weights
(``init_weights(sizes, 0.01, seed 1234)`` rounded to float32, the precision the authors' engine takes
them in), trains online (batch 1) on MNIST training samples ``0..first-1`` untimed, then on samples
``first..first+n-1`` timed (the same window for all: a spiking net's cost grows as it learns), then
predicts test samples ``0..npred-1`` one at a time, timed. Contestants, run one after another and
the whole sequence ``--rounds`` times (A B A B; each figure is the best round, in CPU seconds of the
process that ran it):

- distspike ``runtime=local`` (one compiled call per sample), float64 and float32;
- the authors' engine (petered/DeepSpike, Java, float64) through ``benchmarks/anchors/DeepSpikeDriver.java``,
  when ``--deepspike BUILD`` names the output of ``benchmarks/anchors/build_deepspike.sh CHECKOUT BUILD``,
  with one more untimed run that counts its spikes; skipped (one line says so) otherwise;
- with ``--baseline CHECKOUT`` (a source tree of another distspike commit, e.g. ``git archive COMMIT``),
  that commit's distspike as ``distspike-base``: the same run in a child process that imports it
  (``PYTHONPATH=CHECKOUT``), so a change is measured before and after, side by side, in one run;
- a numpy ReLU MLP trained online with batch 1 (``ReluMLP.train_one``: plain matmuls), float64 and float32,
  BLAS single-threaded (threadpoolctl and ``OPENBLAS_NUM_THREADS=1``).

Run it pinned to one core (``taskset -c 0``): the Java child inherits the affinity. A synaptic event
is one weight-row element added by a forward spike (``spikes_{l-1} * n_l``) or one weight-column
element read by a passed error (``passed_l * n_{l-1}``, ``l >= 2``); ns per event is CPU time per
sample over events per sample. The fixed cost per sample is the intercept of a least-squares fit of
time per sample against events per sample over the configurations of one rule and dtype (two or
three widths). Not a test: prints figures; ``--write`` refreshes the "inprocess" section of
results/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core for every contestant, numpy's BLAS included

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

from distspike.config import ModelConfig, NetConfig, RuntimeConfig, TrainingConfig  # noqa: E402
from distspike.core.network import init_weights  # noqa: E402
from distspike.relu import ReluMLP, relu_forward  # noqa: E402
from distspike.runtime import make_net  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DRIVER = "nl.uva.deepspike.mlp.DeepSpikeDriver"


@dataclass
class Figures:
    """One contestant's best round on one configuration."""

    engine: str
    train_cpu: float = float("inf")
    train_wall: float = float("inf")
    pred_cpu: float = float("inf")
    spikes: list = field(default_factory=list)  # per sample: input, layer 1..L
    passed: list = field(default_factory=list)  # per sample: errors passed by gate 1..L
    test_error: float = float("nan")

    def best(self, train_cpu: float, train_wall: float, pred_cpu: float) -> None:
        self.train_cpu, self.train_wall = min(self.train_cpu, train_cpu), min(self.train_wall, train_wall)
        self.pred_cpu = min(self.pred_cpu, pred_cpu)


def single_threaded_blas():
    """A context that limits BLAS to one thread (threadpoolctl), or None when it is not installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(1)


def start_weights(sizes) -> list[np.ndarray]:
    """The shared initial weights: seed 1234, w_init 0.01, rounded to float32 (as the Java engine takes them)."""
    return [w.astype(np.float32).astype(np.float64) for w in init_weights(sizes, 0.01, 1234)]


def write_weights(path: Path, weights) -> None:
    """The driver's weight file: big-endian int32 layer count, then per layer rows, cols, float32 values."""
    with open(path, "wb") as f:
        f.write(np.array([len(weights)], ">i4").tobytes())
        for w in weights:
            f.write(np.array(w.shape, ">i4").tobytes())
            f.write(np.ascontiguousarray(w, ">f4").tobytes())


def timed(fn) -> tuple[float, float]:
    """``(CPU seconds of this process, wall seconds)`` of ``fn()``."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def run_distspike(fig: Figures, sizes, rule, dtype, weights, data, first, n) -> None:
    """One round of distspike in this process: warm-up samples, the timed window, the timed predictions."""
    X, y, Xp, yp = data[dtype]
    cfg = NetConfig(ModelConfig(sizes, 0.01, dtype), TrainingConfig(rule=rule), routing="bfs")
    net = make_net(cfg, RuntimeConfig("local", 1), weights=weights)
    for k in range(first):
        net.train_sample(X[k], y[k])
    s0 = net.stats

    def window():
        for k in range(first, first + n):
            net.train_sample(X[k], y[k])
    tc, tw = timed(window)
    s1 = net.stats
    for x in Xp[-50:]:
        net.predict(x)
    scores = []
    pc, _ = timed(lambda: scores.extend(net.predict(x)[0] for x in Xp[:-50]))
    net.close()
    fig.best(tc, tw, pc)
    fig.spikes = ((s1.fwd - s0.fwd) / n).tolist()
    fig.passed = ((s1.err_passed - s0.err_passed) / n)[1:].tolist()
    fig.test_error = float(np.mean(np.argmax(scores, axis=1) != yp[:-50]))


def run_baseline(fig: Figures, checkout: Path, sizes, rule, dtype, args) -> None:
    """One round of ``run_distspike`` in a child process importing the distspike of ``checkout``."""
    env = dict(os.environ, PYTHONPATH=str(checkout.resolve()))
    cmd = [sys.executable, __file__, "--child", json.dumps([list(sizes), rule, dtype]), "--first", str(args.first),
           "--n", str(args.n), "--npred", str(args.npred), "--data", str(args.data)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"bench_inprocess: the baseline child failed ({out.returncode}): {out.stderr[-1500:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(res["distspike"]).resolve() != (checkout / "distspike").resolve():
        raise SystemExit(f"bench_inprocess: the baseline child imported {res['distspike']}, not {checkout}")
    fig.best(res["train_cpu"], res["train_wall"], res["pred_cpu"])
    fig.spikes, fig.passed, fig.test_error = res["spikes"], res["passed"], res["test_error"]


def child(args) -> None:
    """``--child``: one ``run_distspike`` round; its figures as one JSON line (``run_baseline``)."""
    import distspike
    sizes, rule, dtype = json.loads(args.child)
    fig = Figures("child")
    weights = start_weights(tuple(sizes))
    run_distspike(fig, tuple(sizes), rule, dtype, weights, load(args), args.first, args.n)
    print(json.dumps({"train_cpu": fig.train_cpu, "train_wall": fig.train_wall, "pred_cpu": fig.pred_cpu,
                      "spikes": fig.spikes, "passed": fig.passed, "test_error": fig.test_error,
                      "distspike": str(Path(distspike.__file__).parent)}))


def run_numpy(fig: Figures, sizes, dtype, weights, data, first, n) -> None:
    """One round of the numpy ReLU MLP, online, batch 1 (``ReluMLP.train_one``)."""
    X, y, Xp, yp = data[dtype]
    mlp = ReluMLP(sizes, 0.01, 0.01, weights=weights, dtype=dtype)
    eye = np.eye(sizes[-1], dtype=dtype)
    for k in range(first):
        mlp.train_one(X[k], eye[y[k]])

    def window():
        for k in range(first, first + n):
            mlp.train_one(X[k], eye[y[k]])
    tc, tw = timed(window)
    scores = []
    pc, _ = timed(lambda: scores.extend(relu_forward(mlp.weights, x)[-1] for x in Xp[:-50]))
    fig.best(tc, tw, pc)
    fig.test_error = float(np.mean(np.argmax(scores, axis=1) != yp[:-50]))


def run_deepspike(build: Path, args, rule: str, wfile: Path, count: bool) -> dict:
    """One run of the authors' engine (a child process, same CPU affinity); its JSON line."""
    cmd = ["java", "-cp", str(build / "classes"), DRIVER, f"data={args.data / 'mnist'}", f"weights={wfile}",
           f"rule={rule}", f"first={args.first}", f"n={args.n}", f"npred={args.npred}", f"count={int(count)}"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench_inprocess: the DeepSpike driver failed ({out.returncode}): {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def deepspike_figures(build: Path, args, rule: str, wfile: Path, fig: Figures) -> None:
    """One timed round of the authors' engine (no counting: it costs time)."""
    res = run_deepspike(build, args, rule, wfile, False)
    fig.best(res["train_cpu_s"], res["train_wall_s"], res["pred_cpu_s"])
    fig.test_error = res["test_error"]


def load(args) -> dict:
    """``dtype -> (X, y, Xp, yp)``: the training rows the run needs and the test rows (+50 warm-up)."""
    from distspike.data import load_dataset
    ds = load_dataset("mnist", str(args.data))
    X = np.asarray(ds.x_train[:args.first + args.n])
    Xp = np.asarray(ds.x_test[:args.npred + 50])
    y, yp = ds.y_train[:args.first + args.n], ds.y_test[:args.npred + 50]
    return {dt: (X.astype(dt), y, Xp.astype(dt), yp) for dt in ("float64", "float32")}


def events(sizes, fig: Figures) -> float:
    """Synaptic events per sample: rows added by forward spikes, columns read by passed errors."""
    if not fig.spikes:
        return float("nan")
    fwd = sum(fig.spikes[l - 1] * sizes[l] for l in range(1, len(sizes)))
    back = sum(fig.passed[l - 1] * sizes[l - 1] for l in range(2, len(sizes)))
    return fwd + back


def run_config(sizes, rule, args, data, build) -> list[Figures]:
    """All contestants on one configuration, ``args.rounds`` rounds one after another."""
    weights = start_weights(sizes)
    figs = {f"distspike {dt}": Figures(f"distspike {dt}") for dt in args.dtypes}
    if args.baseline is not None:
        figs.update({f"distspike-base {dt}": Figures(f"distspike-base {dt}") for dt in args.baseline_dtypes})
    if build is not None:
        figs["DeepSpike float64"] = Figures("DeepSpike float64")
    if rule == "sgd":
        figs.update({f"numpy {dt}": Figures(f"numpy {dt}") for dt in ("float64", "float32")})
    with tempfile.TemporaryDirectory(prefix="distspike-bench-") as tmp:
        wfile = Path(tmp) / "weights.bin"
        write_weights(wfile, weights)
        for r in range(args.rounds):
            for name, fig in figs.items():
                dt = name.split()[1]
                if name.startswith("distspike-base"):
                    run_baseline(fig, args.baseline, sizes, rule, dt, args)
                elif name.startswith("distspike"):
                    run_distspike(fig, sizes, rule, dt, weights, data, args.first, args.n)
                elif name.startswith("numpy"):
                    run_numpy(fig, sizes, dt, weights, data, args.first, args.n)
                else:
                    deepspike_figures(build, args, rule, wfile, fig)
                print(f"  round {r + 1} {name}: {args.n / fig.train_cpu:.0f} train samples per CPU-s", flush=True)
        if build is not None:  # spike counts of the authors' engine: a separate, untimed run
            res = run_deepspike(build, args, rule, wfile, True)
            figs["DeepSpike float64"].spikes, figs["DeepSpike float64"].passed = res["spikes"], res["passed"]
    return list(figs.values())


def fixed_cost(rows, rule, engine) -> tuple[float, float] | None:
    """``(µs fixed per sample, ns per event)`` from a least-squares line over the widths of ``rule``/``engine``."""
    pts = [(events(s, f), f.train_cpu / n) for s, r, f, n in rows if r == rule and f.engine == engine]
    pts = [(e, t) for e, t in pts if np.isfinite(e)]
    if len({round(e) for e, _ in pts}) < 2:
        return None
    slope, icpt = np.polyfit([e for e, _ in pts], [t for _, t in pts], 1)
    return icpt * 1e6, slope * 1e9


def fmt(v, spec=".0f") -> str:
    return "-" if v is None or not np.isfinite(v) else format(v, spec)


def table(rows, args) -> str:
    lines = ["| net | rule | engine | train samples/CPU-s | µs/sample | **ns/event** | events/sample | x DeepSpike "
             "| x numpy f32 | x numpy f64 | spikes/sample (in, h.., out) | errors passed/sample (gate 1..L) "
             "| predict samples/CPU-s | predict x DeepSpike | test error (%) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|"]
    by_key = {}
    for sizes, rule, fig, n in rows:
        by_key[("-".join(map(str, sizes)), rule, fig.engine)] = fig
    for sizes, rule, fig, n in rows:
        net = "-".join(map(str, sizes))
        sps, psps = n / fig.train_cpu, args.npred / fig.pred_cpu
        ref = {k: by_key.get((net, rule, k)) or by_key.get((net, "sgd", k))
               for k in ("DeepSpike float64", "numpy float32", "numpy float64")}
        ratio = {k: sps / (n / f.train_cpu) if f is not None else None for k, f in ref.items()}
        pratio = psps / (args.npred / ref["DeepSpike float64"].pred_cpu) if ref["DeepSpike float64"] else None
        ev = events(sizes, fig)
        spikes = " / ".join(f"{v:.1f}" for v in fig.spikes) or "-"
        passed = " / ".join(f"{v:.1f}" for v in fig.passed) or "-"
        lines.append(f"| {net} | {rule} | {fig.engine} | {sps:.0f} | {fig.train_cpu / n * 1e6:.0f} | "
                     f"**{fmt(fig.train_cpu / n / ev * 1e9, '.2f')}** | {fmt(ev)} | {fmt(ratio['DeepSpike float64'], '.2f')} | "
                     f"{fmt(ratio['numpy float32'], '.2f')} | {fmt(ratio['numpy float64'], '.2f')} | {spikes} | {passed} | "
                     f"{psps:.0f} | {fmt(pratio, '.2f')} | {100 * fig.test_error:.1f} |")
    fits = []
    for rule in sorted({r for _, r, _, _ in rows}):
        for engine in sorted({f.engine for _, r, f, _ in rows if r == rule}):
            fit = fixed_cost(rows, rule, engine)
            if fit is not None:
                fits.append(f"- fit over the widths, {engine} {rule}: fixed cost **{fit[0]:.0f} µs** per sample "
                            f"+ {fit[1]:.2f} ns per event")
    return "\n".join(lines + [""] + fits)


def parse_configs(text: str) -> list[tuple[tuple[int, ...], str]]:
    out = []
    for item in text.split(","):
        net, _, rule = item.partition(":")
        out.append((tuple(int(s) for s in net.split("-")), rule or "sgd"))
    return out


def find_build(path: Path | None) -> Path | None:
    """The build directory of the authors' engine (``classes/`` with the driver), or None (skipped, one line)."""
    if path is None:
        print("DeepSpike: skipped (no --deepspike BUILD; make one with benchmarks/anchors/build_deepspike.sh "
              "CHECKOUT BUILD from a clone of petered/DeepSpike)")
        return None
    for cand in (path, path / "distspike-build"):
        if (cand / "classes" / Path(*DRIVER.split("."))).with_suffix(".class").is_file():
            return cand
    raise SystemExit(f"bench_inprocess: --deepspike {path}: no built driver there (run "
                     f"benchmarks/anchors/build_deepspike.sh CHECKOUT {path} first)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="784-300-300-10:sgd,784-300-300-10:fsgd,784-200-200-10:sgd")
    ap.add_argument("--dtypes", default="float64,float32", help="distspike dtypes")
    ap.add_argument("--first", type=int, default=500, help="untimed training samples before the window")
    ap.add_argument("--n", type=int, default=5000, help="timed training samples (the window)")
    ap.add_argument("--npred", type=int, default=1000, help="timed predictions (test samples)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--deepspike", type=Path, default=None, help="build dir of the authors' engine")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="source tree of another distspike commit, run beside this one as distspike-base")
    ap.add_argument("--baseline-dtypes", default="float64", help="dtypes of the baseline contestant")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--write", action="store_true", help="write results/benchmarks.md section 'inprocess'")
    args = ap.parse_args()
    if args.child is not None:
        child(args)
        return
    args.baseline_dtypes = args.baseline_dtypes.split(",")
    if args.baseline is not None and not (args.baseline / "distspike" / "__init__.py").is_file():
        raise SystemExit(f"bench_inprocess: --baseline {args.baseline}: no distspike package there")
    args.dtypes = args.dtypes.split(",")
    build = find_build(args.deepspike)
    head = machine()
    print("#", head, flush=True)
    limits = single_threaded_blas()
    data = load(args)
    rows = []
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    for sizes, rule in parse_configs(args.configs):
        print(f"{'-'.join(map(str, sizes))} {rule}:", flush=True)
        rows += [(sizes, rule, fig, args.n) for fig in run_config(sizes, rule, args, data, build)]
    del limits
    text = (f"MNIST training samples {args.first}..{args.first + args.n - 1} timed after {args.first} untimed, "
            f"{args.npred} test predictions; best of {args.rounds} rounds (A B A B), CPU seconds of the process "
            f"that ran each contestant; CPUs {affinity}; load average {os.getloadavg()[0]:.2f} at the end.\n\n"
            + table(rows, args))
    print(text)
    if args.write:
        cmd = "taskset -c 0 python benchmarks/bench_inprocess.py " + " ".join(a for a in sys.argv[1:] if a != "--write")
        write_section("inprocess", f"## In-process training and prediction, side by side\n\n{head}\n\n"
                                   f"Command: `{cmd.strip()}`\n\n{text}\n")


if __name__ == "__main__":
    main()
