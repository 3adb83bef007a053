"""distspike/runtime/interrupt.py: Ctrl-C stops a run cleanly and prints the command that continues it."""
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from distspike.cli import checkpoint
from distspike.runtime import interrupt

#: 300 digits on the embedded Ray take several seconds an epoch: time to interrupt the first one
RAY_RUN = ["runtime=ray_local", "data=digits", "model=digits_small", "training.epochs=2", "data.n_train=300",
           "data.n_test=50", "eval_train=50", "logging=off"]


class FakeGuard:
    def __init__(self, fail=False):
        self.last, self.fail, self.saved = None, fail, []

    def take(self, epoch, index):
        if self.fail:
            raise RuntimeError("actor gone")
        self.last = interrupt_snapshot(epoch, index)
        return self.last

    def commit(self, snap):
        snap.path = f"ck-{snap.epoch}-{snap.index}"
        self.saved.append(snap.path)


def interrupt_snapshot(epoch, index):
    from distspike.runtime.recovery import Snapshot
    return Snapshot(epoch, index, {})


def test_stop_here_saves_the_position():
    guard = FakeGuard()
    ex = interrupt.stop_here(guard, 1, 17)
    assert guard.saved == ["ck-1-17"] and "epoch 1 + 17 samples" in ex.where


def test_stop_here_keeps_the_last_checkpoint_when_the_state_is_gone():
    guard = FakeGuard(fail=True)
    guard.last = interrupt_snapshot(1, 0)
    guard.last.path = "ck-1-0"
    ex = interrupt.stop_here(guard, 1, 17)
    assert guard.saved == [] and "epoch 1 + 0 samples (ck-1-0)" in ex.where


def test_first_sigint_sets_the_flag_second_raises():
    with interrupt.stop_on_sigint():
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupt.requested()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert not interrupt.requested()


def session_processes(sid: int) -> list[str]:
    """Command lines of the live processes of session ``sid`` (everything the run started)."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                out.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, ValueError, IndexError):
            continue
    return out


class Output:
    """``proc``'s stdout, read line by line by a thread, so that waiting for a line has a deadline: a run that
    goes silent fails the test at the deadline instead of hanging the suite in ``readline``."""

    def __init__(self, proc):
        self.lines: list[str] = []
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for line in iter(stream.readline, ""):
            self.queue.put(line)
        self.queue.put(None)  # end of output

    def wait_for(self, text: str, timeout: float = 300) -> None:
        """Until a line containing ``text`` (generous default: Ray's start and the kernels' first compile on a
        loaded CI machine)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return
        raise AssertionError(f"no line with {text!r} within {timeout:g} s:\n{''.join(self.lines)}")

    def rest(self, timeout: float = 120) -> str:
        """All the output, once it has ended (the process exited)."""
        self.thread.join(timeout)
        while not self.queue.empty():
            line = self.queue.get()
            if line is not None:
                self.lines.append(line)
        return "".join(self.lines)


@pytest.mark.ray
def test_ctrl_c_on_embedded_ray_leaves_no_process_and_prints_resume(tmp_path):
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "distspike.train", *RAY_RUN, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output = Output(proc)
        output.wait_for("epoch 1: 10 %")  # training is under way (a progress line: output is no tty)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
        proc.wait(timeout=300)
        out = output.rest()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out
    assert f"continue with: distspike-train resume={run_dir}" in out, out
    assert "Traceback" not in out, out
    deadline = time.monotonic() + 120  # Ray's daemons exit shortly after the driver (polled: slow only if loaded)
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert session_processes(proc.pid) == []
    ck = checkpoint.latest(run_dir)
    assert ck is not None and (ck.epoch, ck.index) != (0, 0)
