"""Train the authors' engine (petered/DeepSpike) under distspike's protocol for one experiment row (issue 22).

    python benchmarks/anchors/anchor_rows.py --build BUILD --experiment table3_smooth --seed 1234
    python benchmarks/anchors/anchor_rows.py --build BUILD --experiment table2_spiking_sgd --split validation
    python benchmarks/anchors/anchor_rows.py --build BUILD --experiment table3_baseline --check 2000

BUILD is the output of ``benchmarks/anchors/build_deepspike.sh CHECKOUT BUILD``. The row's settings come from
distspike's own config (``experiment=NAME seed=S data.options.split=SPLIT``, composed by Hydra as
``distspike-train`` composes it), and so do the initial weights: ``init_weights(sizes, w_init, seed)``, the
code path of the local runtime, rounded to float32 (what the engine takes). The engine trains in distspike's
data order (file order, the same every epoch) on the same split (``DeepSpikeTrainer.java``), predicts with its
own test-time rectified herding, and prints one ``DISTSPIKE-ANCHOR {json}`` line per epoch. Each epoch becomes
a row of ``--csv`` (default results/anchor_rows.csv) as soon as it is printed, so a run cut short keeps the
epochs it finished. Resumable: a (experiment, seed, split) whose epochs 1..E are all present is skipped; one
with fewer is trained again from the start (the engine has no checkpoints; it is deterministic, so the
epochs already present come out the same and are not written twice). With ``--state DIR`` the engine
writes a checkpoint after every epoch (``DIR/<experiment>_seed<seed>_<split>.ckpt``: float64 weights, the
backward quantizers' phi, its Random) and a later call goes on bit-exactly from the epoch after it (when the CSV
holds every epoch up to it; otherwise it starts again from epoch 1).

``--check N``: train N samples with both engines from the same weights (one epoch window, spike counts per
sample), print both; writes nothing. Bad input: one line, exit 2.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TRAINER = "nl.uva.deepspike.mlp.DeepSpikeTrainer"
MARK = "DISTSPIKE-ANCHOR "
COLUMNS = ("experiment", "seed", "split", "epoch", "test_error_pct", "engine", "rule", "smooth", "backward",
           "steps", "eta", "routing", "n_train", "n_test", "train_wall_s", "train_cpu_s", "test_wall_s",
           "command")


class AnchorError(Exception):
    """Bad input or an unsupported row: one line for the user."""


def value(x):
    """An enum's value, or the object itself."""
    return getattr(x, "value", x)


def parse_marked(line: str) -> dict | None:
    """The JSON payload of a ``DISTSPIKE-ANCHOR`` line, or None for any other line (engine chatter)."""
    if not line.startswith(MARK):
        return None
    payload = json.loads(line[len(MARK):])
    if not isinstance(payload, dict) or "epoch" not in payload or "test_error" not in payload:
        raise AnchorError(f"malformed anchor line: {line.strip()[:120]}")
    return payload


def compose_spec(experiment: str, seed: int, split: str | None, epochs: int | None):
    """distspike's RunSpec of ``experiment=NAME seed=S [data.options.split=SPLIT] [training.epochs=E]``."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from distspike.cli import schema
    from distspike.cli.convert import run_spec
    from distspike.cli.errors import USER_ERRORS
    from distspike.cli.preflight import CONF_DIR, explain

    overrides = [f"experiment={experiment}", f"seed={seed}"]
    if split is not None:
        overrides.append(f"data.options.split={split}")
    if epochs is not None:
        overrides.append(f"training.epochs={epochs}")
    try:
        schema.register()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="anchor_rows"):
            cfg = compose(config_name="config", overrides=overrides)
        return run_spec(schema.to_checked_container(cfg))
    except (HydraException, OmegaConfBaseException) as ex:
        raise AnchorError(explain(ex)) from ex
    except USER_ERRORS as ex:
        raise AnchorError(str(ex).splitlines()[0]) from ex


def engine_args(spec) -> dict:
    """The trainer's key=value settings for a RunSpec; AnchorError for what the engine cannot run as distspike does."""
    tr, data = spec.training, spec.data
    if data.name != "mnist":
        raise AnchorError(f"data={data.name}: the anchor trainer reads MNIST only")
    if data.shuffle_seed is not None or data.n_train is not None or data.n_test is not None:
        raise AnchorError("data.shuffle_seed/n_train/n_test: the anchor trains distspike's default order and sizes only")
    if value(spec.model["dtype"]) != "float64":
        raise AnchorError(f"model.dtype={value(spec.model['dtype'])}: the anchor runs the engine in float64 only")
    reset = value(tr.backward_reset)
    if reset not in ("none", "random"):
        raise AnchorError(f"training.backward_reset={reset}: the engine's SpikingMLP has no such backward quantizer")
    unsupported = {"training.regularization": (tr.regularization, 0.0), "training.step_lr": (value(tr.step_lr), "constant")}
    if value(tr.rule) == "fsgd":
        unsupported["training.column_read"] = (value(tr.column_read), "before_update")
    for key, (got, want) in unsupported.items():
        if got != want:
            raise AnchorError(f"{key}={got}: the anchor trainer supports only {want}")
    return {"rule": value(tr.rule), "smooth": int(bool(tr.smooth)), "backward": "noreset" if reset == "none" else "random",
            "depth_first": int(value(spec.routing) == "dfs"), "hold_error": int(bool(tr.hold_error)),
            "steps": tr.steps, "eta": tr.eta, "seed": spec.seed, "split": spec.data.options.get("split", "official"),
            "epochs": tr.epochs}


