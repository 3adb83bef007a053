"""Epoch loop shared by every runtime: online training, evaluation, learning curve.

Progress bars (tqdm) show on a terminal and stay quiet when output is not one.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from tqdm import tqdm


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
        on_epoch: Callable[[EpochRecord], None] | None = None, start_epoch: int = 0) -> FitResult:
    """Train online for ``epochs`` passes in dataset order; evaluate after each.

    ``eval_train`` limits the training-error estimate to the first ``n`` training
    samples (``None``: all of them). ``on_epoch`` is called with every new record
    (checkpointing and curve files hook in here).
    """
    result = FitResult()
    show = progress_enabled(progress)
    n_eval = X.shape[0] if eval_train is None else min(eval_train, X.shape[0])
    for epoch in range(start_epoch, start_epoch + epochs):
        t0 = time.perf_counter()
        net.epoch = epoch + 1
        with tqdm(total=X.shape[0], desc=f"epoch {epoch + 1}", unit="sample", disable=not show,
                  leave=False) as bar:
            sps = net.train_epoch(X, y, progress=bar.update)
        train_s = time.perf_counter() - t0
        result.samples_seen += X.shape[0]
        result.train_seconds += train_s
        rec = EpochRecord(epoch + 1, net.error(X[:n_eval], y[:n_eval]), net.error(X_test, y_test), sps,
                          time.perf_counter() - t0)
        result.curve.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
    return result
