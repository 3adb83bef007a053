"""The embedded default: with no address the runtime starts its own Ray, on loopback only, and stops it cleanly."""
import json
import subprocess
import sys
import tempfile
import time

from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

SCRIPT = """
import json, sys, numpy as np, ray
from distspike.config import ModelConfig, NetConfig, RuntimeConfig, TrainingConfig
from distspike.runtime import make_net
from distspike.runtime.local import local_net
cfg = NetConfig(ModelConfig((6, 5, 3), 0.5), TrainingConfig(steps=3))
X = np.random.default_rng(0).uniform(0, 1, (3, 6))

def listening(temp_dir):
    # local addresses of the TCP sockets in LISTEN state held by the driver and the instance's processes
    import os
    pids = [os.getpid()] + [int(p) for p in os.listdir("/proc") if p.isdigit() and _mentions(p, temp_dir)]
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            pass
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                found.append(f[1].split(":")[0])
    return found


def _mentions(pid, text):
    try:
        return text.encode() in open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False


with make_net(cfg, RuntimeConfig("ray_local", 2, temp_dir=sys.argv[1])) as net:
    started = ray.is_initialized()
    for x in X:
        net.train_sample(x, 1)
    w = net.raw_weights()
    addresses = listening(sys.argv[1])
ref = local_net(cfg, shards=2)
for x in X:
    ref.train_sample(x, 1)
print("RESULT " + json.dumps({"started": started, "after": ray.is_initialized(),
                  "same": all((a == b).all() for a, b in zip(w, ref.raw_weights())), "listening": addresses}))
"""


#: 127.0.0.1, ::1 and ::ffff:127.0.0.1 as /proc/net/tcp{,6} print them (hex, host byte order words)
LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


def _procs_using(path):
    """PIDs whose command line mentions ``path`` (Ray's processes carry their session dir)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if path.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def test_embedded_ray_starts_trains_and_shuts_down():
    temp_dir = tempfile.mkdtemp(prefix="dse-", dir="/tmp")
    res = subprocess.run([sys.executable, "-c", SCRIPT, temp_dir], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    # Ray's driver may print its own notices to the same stdout; the result is the line marked RESULT
    out = json.loads([line for line in res.stdout.splitlines() if line.startswith("RESULT ")][-1][7:])
    listening = out.pop("listening")
    assert out == {"started": True, "after": False, "same": True}
    assert len(listening) >= 3, "found too few listening sockets to judge (GCS, raylet, workers)"
    assert set(listening) <= LOOPBACK, f"the embedded Ray listens beyond loopback: {sorted(set(listening))}"
    deadline = time.monotonic() + 120  # polled: only a loaded machine takes long
    while _procs_using(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _procs_using(temp_dir), "processes of the embedded instance outlived it"
