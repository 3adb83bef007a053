"""The adversarial suite of issue 19: what a careless user or an attacker would try.

Every case drives ``distspike-train`` / ``distspike-traffic`` as a subprocess, from a
small base run (digits, 64-30-10, int weights, checkpoints every 50 samples, 2
epochs), and sorts what happened into one of:

- ``clear``: refused with one line naming the problem, a non-zero exit, no traceback,
  nothing already written changed (or, where the issue asks for it, a fallback with a
  warning naming what was skipped);
- ``ok``: the right result (a resume after a kill equals the uninterrupted run);
- ``traceback``: a Python traceback reached the user;
- ``silent``: a wrong state was accepted, or files were corrupted, without a word;
- ``hole``: the run wrote outside its directory or ran code from a run directory.

Classes: bad data, corrupt or altered checkpoints, traffic parts, config values, kills,
disk full, concurrency, untrusted run directories. Cases fixed on other branches are
marked ``xfail(strict=False)`` with the branch; heavier ones ``slow``.

As a test module: ``pytest tests/test_adversarial.py`` (``-m slow`` for the heavy part).
As a script, printing every case and the counts for the issue's closing note::

    python tests/test_adversarial.py [--slow] [-k SUBSTRING]
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

try:
    import pytest
except ImportError:  # the script form needs no pytest
    pytest = None

BASE = ["runtime=local", "data=digits", "model.sizes=[64,30,10]", "model.dtype=int", "data.n_train=200",
        "data.n_test=100", "checkpoint.every_samples=50", "checkpoint.keep=0", "training.epochs=2"]
NEWEST = "epoch_0002.npz"
KINDS = ("clear", "ok", "traceback", "silent", "hole")
ERROR = "distspike-train: error:"


@dataclass
class Outcome:
    kind: str
    detail: str = ""


@dataclass
class Case:
    name: str
    klass: str
    run: Callable[["Ctx"], Outcome]
    slow: bool = False
    fixed_on: str | None = None  # the branch that fixes it (xfail until merged)


CASES: list[Case] = []


def case(klass: str, slow: bool = False, fixed_on: str | None = None):
    def register(fn):
        CASES.append(Case(fn.__name__, klass, fn, slow, fixed_on))
        return fn
    return register


# -- running distspike ------------------------------------------------------------------
def tool(name: str) -> list[str]:
    script = Path(sys.executable).with_name(name)
    module = {"distspike-train": "distspike.train", "distspike-traffic": "distspike.logs.cli"}[name]
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


class Ctx:
    """A scratch directory, the base run (made once) and helpers to run the tools."""

    def __init__(self, root: Path, base: Path):
        self.root, self.base = root, base

    def env(self, **extra) -> dict:
        out = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
        out.update(DISTSPIKE_DATA=str(self.root), PYTHONUNBUFFERED="1", RAY_AUTH_MODE="disabled", **extra)
        return out

    def train(self, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(tool("distspike-train") + list(args), cwd=self.root, env=env or self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def traffic(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(tool("distspike-traffic") + list(args), cwd=self.root, env=self.env(),
                              capture_output=True, text=True, timeout=300)

    def copy(self, name: str) -> Path:
        dest = self.root / name
        shutil.copytree(self.base, dest, symlinks=True)
        (dest / ".distspike.lock").unlink(missing_ok=True)
        return dest


def make_base(root: Path) -> Path:
    ctx = Ctx(root, root / "base")
    res = ctx.train(*BASE, f"hydra.run.dir={root / 'base'}")
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "base"


def tree(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and not p.is_symlink() and p.name != ".distspike.lock"}


def refused(res: subprocess.CompletedProcess, must_mention: str = "", prog: str = ERROR) -> Outcome:
    """``clear`` if ``res`` failed with exactly one error line (mentioning ``must_mention``)."""
    if "Traceback" in res.stderr:
        return Outcome("traceback", res.stderr.strip().splitlines()[-1][:200])
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith(prog)]
    if res.returncode == 0:
        return Outcome("silent", "exit 0")
    if len(errors) != 1 or must_mention not in errors[0]:
        return Outcome("traceback" if not errors else "clear" if errors and not must_mention else "silent",
                       (errors or res.stderr.strip().splitlines() or ["no output"])[-1][:200])
    return Outcome("clear", errors[0][:200])


def unchanged(outcome: Outcome, before: dict, directory: Path) -> Outcome:
    """``outcome``, or ``silent`` if the refused run changed files of ``directory``."""
    if outcome.kind == "clear" and tree(directory) != before:
        changed = sorted(k for k in set(before) | set(tree(directory)) if before.get(k) != tree(directory).get(k))
        return Outcome("silent", f"refused, but changed {changed[:3]}")
    return outcome


def fell_back_or_refused(res: subprocess.CompletedProcess, bad_name: str, run_dir: Path) -> Outcome:
    """A resume from a corrupt newest checkpoint: a fallback warning naming it, or one clear line."""
    if "Traceback" in res.stderr:
        return Outcome("traceback", res.stderr.strip().splitlines()[-1][:200])
    if res.returncode == 0:
        log = (run_dir / "train.log").read_text() if (run_dir / "train.log").exists() else ""
        said = [ln for ln in (res.stderr + log).splitlines() if bad_name in ln and "WARN" in ln.upper()]
        return Outcome("clear", said[0][:200]) if said else Outcome("silent", "resumed without a word")
    return refused(res)


def resume(ctx: Ctx, run_dir: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return ctx.train(f"resume={run_dir}", "training.epochs=3", *extra, env=env)


def alter_checkpoint(path: Path, change: Callable[[dict], None]) -> None:
    with np.load(path, allow_pickle=False) as z:
        s = {k: z[k] for k in z.files}
    change(s)
    np.savez(path, **s)


def weight_key(path: Path) -> str:
    with np.load(path, allow_pickle=False) as z:
        return [k for k in z.files if k.endswith(".W")][0]


# -- bad data ----------------------------------------------------------------------------
def _fake_mnist(root: Path, corrupt: Callable[[bytes], bytes]) -> Path:
    import gzip
    mnist = root / "mnist"
    mnist.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 10)):
        images = b"\x00\x00\x08\x03" + np.array([n, 28, 28], ">i4").tobytes() + rng.integers(0, 255, n * 784,
                                                                                               np.uint8).tobytes()
        labels = b"\x00\x00\x08\x01" + np.array([n], ">i4").tobytes() + rng.integers(0, 10, n, np.uint8).tobytes()
        (mnist / f"{prefix}-images-idx3-ubyte.gz").write_bytes(corrupt(gzip.compress(images)))
        (mnist / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    return mnist


@case("bad data")
def truncated_mnist_file(ctx: Ctx) -> Outcome:
    root = ctx.root / "data_trunc"
    _fake_mnist(root, lambda b: b[: len(b) // 2])
    res = ctx.train("runtime=local", "data=mnist", f"data.root={root}", "data.download=false", "model.sizes=[784,20,10]",
                    "data.n_train=50", "data.n_test=10", "logging=off", f"hydra.run.dir={ctx.root / 'r_trunc'}")
    return refused(res)


@case("bad data", slow=True)
def mnist_file_with_a_wrong_magic(ctx: Ctx) -> Outcome:
    import gzip
    root = ctx.root / "data_magic"
    _fake_mnist(root, lambda b: gzip.compress(b"\x00\x00\x08\x07" + gzip.decompress(b)[4:]))
    res = ctx.train("runtime=local", "data=mnist", f"data.root={root}", "data.download=false", "model.sizes=[784,20,10]",
                    "data.n_train=50", "data.n_test=10", "logging=off", f"hydra.run.dir={ctx.root / 'r_magic'}")
    return refused(res)


# -- corrupt or altered checkpoints --------------------------------------------------------
@case("checkpoints")
def wrong_shape_weight(ctx: Ctx) -> Outcome:
    run_dir = ctx.copy("ck_shape")
    p = run_dir / "checkpoints" / NEWEST
    key = weight_key(p)
    alter_checkpoint(p, lambda s: s.__setitem__(key, s[key][:1]))
    return fell_back_or_refused(resume(ctx, run_dir), NEWEST, run_dir)


@case("checkpoints")
def float_weight_in_an_int_run(ctx: Ctx) -> Outcome:
    run_dir = ctx.copy("ck_dtype")
    p = run_dir / "checkpoints" / NEWEST
    key = weight_key(p)
    alter_checkpoint(p, lambda s: s.__setitem__(key, s[key] + 0.7))
    return fell_back_or_refused(resume(ctx, run_dir), NEWEST, run_dir)


@case("checkpoints")
def truncated_newest_checkpoint(ctx: Ctx) -> Outcome:
    run_dir = ctx.copy("ck_trunc")
    p = run_dir / "checkpoints" / NEWEST
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return fell_back_or_refused(resume(ctx, run_dir), NEWEST, run_dir)


def _slow_checkpoint_case(name: str, change: Callable[[Path], None]) -> None:
    def run(ctx: Ctx) -> Outcome:
        run_dir = ctx.copy(f"ck_{name}")
        change(run_dir / "checkpoints" / NEWEST)
        return fell_back_or_refused(resume(ctx, run_dir), NEWEST, run_dir)
    CASES.append(Case(f"checkpoint_{name}", "checkpoints", run, slow=True))


def _flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    for i in np.random.default_rng(3).integers(0, len(data), 8):
        data[i] ^= 0x55
    p.write_bytes(bytes(data))


def _same_values_altered(p: Path) -> None:  # right name, shape and dtype; different values
    key = weight_key(p)
    alter_checkpoint(p, lambda s: s.__setitem__(key, s[key][::-1].copy()))


_slow_checkpoint_case("zero_bytes", lambda p: p.write_bytes(b""))
_slow_checkpoint_case("flipped_bytes", _flip)
_slow_checkpoint_case("nan_weight", lambda p: alter_checkpoint(
    p, lambda s: s.__setitem__(weight_key(p), np.full(s[weight_key(p)].shape, np.nan))))
_slow_checkpoint_case("array_missing", lambda p: alter_checkpoint(p, lambda s: s.pop(weight_key(p))))
_slow_checkpoint_case("object_array", lambda p: p.write_bytes(_object_npz()))
_slow_checkpoint_case("altered_values_same_shape", _same_values_altered)


def _object_npz() -> bytes:
    import io
    buf = io.BytesIO()
    np.savez(buf, x=np.array([{"a": 1}], dtype=object))
    return buf.getvalue()


# -- traffic parts ---------------------------------------------------------------------------
def _first_part(run_dir: Path) -> Path:
    return sorted((run_dir / "traffic").glob("actor=*/part-*.parquet"))[0]


@case("traffic")
def traffic_part_with_a_foreign_schema(ctx: Ctx) -> Outcome:
    import pyarrow as pa
    import pyarrow.parquet as pq
    run_dir = ctx.copy("tr_schema")
    part = _first_part(run_dir)
    pq.write_table(pa.table({"x": [1, 2, 3]}), part)
    out = refused(ctx.traffic(str(run_dir)), str(part), prog="distspike-traffic: error:")
    skip = ctx.traffic(str(run_dir), "--skip-bad")
    if out.kind == "clear" and (skip.returncode != 0 or "skipped 1 bad part" not in skip.stderr):
        return Outcome("silent", "--skip-bad did not read the other parts")
    return out


@case("traffic")
def traffic_part_with_flipped_bytes(ctx: Ctx) -> Outcome:
    run_dir = ctx.copy("tr_flip")
    part = _first_part(run_dir)
    data = bytearray(part.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 16):
        data[i] ^= 0xFF
    part.write_bytes(bytes(data))
    return refused(ctx.traffic(str(run_dir)), str(part), prog="distspike-traffic: error:")


# -- config values ---------------------------------------------------------------------------
def _config_case(name: str, overrides: list[str], fixed_on: str | None = None, slow: bool = False,
                 must_mention: str = "", limit_memory: bool = False) -> None:
    def run(ctx: Ctx) -> Outcome:
        env = ctx.env()
        res = ctx.train(*BASE, "logging=off", *overrides, f"hydra.run.dir={ctx.root / ('cfg_' + name)}",
                        env=env) if not limit_memory else _train_limited(ctx, overrides, name)
        return refused(res, must_mention)
    CASES.append(Case(f"config_{name}", "config values", run, slow, fixed_on))


def _train_limited(ctx: Ctx, overrides: list[str], name: str) -> subprocess.CompletedProcess:
    """A run under an 8 GiB address-space limit (a missing memory preflight fails, never swaps the host)."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
    return subprocess.run(tool("distspike-train") + [*BASE, "logging=off", *overrides,
                                                      f"hydra.run.dir={ctx.root / ('cfg_' + name)}"],
                          cwd=ctx.root, env=ctx.env(), capture_output=True, text=True, timeout=300, preexec_fn=limit)


