"""The emulated cluster fixture: a 3-node rig (``distspike/cluster/emulated.py``) for this module's tests.

Needs root, network namespaces and a memory cgroup; where any is missing the tests
skip with one line saying which. The rig is stopped after the module, also when a
test fails; a rig left by a crashed session in the same dir is stopped first.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from distspike.cluster import emulated

RIG_DIR = f"/tmp/dsrt-{os.getuid()}"  # short: Ray's socket paths under it must fit 107 bytes
NODES = 3


def needs_rig():
    """Skip (one line) where a rig cannot be built."""
    why = emulated.host_problem()
    if why:
        pytest.skip(f"emulated cluster unavailable: {why}")


#: the started rig of this session, or None (see ``pytest_runtest_teardown``)
_started: dict = {}


@pytest.fixture(scope="session")
def rig():
    """A started 3-node rig: ``.dir``, ``.address``, ``.state`` (the rig's state file).

    One rig for every test of this directory (a start costs ~17 s of a 2-core CI run): it is
    stopped after the directory's last test (``pytest_runtest_teardown``), or at the end of the
    session, also when a test fails. Tests that damage a node restart it (``damaged`` in
    test_node_loss.py), so they leave the rig as they found it."""
    needs_rig()
    emulated.stop(RIG_DIR, grace_s=1.0)  # a stale rig of a crashed session
    address = emulated.start(RIG_DIR, NODES)
    _started["dir"] = RIG_DIR
    try:
        yield SimpleNamespace(dir=RIG_DIR, address=address, state=emulated.Rig.load(RIG_DIR).state)
    finally:
        _stop_rig()


def _stop_rig() -> None:
    if _started.pop("dir", None):
        emulated.stop(RIG_DIR, grace_s=2.0)


@pytest.hookimpl(trylast=True)  # after the test's own fixtures are torn down (``damaged`` restarts nodes)
def pytest_runtest_teardown(item, nextitem):
    """Stop the shared rig once no later test of this directory can use it (its idle Ray nodes
    would otherwise take CPU from the rest of the session)."""
    if not _started:
        return
    here, items = Path(__file__).parent, item.session.items
    later = items[items.index(item) + 1:] if item in items else [nextitem] if nextitem else []
    if not any(here in Path(i.path).parents for i in later):
        _stop_rig()


def final_layers(run_dir: Path, epoch: int = 1) -> dict[str, np.ndarray]:
    """Each layer's forward ``W`` and backward replica ``W^T`` of the run's last checkpoint (one
    ``.npz`` from ``runtime=local``, a part per actor from Ray), reassembled from the shards' blocks."""
    from distspike.cli import checkpoint
    ck = checkpoint.latest(Path(run_dir))
    assert ck is not None and ck.epoch == epoch and ck.index == 0, ck
    z = ck.load_state()
    out = {}
    for kind, field in (("forward", "W"), ("backward", "WT")):
        keys = sorted((int(m[1]), int(m[2]), k) for k in z
                      if (m := re.fullmatch(rf"{kind}\.(\d+)\.(\d+)\.{field}", k)))
        for layer in sorted({l for l, _, _ in keys}):
            out[f"{kind}.{layer}"] = np.concatenate([z[k] for l, _, k in keys if l == layer], axis=1)
    return out


@pytest.fixture(scope="session")
def layers():
    """``final_layers``: a run dir's final weights, whatever runtime wrote its checkpoint."""
    return final_layers
