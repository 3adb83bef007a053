"""A full disk (ENOSPC) while a run writes: one line, non-zero exit, the last good checkpoint stays,
no temp file is left, and a resume after freeing space gives the uninterrupted run's weights.

The real cases mount a small tmpfs (root only; skipped otherwise); the others make one
write fail with ENOSPC through a patched ``os.fsync`` or ``open``.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from distspike.cli import checkpoint, outputs
from distspike.cli.errors import WriteError
from distspike.cli.job import run_job

from test_checkpoint import _env, assert_same_state, final_state, job_config
from test_train_cli import command

RUN = ["runtime=local", "data=digits", "model.sizes=[64,30,10]", "model.dtype=int", "data.n_train=40",
       "data.n_test=20", "eval_train=20", "checkpoint.every_samples=10", "checkpoint.keep=0", "training.epochs=2",
       "logging.flush_rows=64"]


@contextlib.contextmanager
def tmpfs(where: Path, size: str):
    """A tmpfs of ``size`` mounted at ``where`` for the block; skips the test where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def grow(where: Path, size: str) -> None:
    """Free space: make the tmpfs at ``where`` larger."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("straight")
    run_job(job_config(*RUN), run_dir)
    return run_dir


def temp_files(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]


def assert_checkpoints_all_valid(run_dir: Path, caplog) -> checkpoint.Checkpoint:
    """The newest checkpoint validates (no warning: none was skipped)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, "distspike.checkpoint"):
        from distspike.cli.convert import run_spec
        from distspike.runtime.recovery import state_layout
        spec = run_spec(job_config(*RUN))
        ck = checkpoint.newest_valid(run_dir, state_layout(spec.net_config(64, 10), 1))
    assert ck is not None and not caplog.records, [r.getMessage() for r in caplog.records]
    return ck


def test_a_full_tmpfs_stops_the_run_cleanly_and_a_resume_after_freeing_space_is_exact(straight, tmp_path, caplog):
    with tmpfs(tmp_path / "mnt", "160k") as run_dir:
        with pytest.raises(WriteError) as err:
            run_job(job_config(*RUN), run_dir)
        msg = str(err.value)
        assert re.match(rf"cannot write '{re.escape(str(run_dir))}/[^']+': No space left on device \(ENOSPC\); "
                        r"free some space and continue the run with resume=RUN_DIR", msg), msg
        assert not temp_files(run_dir), temp_files(run_dir)
        assert not (run_dir / "metrics.json").exists()
        ck = assert_checkpoints_all_valid(run_dir, caplog)
        assert (ck.epoch, ck.index) != (2, 0), "the disk did not fill up before the run ended"
        grow(run_dir, "8m")
        run_job(job_config(*RUN, f"resume={run_dir}"), run_dir)
        assert_same_state(final_state(straight), final_state(run_dir))
        assert (run_dir / "curve.csv").read_text() .count("\n") == 3


def test_the_command_line_reports_a_full_checkpoint_disk_in_one_line_and_train_log(straight, tmp_path):
    """``RUN_DIR/checkpoints`` on a small tmpfs: exit 3, one line on stderr and in train.log, no traceback."""
    run_dir = tmp_path / "run"
    with tmpfs(run_dir / "checkpoints", "100k") as ckpts:
        res = subprocess.run(command() + [*RUN, f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=_env(tmp_path),
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 3, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"distspike-train: error: cannot write '{ckpts}/"), res.stderr
        assert "No space left on device (ENOSPC)" in lines[0] and "Traceback" not in res.stdout + res.stderr
        assert lines[0].removeprefix("distspike-train: ") in (run_dir / "train.log").read_text()
        assert not temp_files(run_dir)
        grow(ckpts, "8m")
        res = subprocess.run(command() + [f"resume={run_dir}"], cwd=tmp_path, env=_env(tmp_path),
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        assert_same_state(final_state(straight), final_state(run_dir))


@pytest.fixture
def fsync_fails(monkeypatch):
    """``arm(pattern)``: from now on, ``os.fsync`` of a file whose path matches ``pattern`` raises ENOSPC
    (``arm(None)``: no more)."""
    real = os.fsync

    def arm(pattern: str | None) -> None:
        def fsync(fd: int) -> None:
            if pattern is not None and re.search(pattern, os.readlink(f"/proc/self/fd/{fd}")):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(fd)
        monkeypatch.setattr(os, "fsync", fsync)
    return arm


@pytest.mark.parametrize("which", ["npz", "json"])
def test_a_checkpoint_that_cannot_be_written_leaves_the_last_good_one(straight, tmp_path, fsync_fails, caplog, which):
    fsync_fails(rf"epoch_0001_plus_000000010\.{which}\.tmp$")
    with pytest.raises(WriteError, match=rf"epoch_0001_plus_000000010\.{which}'.*ENOSPC"):
        run_job(job_config(*RUN), tmp_path)
    assert not temp_files(tmp_path)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names[-2:] == ["epoch_0001.json", "epoch_0001.npz"], names  # nothing of the failed one is left
    assert assert_checkpoints_all_valid(tmp_path, caplog).epoch == 1
    fsync_fails(None)  # space is free again
    run_job(job_config(*RUN, f"resume={tmp_path}"), tmp_path)
    assert_same_state(final_state(straight), final_state(tmp_path))


def test_a_traffic_part_that_cannot_be_written_is_one_line_naming_it(tmp_path, fsync_fails):
    fsync_fails(r"/\.traffic\..*part-000002\.parquet\.tmp$")  # written beside traffic/, then moved in
    with pytest.raises(WriteError, match=r"cannot write '[^']*/traffic/actor=[^/]+/part-000002\.parquet'.*ENOSPC"):
        run_job(job_config(*RUN), tmp_path)
    assert not temp_files(tmp_path)


@pytest.mark.parametrize("name", [outputs.CONFIG, outputs.CURVE])
def test_config_and_curve_writes_that_fail_leave_no_temp_file(tmp_path, monkeypatch, name):
    real_open = open

    def failing_open(path, *args, **kwargs):
        f = real_open(path, *args, **kwargs)
        if Path(path).name == f".{name}.tmp":
            f.write = lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        return f
    monkeypatch.setattr(outputs, "open", failing_open, raising=False)
    with pytest.raises(WriteError, match=rf"cannot write '[^']*/{re.escape(name)}': No space left on device"):
        run_job(job_config(*RUN), tmp_path)
    assert not temp_files(tmp_path)