_config_case("negative_size", ["model.sizes=[64,-3,10]"], must_mention="model.sizes")
_config_case("unknown_key", ["training.ruel=sgd"], must_mention="training.ruel")
_config_case("w_init_1e308", ["model.dtype=float64", "model.w_init=1e308"], must_mention="model.w_init")
_config_case("int_w_init_1e6", ["model.w_init=1e6"], slow=True)
_config_case("int_eta_1e-17", ["training.eta=1e-17"], slow=True)
_config_case("huge_layer", ["model.dtype=float64", "model.sizes=[64,50000000,10]", "model.w_init=1e-4"], must_mention="needs", slow=True,
             limit_memory=True)


# -- kills ------------------------------------------------------------------------------------
@case("kills", slow=True)
def sigkill_of_the_driver_then_resume(ctx: Ctx) -> Outcome:
    run_dir = ctx.root / "killed"
    proc = subprocess.Popen(tool("distspike-train") + [*BASE, f"hydra.run.dir={run_dir}"], cwd=ctx.root, env=ctx.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = run_dir / "checkpoints" / "epoch_0001.json"
    while proc.poll() is None and not first.exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    res = ctx.train(f"resume={run_dir}")
    if res.returncode != 0:
        return refused(res) if "Traceback" in res.stderr else Outcome("silent", "resume after a kill failed")
    with np.load(ctx.base / "checkpoints" / NEWEST) as a, np.load(run_dir / "checkpoints" / NEWEST) as b:
        same = a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    return Outcome("ok", "bit-identical") if same else Outcome("silent", "resumed weights differ")


# -- disk full ----------------------------------------------------------------------------------
ENOSPC_HOOK = """
import builtins, errno, io, os
_open = io.open


class _Full:
    # a file under checkpoints/ that fails with ENOSPC after DS_FULL_AFTER bytes
    def __init__(self, f, name):
        self._f, self._name, self._left = f, name, int(os.environ["DS_FULL_AFTER"])

    def write(self, b):
        self._left -= len(b)
        if self._left < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._name)
        return self._f.write(b)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _open_full(file, mode="r", *a, **k):
    f = _open(file, mode, *a, **k)
    if any(c in mode for c in "wax") and "checkpoints" in str(file):
        return _Full(f, str(file))
    return f


if os.environ.get("DS_FULL_AFTER"):
    builtins.open = io.open = _open_full
"""


@case("disk full")
def enospc_while_checkpointing(ctx: Ctx) -> Outcome:
    run_dir = ctx.copy("full")
    hook = ctx.root / "enospc_hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(ENOSPC_HOOK)
    before = {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()}
    env = ctx.env(PYTHONPATH=os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])),
                  DS_FULL_AFTER="2000")
    out = refused(resume(ctx, run_dir, env=env))
    after = {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()}
    if any(after.get(k) != v for k, v in before.items()):
        return Outcome("silent", "a checkpoint written before the disk filled changed")
    if any(n.endswith(".tmp") for n in after):
        return Outcome("silent", "left a .tmp file")
    return out


