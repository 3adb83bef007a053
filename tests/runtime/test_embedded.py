"""The embedded default: with no address the runtime starts its own Ray and stops it cleanly."""
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
with make_net(cfg, RuntimeConfig("ray_local", 2, temp_dir=sys.argv[1])) as net:
    started = ray.is_initialized()
    for x in X:
        net.train_sample(x, 1)
    w = net.raw_weights()
ref = local_net(cfg, shards=2)
for x in X:
    ref.train_sample(x, 1)
print(json.dumps({"started": started, "after": ray.is_initialized(),
                  "same": all((a == b).all() for a, b in zip(w, ref.raw_weights()))}))
"""


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
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {"started": True, "after": False, "same": True}
    deadline = time.monotonic() + 20
    while _procs_using(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _procs_using(temp_dir), "processes of the embedded instance outlived it"