INITS = ("distspike", "authors")


def start_weights(spec, init: str = "distspike") -> list[np.ndarray]:
    """The initial weights, rounded to float32 (what the engine takes).

    ``distspike``: the local runtime's ``init_weights(sizes, w_init, seed)`` (numpy's default_rng).
    ``authors``: the authors' driver (petered/spiking-mlp ``JavaSpikingNetWrapper.from_init``):
    ``w_init * RandomState(seed).randn(n_in, n_out)`` layer by layer from one RandomState.
    """
    sizes = tuple(spec.model["sizes"])
    if init == "authors":
        rng = np.random.RandomState(spec.seed)
        return [(spec.model["w_init"] * rng.randn(a, b)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:])]
    from distspike.core.network import init_weights
    return [w.astype(np.float32) for w in init_weights(sizes, spec.model["w_init"], spec.seed)]


def write_weights(path: Path, weights) -> None:
    """DeepSpikeDriver's format: int32 layers, per layer int32 rows, int32 cols, rows*cols float32, big-endian."""
    with open(path, "wb") as f:
        f.write(np.array([len(weights)], ">i4").tobytes())
        for w in weights:
            f.write(np.array(w.shape, ">i4").tobytes())
            f.write(np.ascontiguousarray(w, ">f4").tobytes())


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def done_epochs(rows, experiment: str, seed: int, split: str) -> set[int]:
    """Epochs of the authors' engine already in the CSV for this (experiment, seed, split)."""
    return {int(r["epoch"]) for r in rows
            if r["experiment"] == experiment and int(r["seed"]) == seed and r["split"] == split
            and r["engine"] == "deepspike"}


def append_row(path: Path, row: dict) -> None:
    """Append one row (header first if the file is new); flushed at once, nothing earlier rewritten."""
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in COLUMNS})


CKPT_MAGIC = 0x44534B31  # DeepSpikeTrainer.CKPT_MAGIC


def checkpoint_path(state: Path, experiment: str, seed: int, split: str) -> Path:
    return state / f"{experiment}_seed{seed}_{split}.ckpt"


def checkpoint_epoch(path: Path) -> int:
    """The epoch a DeepSpikeTrainer checkpoint was written after (0: none, or not a checkpoint)."""
    try:
        head = path.read_bytes()[:8]
    except OSError:
        return 0
    if len(head) < 8 or int.from_bytes(head[:4], "big") != CKPT_MAGIC:
        return 0
    return int.from_bytes(head[4:], "big")


def resume_args(state: Path | None, experiment: str, settings: dict, have: set[int]) -> dict:
    """The trainer's ckpt/resume arguments: resume only from a checkpoint whose epochs are all in the CSV."""
    if state is None:
        return {}
    ckpt = checkpoint_path(state, experiment, settings["seed"], settings["split"])
    at = checkpoint_epoch(ckpt)
    ok = 0 < at < settings["epochs"] and set(range(1, at + 1)) <= have
    return {"ckpt": ckpt, "resume": int(ok)}


