"""The C allocator's settings of a training process (issue 21: its peak RSS)."""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter


def one_arena() -> bool:
    """Make every thread allocate from glibc's main arena (``mallopt(M_ARENA_MAX, 1)``); whether it could.

    Each thread's first ``malloc`` otherwise gets an arena of its own (up to 8 per core), which
    keeps what that thread freed: the traffic writer thread (Parquet encoding) and the
    fused-rows thread held some 5 MiB of a training run's peak RSS that way. Their allocations
    are few, so sharing one arena costs no measurable time. To take effect it must come before
    those threads start. ``MALLOC_ARENA_MAX`` in the environment, if set, wins; a C library other
    than glibc (musl, macOS) is left alone.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_ARENA_MAX, 1))
