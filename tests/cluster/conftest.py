"""The emulated cluster fixture: a 3-node rig (``distspike/cluster/emulated.py``) for this module's tests.

Needs root, network namespaces and a memory cgroup; where any is missing the tests
skip with one line saying which. The rig is stopped after the module, also when a
test fails; a rig left by a crashed session in the same dir is stopped first.
"""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from distspike.cluster import emulated

RIG_DIR = f"/tmp/dsrt-{os.getuid()}"  # short: Ray's socket paths under it must fit 107 bytes
NODES = 3


def needs_rig():
    """Skip (one line) where a rig cannot be built."""
    why = emulated.host_problem()
    if why:
        pytest.skip(f"emulated cluster unavailable: {why}")


@pytest.fixture(scope="module")
def rig():
    """A started 3-node rig: ``.dir``, ``.address``, ``.state`` (the rig's state file)."""
    needs_rig()
    emulated.stop(RIG_DIR, grace_s=1.0)  # a stale rig of a crashed session
    address = emulated.start(RIG_DIR, NODES)
    try:
        yield SimpleNamespace(dir=RIG_DIR, address=address, state=emulated.Rig.load(RIG_DIR).state)
    finally:
        emulated.stop(RIG_DIR, grace_s=2.0)
