"""One run per run directory (``distspike.cli.rundir``), and a resumed directory read as data.

- A run holds a lock on its directory for its whole life; a second run into it is
  refused with one line before Hydra writes anything; the lock of a killed process is
  released by the kernel; a new run into a directory that holds a run is refused.
- ``resume=RUN_DIR`` replays only distspike's own keys from ``.hydra/overrides.yaml``
  (the PWNED payload of issue 19 creates nothing), and refuses a run directory holding
  a symlink that leads out of it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from distspike.cli import rundir
from distspike.cli.argv import resume_refusal, saved_overrides
from distspike.cli.errors import UserError

TINY = ["runtime=local", "data=digits", "model=digits_small", "training.epochs=1", "data.n_train=100",
        "data.n_test=50", "logging=off"]


def command() -> list[str]:
    script = Path(sys.executable).with_name("distspike-train")
    return [str(script)] if script.exists() else [sys.executable, "-m", "distspike.train"]


def env(cwd: Path) -> dict:
    out = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    out.update(DISTSPIKE_DATA=str(cwd), PYTHONUNBUFFERED="1")
    return out


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command() + args, cwd=cwd, env=env(cwd), capture_output=True, text=True, timeout=300)


def one_error(res: subprocess.CompletedProcess) -> str:
    """The single ``distspike-train: error:`` line of a refused run (asserting there is nothing else)."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("distspike-train: error:"), res.stderr
    return lines[0]