def csv_row(experiment: str, settings: dict, payload: dict, command: str) -> dict:
    return {"experiment": experiment, "seed": settings["seed"], "split": settings["split"],
            "epoch": payload["epoch"], "test_error_pct": f"{100 * payload['test_error']:.2f}", "engine": "deepspike",
            "rule": settings["rule"], "smooth": settings["smooth"], "backward": settings["backward"],
            "steps": settings["steps"], "eta": settings["eta"], "routing": "dfs" if settings["depth_first"] else "bfs",
            "n_train": payload["n_train"], "n_test": payload["n_test"], "train_wall_s": payload["train_wall_s"],
            "train_cpu_s": payload["train_cpu_s"], "test_wall_s": payload["test_wall_s"], "command": command}


def java_command(build: Path, data: Path, wfile: Path, settings: dict, extra: dict | None = None) -> list[str]:
    kv = {"data": data, "weights": wfile, **settings, **(extra or {})}
    return ["java", "-Xmx4g", "-cp", str(build / "classes"), TRAINER] + [f"{k}={v}" for k, v in kv.items()]


def run_engine(cmd: list[str], on_payload) -> None:
    """Run the trainer, calling ``on_payload`` for each marked line as it comes; AnchorError if it fails."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            payload = parse_marked(line)
            if payload is not None:
                on_payload(payload)
        err = proc.stderr.read()
    if proc.returncode != 0:
        tail = (err.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise AnchorError(f"the authors' engine failed: {tail}")


def data_dir(arg: Path | None) -> Path:
    d = arg or Path(os.environ.get("DISTSPIKE_DATA") or Path.home() / ".cache/distspike/data") / "mnist"
    if not (d / "train-images-idx3-ubyte.gz").exists():
        raise AnchorError(f"--data {d}: no train-images-idx3-ubyte.gz there")
    return d


def check_build(build: Path) -> None:
    if not (build / "classes/nl/uva/deepspike/mlp/DeepSpikeTrainer.class").exists():
        raise AnchorError(f"--build {build}: no built trainer there (run benchmarks/anchors/build_deepspike.sh "
                          f"CHECKOUT {build} first)")


def train_row(args, spec, settings: dict) -> int:
    """Train the row unless the CSV has all its epochs; returns the number of rows written."""
    have = done_epochs(read_rows(args.csv), args.experiment, settings["seed"], settings["split"])
    if set(range(1, settings["epochs"] + 1)) <= have:
        print(f"anchor_rows: {args.experiment} seed {settings['seed']} {settings['split']}: "
              f"{settings['epochs']} epochs already in {args.csv}, skipped")
        return 0
    written = 0
    with tempfile.TemporaryDirectory(prefix="distspike-anchor-") as tmp:
        wfile = Path(tmp) / "weights.bin"
        write_weights(wfile, start_weights(spec, args.init))
        if args.state is not None:
            args.state.mkdir(parents=True, exist_ok=True)
        cmd = java_command(args.build, args.data, wfile, settings, resume_args(args.state, args.experiment, settings, have))
        command = shlex.join(sys.argv if args.command is None else shlex.split(args.command))

        def on_payload(p):
            nonlocal written
            print(f"  epoch {p['epoch']}: test error {100 * p['test_error']:.2f} % "
                  f"({p['train_wall_s']:.0f} s train, {p['test_wall_s']:.0f} s test)", flush=True)
            if p["epoch"] not in have:
                append_row(args.csv, csv_row(args.experiment, settings, p, command))
                written += 1
        run_engine(cmd, on_payload)
    return written


def distspike_counts(spec, n: int, data: Path):
    """distspike's spikes and passed errors per sample over the first n training samples, and its test error."""
    from distspike.config import ModelConfig, NetConfig, RuntimeConfig
    from distspike.data.mnist import load_mnist
    from distspike.runtime import make_net

    ds = load_mnist(data, download=False, split=spec.data.options.get("split", "official"))
    weights = [w.astype(np.float64) for w in start_weights(spec)]
    cfg = NetConfig(ModelConfig(tuple(spec.model["sizes"]), spec.model["w_init"], "float64"), spec.training,
                    spec.routing, spec.seed)
    net = make_net(cfg, RuntimeConfig("local", 1), weights=weights)
    X, y = np.asarray(ds.x_train[:n]), ds.y_train[:n]
    s0 = net.stats
    for k in range(n):
        net.train_sample(X[k], y[k])
    s1 = net.stats
    Xp, yp = np.asarray(ds.x_test[:1000]), ds.y_test[:1000]
    trained = [np.array(w) for w in net.weights()]
    err = float(np.mean([np.argmax(net.predict(x)[0]) != t for x, t in zip(Xp, yp)]))
    net.close()
    return ((s1.fwd - s0.fwd) / n).tolist(), ((s1.err_passed - s0.err_passed) / n)[1:].tolist(), err, trained


