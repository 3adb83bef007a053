"""User-facing failures of ``distspike-train``: one line on stderr, non-zero exit.

A wrong config, missing data or an unplaceable actor group is the user's to fix, so
it is reported as a single line naming the key (no traceback). ``HYDRA_FULL_ERROR=1``
re-raises instead, for the full stack trace.
"""
from __future__ import annotations

import os
import sys

from distspike.config import ConfigError
from distspike.data import DataError

PROG = "distspike-train"
EXIT_USAGE = 2
EXIT_FAILED = 3  # the run itself failed (e.g. lost actors beyond checkpoint.max_restarts)


class UserError(Exception):
    """A problem the user can fix (bad override, incompatible resume, placement...)."""


#: exceptions reported as one line instead of a traceback
USER_ERRORS = (ConfigError, DataError, UserError)


def one_line(message: str) -> str:
    """Collapse a (possibly multi-line) message into one line."""
    parts = [line.strip() for line in str(message).splitlines() if line.strip()]
    return " ".join(parts) if parts else "unknown error"


def full_errors() -> bool:
    """``HYDRA_FULL_ERROR=1``: show tracebacks instead of one-line reports."""
    return os.environ.get("HYDRA_FULL_ERROR", "") == "1"


def report(ex: BaseException) -> str:
    """Print ``distspike-train: error: <message>`` to stderr; return the message."""
    msg = one_line(str(ex))
    print(f"{PROG}: error: {msg}", file=sys.stderr, flush=True)
    return msg
