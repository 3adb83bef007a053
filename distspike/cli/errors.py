"""User-facing failures of ``distspike-train``: one line on stderr, non-zero exit.

A wrong config, missing data or an unplaceable actor group is the user's to fix, so
it is reported as a single line naming the key (no traceback). ``HYDRA_FULL_ERROR=1``
re-raises instead, for the full stack trace.
"""
from __future__ import annotations

import errno
import functools
import logging
import os
import sys

from distspike.config import ConfigError
from distspike.data import DataError

PROG = "distspike-train"
EXIT_USAGE = 2
EXIT_FAILED = 3  # the run itself failed (e.g. lost actors beyond checkpoint.max_restarts)


class UserError(Exception):
    """A problem the user can fix (bad override, incompatible resume, placement...)."""


class WriteError(UserError):
    """A file of the run could not be written (disk full, read-only, no permission...)."""


def write_failed(ex: OSError, path) -> WriteError:
    """``WriteError`` naming ``path`` and the reason (``ENOSPC``: free space, then resume)."""
    code = errno.errorcode.get(ex.errno or 0, "")
    reason = f"{ex.strerror or one_line(str(ex))}" + (f" ({code})" if code else "")
    hint = "; free some space and continue the run with resume=RUN_DIR from its last checkpoint" \
        if ex.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return WriteError(f"cannot write {str(path)!r}: {reason}{hint}")


def disk_full(ex: BaseException) -> OSError | None:
    """The ``ENOSPC``/``EDQUOT`` error behind ``ex`` (itself, its cause, or a Ray task error's cause), or None."""
    seen = 0
    while ex is not None and seen < 8:
        if isinstance(ex, OSError) and ex.errno in (errno.ENOSPC, errno.EDQUOT):
            return ex
        ex, seen = getattr(ex, "cause", None) or ex.__cause__ or ex.__context__, seen + 1
    return None


def reports_disk_full(fn):
    """Decorate a job: a disk-full error anywhere in it (traffic logs, outputs) becomes a ``WriteError``."""
    @functools.wraps(fn)
    def job(cfg, run_dir, *args, **kwargs):
        try:
            return fn(cfg, run_dir, *args, **kwargs)
        except (OSError, RuntimeError) as ex:
            full = disk_full(ex)
            if full is None or full_errors():
                raise
            raise write_failed(full, full.filename or f"{run_dir}/...") from ex
    return job


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
    log_to_files(f"error: {msg}")
    return msg


def log_to_files(msg: str, level: int = logging.ERROR) -> None:
    """Write ``msg`` to the root logger's file handlers only (``train.log``), not to the console again."""
    root = logging.getLogger()
    record = root.makeRecord("distspike.train", level, __file__, 0, msg, None, None)
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
