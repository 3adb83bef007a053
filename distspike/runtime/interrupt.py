"""Ctrl-C during training: stop between two samples, checkpoint there, then shut down cleanly.

Inside ``stop_on_sigint()`` the first SIGINT only sets a flag. The epoch loop asks
``requested()`` before each sample; when it is set, the loop saves a checkpoint of
that position and raises ``Interrupted``, so the job closes its actors (and an
embedded Ray) on the way out, and the command prints the ``resume=`` line that
continues the run bit for bit. A second Ctrl-C raises ``KeyboardInterrupt`` at once
(the job still closes what it started; the last saved checkpoint stays valid).
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading

log = logging.getLogger("distspike.train")

_flag = threading.Event()


class Interrupted(BaseException):
    """Training stopped on Ctrl-C; ``where`` says where. A BaseException, like KeyboardInterrupt,
    so that no ``except Exception`` (recovery from lost actors, say) takes it for a failure."""

    def __init__(self, where: str):
        super().__init__(f"interrupted at {where}")
        self.where = where


def stop_here(guard, epoch: int, index: int) -> Interrupted:
    """Checkpoint the position ``epoch`` + ``index`` samples through ``guard``; the exception to raise.

    If the state cannot be read any more (the actors got the Ctrl-C too), the last
    checkpoint saved stands.
    """
    last = guard.last
    if last is not None and last.path and (last.epoch, last.index) == (epoch, index):
        return Interrupted(last.where())
    try:
        snap = guard.take(epoch, index)
        guard.commit(snap)
    except Exception as err:  # noqa: BLE001 - any failure here leaves the last checkpoint as it was
        log.warning("could not checkpoint the interrupted run (%s): %s", type(err).__name__, err)
        snap = last if last is not None and last.path else None
    return Interrupted(snap.where() if snap is not None else f"epoch {epoch} + {index} samples (not saved)")


def requested() -> bool:
    """A Ctrl-C arrived since ``stop_on_sigint`` began."""
    return _flag.is_set()


def _handle(signum, frame) -> None:
    if _flag.is_set():
        raise KeyboardInterrupt
    _flag.set()
    log.warning("Ctrl-C: stopping after the current sample and saving a checkpoint (Ctrl-C again to abort)")


@contextlib.contextmanager
def stop_on_sigint():
    """Defer the first SIGINT to the next sample boundary (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _flag.clear()
    previous = signal.signal(signal.SIGINT, _handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _flag.clear()