def tree(directory: Path) -> dict:
    """Every file under ``directory`` with its bytes (to show that nothing changed)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """One tiny finished run with a checkpoint (copied by the tests that change it)."""
    cwd = tmp_path_factory.mktemp("base")
    res = run([*TINY, f"hydra.run.dir={cwd / 'run'}"], cwd)
    assert res.returncode == 0, res.stderr
    return cwd / "run"


def copy_of(base: Path, tmp_path: Path) -> Path:
    import shutil
    shutil.copytree(base, tmp_path / "run", symlinks=True)
    return tmp_path / "run"


# -- the lock ----------------------------------------------------------------------------
HOLDER = "import sys; from distspike.cli import rundir; rundir.hold(sys.argv[1], resume=True); print('held', flush=True); sys.stdin.read()"


def hold_in_child(directory: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_held_directory_is_refused_and_a_dead_holder_releases_it(tmp_path):
    child = hold_in_child(tmp_path / "d")
    try:
        with pytest.raises(UserError, match=rf"in use by another distspike-train run \(pid {child.pid} on host"):
            rundir.hold(tmp_path / "d", resume=True)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    rundir.hold(tmp_path / "d", resume=True)  # the kernel dropped the killed process's lock
    assert (tmp_path / "d" / rundir.LOCK_NAME).read_text().split()[0] == str(os.getpid())
    rundir.release(tmp_path / "d")


def test_a_new_run_into_a_directory_holding_a_run_is_refused(tmp_path):
    (tmp_path / "d" / "checkpoints").mkdir(parents=True)
    rundir.hold(tmp_path / "d", resume=False)  # an empty directory holds no run (a mount point, say)
    rundir.release(tmp_path / "d")
    (tmp_path / "d" / "checkpoints" / "epoch_0001.json").write_text("{}")
    with pytest.raises(UserError, match="already holds a run .checkpoints.; continue it with resume="):
        rundir.hold(tmp_path / "d", resume=False)
    rundir.hold(tmp_path / "d", resume=True)
    rundir.release(tmp_path / "d")


def test_planned_dir_pins_the_default_pattern():
    directory, overrides = rundir.planned_dir(["seed=1"], multirun=False)
    assert str(directory).startswith("outputs/") and overrides == ["seed=1", f"hydra.run.dir={directory}"]
    assert rundir.planned_dir(["hydra.run.dir=/a/b"], False) == (Path("/a/b"), ["hydra.run.dir=/a/b"])
    assert rundir.planned_dir(["hydra.sweep.dir=/s"], True)[0] == Path("/s")
    assert rundir.planned_dir(["hydra.run.dir=x/${hydra.job.name}"], False)[0] is None  # the job locks it


def test_a_second_run_into_a_locked_dir_touches_nothing(tmp_path, base):
    run_dir = copy_of(base, tmp_path)
    before = tree(run_dir)
    child = hold_in_child(run_dir)
    try:
        res = run([f"resume={run_dir}", "training.epochs=2"], tmp_path)
        res_new = run([*TINY, "seed=2", f"hydra.run.dir={run_dir}"], tmp_path)
    finally:
        child.stdin.close()
        child.wait()
    assert "is in use by another distspike-train run" in one_error(res)
    assert "is in use by another distspike-train run" in one_error(res_new)
    after = tree(run_dir)
    after.pop(rundir.LOCK_NAME), before.pop(rundir.LOCK_NAME, None)
    assert after == before


def test_two_concurrent_runs_into_one_dir(tmp_path):
    """Seeds 1 and 2 at once into one run dir: one runs, the other is refused in one line; no mixing."""
    run_dir = tmp_path / "run"
    procs = [subprocess.Popen(command() + [*TINY, "training.epochs=2", f"seed={seed}", f"hydra.run.dir={run_dir}"],
                              cwd=tmp_path, env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for seed in (1, 2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], [r[2][-2000:] for r in results]
    winner = [seed for seed, r in zip((1, 2), results) if r[0] == 0][0]
    loser = [r for r in results if r[0] == 2][0]
    assert len(loser[2].strip().splitlines()) == 1 and "Traceback" not in loser[2]
    assert json.loads((run_dir / "metrics.json").read_text())["seed"] == winner
    assert f"seed={winner}" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert len((run_dir / "curve.csv").read_text().strip().splitlines()) == 1 + 2  # header + 2 epochs


# -- resume reads the run directory as data -----------------------------------------------
@pytest.mark.parametrize("line", ["model.sizes=[64,30,10]", "+placement.forward.resources.gpu_node=1", "data=digits",
                                  "experiment=table3_fsgd", "data.options.remove=[a]", "training.eta=0.5"])
def test_distspikes_own_keys_are_replayed(line):
    assert resume_refusal(OverridesParser.create().parse_override(line)) is None


@pytest.mark.parametrize("line", ["+hydra.callbacks.pwn._target_=os.makedirs", "hydra.run.dir=/x",
                                  "hydra/launcher=basic", "model._target_=os.system", "seed=${oc.env:HOME}",
                                  "data.root='${oc.env:HOME}'", "+foo=1", "+training.ruel=sgd", "training.ruel=sgd",
                                  "model=../../tmp/evil", "routing=bfs,dfs", "~seed", "++seed=3",
                                  "model@x=digits_small"])
def test_anything_else_is_refused(line):
    assert resume_refusal(OverridesParser.create().parse_override(line))


def test_the_pwned_payload_creates_nothing(tmp_path, base):
    run_dir = copy_of(base, tmp_path)
    target = tmp_path / "PWNED"
    with open(run_dir / ".hydra" / "overrides.yaml", "a") as f:
        f.write(f"- +hydra.callbacks.pwn._target_=os.makedirs\n- +hydra.callbacks.pwn.name={target}\n")
    before = tree(run_dir)
    res = run([f"resume={run_dir}", "training.epochs=2"], tmp_path)
    line = one_error(res)
    n = len(before[".hydra/overrides.yaml"].decode().splitlines()) - 1
    assert f"overrides.yaml:{n}:" in line and "_target_" in line
    assert not target.exists() and tree(run_dir) == before


def test_a_malformed_overrides_file_is_one_line(tmp_path, base):
    run_dir = copy_of(base, tmp_path)
    (run_dir / ".hydra" / "overrides.yaml").write_text("{a: [1\n")
    with pytest.raises(UserError, match="not valid YAML"):
        saved_overrides(run_dir)
    (run_dir / ".hydra" / "overrides.yaml").write_text("a: 1\n")
    with pytest.raises(UserError, match="not a list of override strings"):
        saved_overrides(run_dir)


@pytest.mark.parametrize("name", ["curve.csv", "train.log", ".curve.csv.tmp", "metrics.json", ".hydra/config.yaml",
                                  "checkpoints"])
def test_a_symlink_out_of_the_run_dir_is_refused(tmp_path, base, name):
    run_dir = copy_of(base, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("precious\n")
    link = run_dir / name
    if name == "checkpoints":  # the run's own checkpoints, moved out and linked
        link.rename(outside / name)
        link.symlink_to(outside / name)
    else:
        if link.exists():
            link.unlink()
        link.symlink_to(victim)
    before = tree(outside)
    res = run([f"resume={run_dir}", "training.epochs=2"], tmp_path)
    assert "symlink that leads out of it" in one_error(res) and name.split("/")[-1] in res.stderr
    assert tree(outside) == before


def test_a_planted_ray_tmp_link_is_replaced_not_followed(tmp_path):
    from distspike.cli.outputs import ray_temp_dir, remove_ray_temp_dir
    outside = tmp_path / "outside"
    outside.mkdir()
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "ray_tmp").symlink_to(outside, target_is_directory=True)
    temp, fallback = ray_temp_dir(run_dir)
    assert (run_dir / "ray_tmp").resolve() == temp.resolve() != outside.resolve()
    assert temp.name.startswith("dsrun-") if fallback else not temp.is_symlink()
    if fallback:
        remove_ray_temp_dir(run_dir, temp)
