"""Epoch loop shared by every runtime: online training, evaluation, learning curve.

Progress bars (tqdm) show on a terminal; elsewhere a line every ~10 % of an epoch
(``distspike.runtime.progress``).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from distspike.runtime import interrupt
from distspike.runtime.progress import Tracker
from distspike.runtime.recovery import Guard


@dataclass
class EpochRecord:
    """One row of the learning curve."""

    epoch: int
    train_error: float
    test_error: float
    samples_per_s: float
    seconds: float


@dataclass
class FitResult:
    curve: list[EpochRecord] = field(default_factory=list)
    samples_seen: int = 0
    train_seconds: float = 0.0

    @property
    def samples_per_s(self) -> float:
        return self.samples_seen / self.train_seconds if self.train_seconds else 0.0


def progress_enabled(progress: bool | None) -> bool:
    """Show bars only when asked, or by default when stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else bool(progress)


def fit(net, X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, epochs: int,
        progress: bool | None = None, eval_train: int | None = None,
        on_epoch: Callable[[EpochRecord], None] | None = None, start_epoch: int = 0, start_index: int = 0,
        guard: Guard | None = None, hint: str = "") -> FitResult:
    """Train online for ``epochs`` passes in dataset order; evaluate after each.

    ``eval_train`` limits the training-error estimate to the first ``n`` training
    samples (``None``: all of them). ``on_epoch`` is called with every new record
    (curve files hook in here). ``start_epoch``/``start_index``: continue after that
    many epochs and that many samples of the next (a checkpoint's position).
    ``guard`` takes the snapshots (mid-epoch at its cadence, and at each epoch end
    after ``on_epoch``) and restores one when an actor is lost; by default
    snapshots are kept in memory only. ``hint`` ends the one line logged when the run
    will take long (``distspike.runtime.progress``): the faster runtime, if there is one.
    """
    result = FitResult()
    guard = guard if guard is not None else Guard(net)
    show = progress_enabled(progress)
    n_eval = X.shape[0] if eval_train is None else min(eval_train, X.shape[0])
    tracker = Tracker(net, X.shape[0], epochs * X.shape[0] - start_index if epochs else 0, show, hint)
    guard.start(start_epoch, start_index)
    for epoch in range(start_epoch, start_epoch + epochs):
        t0 = time.perf_counter()
        net.epoch = epoch + 1
        first = start_index if epoch == start_epoch else 0
        with tracker.epoch(epoch + 1, first) as update:
            sps = train_epoch(net, X, y, epoch, first, guard, update)
        train_s = time.perf_counter() - t0
        result.samples_seen += X.shape[0] - first
        result.train_seconds += train_s
        rec = guard.retry(lambda: EpochRecord(epoch + 1, net.error(X[:n_eval], y[:n_eval]),
                                              net.error(X_test, y_test), sps, time.perf_counter() - t0))
        result.curve.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
        guard.commit(guard.last)
    return result


def train_epoch(net, X: np.ndarray, y: np.ndarray, epoch: int, start: int, guard: Guard,
                progress: Callable[[int], object]) -> float:
    """Train on ``X[start:]`` in order, snapshotting at the guard's cadence and at the end.

    A lost actor rolls the epoch back to the last snapshot (always one of this epoch:
    its start or a later one) and replays from there. Returns samples per second.
    """
    n, k = X.shape[0], start
    t0 = time.perf_counter()
    while True:
        try:
            while k < n:
                if interrupt.requested():  # Ctrl-C: checkpoint here and stop (see runtime.interrupt)
                    raise interrupt.stop_here(guard, epoch, k)
                net.train_sample(X[k], y[k])
                k += 1
                progress(1)
                if guard.due(k, n):
                    guard.commit(guard.take(epoch, k))
            guard.take(epoch + 1, 0)
            break
        except Exception as err:
            if not guard.lost(err):
                raise
            snap = guard.recover(err)
            if snap.epoch != epoch:
                raise RuntimeError(f"restore point {snap.where()} is not in epoch {epoch + 1}") from err
            progress(snap.index - k)
            k = snap.index
    return (n - start) / max(time.perf_counter() - t0, 1e-12)