# -- concurrency ----------------------------------------------------------------------------------
@case("concurrency")
def two_runs_into_one_run_dir(ctx: Ctx) -> Outcome:
    run_dir = ctx.root / "twice"
    procs = [subprocess.Popen(tool("distspike-train") + [*BASE, f"seed={seed}", f"hydra.run.dir={run_dir}"],
                              cwd=ctx.root, env=ctx.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (1, 2)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    if any("Traceback" in err for _, err in results):
        return Outcome("traceback", "")
    if sorted(rc for rc, _ in results) != [0, 2]:
        return Outcome("silent", f"exit codes {[rc for rc, _ in results]}: both ran into one directory")
    loser = [err for rc, err in results if rc == 2][0]
    rows = (run_dir / "curve.csv").read_text().strip().splitlines()
    return Outcome("clear", loser.strip()[:200]) if len(rows) == 3 else Outcome("silent", f"curve.csv: {len(rows)} rows")


@case("concurrency", slow=True)
def a_new_run_into_a_finished_run_dir(ctx: Ctx) -> Outcome:
    run_dir = ctx.copy("finished")
    before = tree(run_dir)
    return unchanged(refused(ctx.train(*BASE, "seed=5", f"hydra.run.dir={run_dir}"), "resume="), before, run_dir)


# -- untrusted run directories ---------------------------------------------------------------------
@case("untrusted run dirs")
def pwned_overrides(ctx: Ctx) -> Outcome:
    run_dir = ctx.copy("pwned")
    target = ctx.root / "PWNED"
    with open(run_dir / ".hydra" / "overrides.yaml", "a") as f:
        f.write(f"- +hydra.callbacks.pwn._target_=os.makedirs\n- +hydra.callbacks.pwn.name={target}\n")
    before = tree(run_dir)
    res = resume(ctx, run_dir)
    if target.exists():
        return Outcome("hole", f"the resume called os.makedirs({target})")
    return unchanged(refused(res, "overrides.yaml"), before, run_dir)


@case("untrusted run dirs")
def symlinked_curve_csv(ctx: Ctx) -> Outcome:
    run_dir = ctx.copy("link_curve")
    victim = ctx.root / "victim_curve.txt"
    victim.write_text("precious\n")
    (run_dir / "curve.csv").unlink()
    (run_dir / "curve.csv").symlink_to(victim)
    res = resume(ctx, run_dir)
    if victim.read_text() != "precious\n":
        return Outcome("hole", "the resume wrote through curve.csv into a file outside the run dir")
    return refused(res, "symlink")


def _link_case(name: str, link: str, slow: bool = True) -> None:
    def run(ctx: Ctx) -> Outcome:
        run_dir = ctx.copy(f"link_{name}")
        outside = ctx.root / f"outside_{name}"
        outside.mkdir()
        victim = outside / "victim"
        victim.write_text("precious\n")
        path = run_dir / link
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        path.symlink_to(victim)
        before = tree(outside)
        res = resume(ctx, run_dir)
        if tree(outside) != before or len(list(outside.iterdir())) != 1:
            return Outcome("hole", f"the resume wrote through {link} outside the run dir")
        return refused(res, "symlink")
    CASES.append(Case(f"symlinked_{name}", "untrusted run dirs", run, slow))


_link_case("train_log", "train.log")
_link_case("hydra_config", ".hydra/config.yaml")
_link_case("curve_tmp", ".curve.csv.tmp")


def _interpolation(ctx: Ctx) -> Outcome:
    run_dir = ctx.copy("interp")
    with open(run_dir / ".hydra" / "overrides.yaml", "a") as f:
        f.write("- data.root=${oc.env:HOME}\n")
    before = tree(run_dir)
    return unchanged(refused(resume(ctx, run_dir), "interpolation"), before, run_dir)


CASES.append(Case("resolver_interpolation_in_overrides", "untrusted run dirs", _interpolation, slow=True))


# -- pytest -----------------------------------------------------------------------------------------
if pytest is not None:
    def _param(c: Case):
        marks = [pytest.mark.slow] if c.slow else []
        if c.fixed_on:
            marks.append(pytest.mark.xfail(strict=False, reason=f"fixed on branch {c.fixed_on}"))
        return pytest.param(c, id=c.name, marks=marks)

    @pytest.fixture(scope="module")
    def ctx(tmp_path_factory):
        root = tmp_path_factory.mktemp("adversarial")
        return Ctx(root, make_base(root))

    @pytest.mark.parametrize("c", [_param(c) for c in CASES])
    def test_adversarial(ctx, c):
        out = c.run(ctx)
        assert out.kind in ("clear", "ok"), f"{c.klass}: {c.name}: {out.kind}: {out.detail}"


# -- script -----------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run the adversarial cases of issue 19 and count the outcomes.")
    parser.add_argument("--slow", action="store_true", help="also run the heavier cases")
    parser.add_argument("-k", default="", help="only cases whose name contains this")
    args = parser.parse_args(argv)
    chosen = [c for c in CASES if (args.slow or not c.slow) and args.k in c.name]
    counts = dict.fromkeys(KINDS, 0)
    with tempfile.TemporaryDirectory(prefix="dsadv-") as tmp:
        ctx = Ctx(Path(tmp), make_base(Path(tmp)))
        for c in chosen:
            try:
                out = c.run(ctx)
            except Exception as ex:  # the harness itself, not distspike: shown, counted as a traceback
                out = Outcome("traceback", f"harness: {type(ex).__name__}: {ex}"[:200])
            counts[out.kind] += 1
            note = f" [fixed on {c.fixed_on}]" if c.fixed_on else ""
            print(f"{out.kind:9s} {c.klass:18s} {c.name}{note}: {out.detail}", flush=True)
    print(f"\n{len(chosen)} cases: {counts['clear']} clear errors, {counts['ok']} correct results, "
          f"{counts['traceback']} tracebacks, {counts['silent']} silent corruptions, {counts['hole']} holes")
    return 0 if counts["traceback"] + counts["silent"] + counts["hole"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