def checkpoint_weights(path: Path) -> list[np.ndarray]:
    """The float64 weights of a DeepSpikeTrainer checkpoint (magic, epoch, layers, per layer rows, cols, data)."""
    raw = path.read_bytes()
    n, at, out = int.from_bytes(raw[8:12], "big"), 12, []
    for _ in range(n):
        rows, cols = np.frombuffer(raw[at:at + 8], ">i4")
        at += 8
        out.append(np.frombuffer(raw[at:at + 8 * rows * cols], ">f8").reshape(rows, cols))
        at += 8 * rows * cols
    return out


def check(args, spec, settings: dict) -> None:
    """Both engines on the first ``args.check`` samples from the same weights: spikes and passed errors per sample."""
    with tempfile.TemporaryDirectory(prefix="distspike-anchor-") as tmp:
        wfile = Path(tmp) / "weights.bin"
        write_weights(wfile, start_weights(spec))
        got, ckpt = [], Path(tmp) / "after.ckpt"
        run_engine(java_command(args.build, args.data, wfile, {**settings, "epochs": 1},
                                {"n_train": args.check, "n_test": 1000, "count": 1, "ckpt": ckpt}), got.append)
        engine_w = checkpoint_weights(ckpt)
    spikes, passed, err, ours_w = distspike_counts(spec, args.check, args.data)
    start = start_weights(spec)
    fmt = lambda v: " / ".join(f"{x:.1f}" for x in v)  # noqa: E731
    print(f"{args.experiment} seed {settings['seed']}, first {args.check} samples from the same weights:")
    print(f"  DeepSpike  spikes/sample {fmt(got[0]['spikes'])}; passed {fmt(got[0]['passed'])}; "
          f"test error (first 1000) {100 * got[0]['test_error']:.1f} %")
    print(f"  distspike  spikes/sample {fmt(spikes)}; passed {fmt(passed)}; test error (first 1000) {100 * err:.1f} %")
    for l, (a, b, w0) in enumerate(zip(ours_w, engine_w, start), 1):
        print(f"  W{l}: max |distspike - DeepSpike| {np.abs(a - b).max():.2e}, "
              f"max |DeepSpike's change| {np.abs(b - w0.astype(np.float64)).max():.2e}")


class Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one AnchorError line (no usage block)."""

    def error(self, message):
        raise AnchorError(message)


def parse_args(argv):
    ap = Parser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", type=Path, required=True, help="output of build_deepspike.sh")
    ap.add_argument("--experiment", required=True, help="a distspike experiment, e.g. table3_smooth")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--split", choices=("official", "validation"), default=None,
                    help="data.options.split (default: the experiment's)")
    ap.add_argument("--epochs", type=int, default=None, help="training.epochs (default: the experiment's)")
    ap.add_argument("--data", type=Path, default=None, help="MNIST dir (default $DISTSPIKE_DATA/mnist)")
    ap.add_argument("--csv", type=Path, default=ROOT / "results/anchor_rows.csv")
    ap.add_argument("--init", choices=INITS, default="distspike",
                    help="initial weights: distspike's init_weights (default) or the authors' RandomState randn")
    ap.add_argument("--state", type=Path, default=None,
                    help="checkpoint dir: the engine saves after every epoch, a later call resumes from there")
    ap.add_argument("--check", type=int, default=0, metavar="N", help="compare spike counts on N samples; no CSV")
    ap.add_argument("--command", default=None, help=argparse.SUPPRESS)  # the command recorded in the CSV
    args = ap.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        raise AnchorError(f"--epochs {args.epochs}: must be at least 1")
    if args.check < 0:
        raise AnchorError(f"--check {args.check}: must be at least 1")
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        check_build(args.build)
        args.data = data_dir(args.data)
        spec = compose_spec(args.experiment, args.seed, args.split, args.epochs)
        settings = engine_args(spec)
        if args.check:
            check(args, spec, settings)
            return 0
        t0 = time.perf_counter()
        n = train_row(args, spec, settings)
        print(f"anchor_rows: {n} rows written to {args.csv} ({time.perf_counter() - t0:.0f} s)")
        return 0
    except AnchorError as ex:
        print(f"anchor_rows: {ex}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
