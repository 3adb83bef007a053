"""One run per run directory: a lock held for the run's whole life, taken before Hydra writes.

Two ``distspike-train`` processes writing one run directory interleave ``curve.csv``,
overwrite each other's traffic parts and checkpoints, and both exit 0. So every run
holds an exclusive ``flock`` on ``RUN_DIR/.distspike.lock`` (its pid and host written
in it, for the message) from before Hydra writes ``RUN_DIR/.hydra/`` until the process
ends. The kernel drops the lock of a process that dies, so a stale lock never blocks a
resume. A second run into a locked directory is refused with one line and touches
none of the first run's files; a new run (not ``resume=``) into a directory that
already holds a run is refused too, pointing at ``resume=`` or a new directory, and so
is any run into a directory holding a symlink that leads out of it (a resumed
directory may come from someone else: ``curve.csv``, ``train.log`` or ``.hydra/``
planted as links would make the run write elsewhere).

The run directory Hydra will use is decided here, before Hydra starts
(``planned_dir``): ``hydra.run.dir`` / ``hydra.sweep.dir`` from the command line, or the
default pattern of ``conf/config.yaml`` with ``${now:...}`` filled in, which is then
pinned on the command line so that Hydra uses exactly that directory.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
from datetime import datetime
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from distspike.cli import CONF_DIR
from distspike.cli.errors import UserError

LOCK_NAME = ".distspike.lock"
#: files that say a directory already holds a run (or a sweep)
RUN_MARKERS = (".hydra", "checkpoints", "curve.csv", "metrics.json", "traffic", "config_resolved.yaml")
SWEEP_MARKERS = ("multirun.yaml", "sweep_summary.csv")
_NOW = re.compile(r"\$\{now:([^}]*)\}")

#: run directories this process holds, and their open lock files (held until exit)
HELD: dict[Path, int] = {}


def default_pattern(key: str) -> str:
    """``hydra.run.dir`` or ``hydra.sweep.dir`` as ``conf/config.yaml`` sets it."""
    conf = yaml.safe_load((CONF_DIR / "config.yaml").read_text())
    return str(conf["hydra"][key]["dir"])


def fill_now(pattern: str, now: datetime | None = None) -> str | None:
    """``pattern`` with each ``${now:FMT}`` filled in (one instant); None if other interpolations remain."""
    now = now or datetime.now()
    text = _NOW.sub(lambda m: now.strftime(m.group(1)), pattern)
    return None if "${" in text else text


def planned_dir(overrides: list[str], multirun: bool) -> tuple[Path | None, list[str]]:
    """The run (or sweep) directory Hydra will use, and the overrides that pin it.

    ``(None, overrides)`` when it cannot be known in advance (an interpolation other than
    ``${now:...}``): the job then locks its directory itself (``hold`` in ``train.app``).
    """
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = [o for o in OverridesParser.create().parse_overrides(overrides) if o.key_or_group == key]
    if given and not given[-1].is_delete():
        value = fill_now(str(given[-1].value()))
        return (Path(value) if value else None), overrides
    value = fill_now(default_pattern(key.split(".")[1]))
    if value is None:
        return None, overrides
    from distspike.cli.argv import quote
    return Path(value), [*overrides, f"{key}={quote(value)}"]


def holds_run(directory: Path, markers=RUN_MARKERS) -> str | None:
    """The first file of ``markers`` in ``directory`` (it already holds a run), else None.

    An empty directory of that name (a mount point made ready for the run, say) holds nothing.
    """
    for name in markers:
        path = directory / name
        if os.path.lexists(path) and not (path.is_dir() and not path.is_symlink() and not any(path.iterdir())):
            return name
    return None


def escaping_link(directory: Path) -> str | None:
    """The first symlink under ``directory`` whose target lies outside it (a write through it would
    escape the run directory), as ``'link -> target'``; None if there is none.

    ``ray_tmp`` (``outputs.RAY_TMP_LINK``) is not descended into: Ray's own links live
    there, and ``outputs.ray_temp_dir`` replaces a link of that name instead of following it.
    """
    root = directory.resolve()
    for parent, dirs, files in os.walk(directory, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(parent) / name
            if path == directory / "ray_tmp":
                continue
            if path.is_symlink():
                target = path.resolve()
                if target != root and root not in target.parents:
                    return f"{path} -> {os.readlink(path)}"
        dirs[:] = [d for d in dirs if Path(parent, d) != directory / "ray_tmp"]
    return None


def _holder(fd: int) -> str:
    """``pid N on host H`` as the holder wrote it in the lock file ('another process' if unreadable)."""
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").split()
        return f"pid {text[0]} on host {text[1]}" if len(text) >= 2 else "another process"
    except OSError:
        return "another process"


def _open_lock(directory: Path) -> int:
    """Open (create) ``directory/.distspike.lock`` without following a symlink planted there."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as ex:
        raise UserError(f"run directory {str(directory)!r}: cannot create its lock file {LOCK_NAME}: "
                        f"{ex.strerror or ex}") from None


def hold(directory: Path, resume: bool, sweep: bool = False) -> None:
    """Lock ``directory`` for this process's life; ``UserError`` if another run holds it.

    Unless ``resume``, a directory that already holds a run (or, with ``sweep``, a sweep)
    is refused as well. Holding a directory twice in one process is a no-op.
    """
    directory = Path(directory).absolute()
    if directory.resolve() in HELD:
        return
    fd = _open_lock(directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as ex:
        holder = _holder(fd)
        os.close(fd)
        if ex.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise UserError(f"run directory {str(directory)!r}: cannot lock it: {ex.strerror or ex}") from None
        raise UserError(f"run directory {str(directory)!r} is in use by another distspike-train run ({holder}); "
                        f"wait for it to end, or give a new hydra.run.dir") from None
    link = escaping_link(directory)
    if link:
        os.close(fd)
        raise UserError(f"run directory {str(directory)!r} holds a symlink that leads out of it ({link}); "
                        f"a run writes only inside its directory: remove the link, or give a new directory")
    found = None if resume else holds_run(directory, SWEEP_MARKERS if sweep else RUN_MARKERS)
    if found:
        os.close(fd)
        what = "a sweep" if sweep else "a run"
        hint = "give a new hydra.sweep.dir" if sweep else f"continue it with resume={directory}, or give a new " \
                                                         "hydra.run.dir"
        raise UserError(f"run directory {str(directory)!r} already holds {what} ({found}); {hint}")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    HELD[directory.resolve()] = fd


def release(directory: Path) -> None:
    """Give up the lock on ``directory`` (tests, and a process that runs several jobs)."""
    fd = HELD.pop(Path(directory).resolve(), None)
    if fd is not None:
        os.close(fd)
