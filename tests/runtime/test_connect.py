"""distspike/runtime/connect.py: a dead cluster address fails fast, in one line naming it."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distspike.runtime.connect import host_port, probe


def dead_address() -> str:
    """``127.0.0.1:<port>`` with nothing listening (a port just freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"


@pytest.mark.parametrize("address, expected", [
    ("10.0.0.1:6379", ("10.0.0.1", 6379)), ("ray://head:10001", ("head", 10001)),
    ("[::1]:6379", ("::1", 6379)), ("auto", None)])
def test_host_port(address, expected):
    assert host_port(address) == expected


@pytest.mark.parametrize("address", ["head", "head:", ":6379", "head:port", "head:70000"])
def test_bad_address_names_it(address):
    with pytest.raises(ConnectionError, match="not host:port"):
        probe(address)


def test_probe_names_the_address_as_given():
    address = dead_address()
    with pytest.raises(ConnectionError) as info:
        probe(address)
    assert f"runtime.address={address} " in str(info.value)
    assert "refused" in str(info.value).lower()


def test_probe_accepts_a_listening_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        probe(f"127.0.0.1:{s.getsockname()[1]}")


def test_dead_cluster_address_fails_fast_in_one_line(tmp_path):
    """The whole command, not only the probe: well under a minute (bound 45 s), one line, exit 2."""
    address = dead_address()
    cmd = [sys.executable, "-m", "distspike.train", "runtime=ray_cluster", f"runtime.address={address}",
           "data=digits", "model=digits_small", f"hydra.run.dir={tmp_path / 'run'}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - t0
    print(f"dead address {address}: failed after {seconds:.1f} s")
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, res.stderr
    assert any(f"runtime.address={address}" in line for line in lines), res.stderr
    assert not any("Traceback" in line or "Failed to connect to GCS" in line for line in lines), res.stderr
    assert seconds < 45, f"took {seconds:.1f} s"
