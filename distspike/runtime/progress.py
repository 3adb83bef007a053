"""What a running ``fit`` tells the user: a tqdm bar, progress lines, and one estimate for long runs.

On a terminal (or ``progress=true``) each epoch shows a tqdm bar. Otherwise (cluster
logs, CI, ``nohup``) a log line every ~10 % of an epoch gives the samples per second,
the output layer's error spikes per sample since the last line (the running training
error signal: zero once every output matches its target) and the time left. Either
way, once a few hundred samples have run, a run whose estimated time left is over
``LONG_RUN_S`` logs one line with the estimate (and ``hint``, the faster runtime).
Nothing here changes what the net computes.
"""
from __future__ import annotations

import contextlib
import logging
import time

from tqdm import tqdm

log = logging.getLogger("distspike.train")

LONG_RUN_S = 600.0  # estimated time left above which the estimate line is logged
ESTIMATE_AFTER = 300  # samples of this invocation before estimating
LINES_PER_EPOCH = 10


def duration(seconds: float) -> str:
    """``"42 s"``, ``"12 min"``, ``"2 h 05 min"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class Tracker:
    """Progress of one ``fit`` over ``todo`` samples, epochs of ``n``; ``bar``: tqdm instead of lines."""

    def __init__(self, net, n: int, todo: int, bar: bool, hint: str = ""):
        self.net, self.n, self.todo, self.bar_on, self.hint = net, n, todo, bar, hint
        self.done, self.t0, self.estimated = 0, time.perf_counter(), False
        self.step = max(1, -(-n // LINES_PER_EPOCH))

    @contextlib.contextmanager
    def epoch(self, epoch: int, first: int):
        """Track epoch ``epoch`` (1-based) starting after ``first`` samples; yields the update callback."""
        self.epoch_no, self.k, self.t_epoch, self.k_epoch = epoch, first, time.perf_counter(), first
        self.next_line = (first // self.step + 1) * self.step
        self.mark_k, self.mark_err = first, self._error_spikes() if not self.bar_on else 0
        with tqdm(total=self.n, initial=first, desc=f"epoch {epoch}", unit="sample", disable=not self.bar_on,
                  leave=False) as bar:
            self.bar = bar
            yield self.update

    def update(self, count: int) -> None:
        """``count`` more samples trained (negative: rolled back by a recovery)."""
        self.bar.update(count)
        self.k += count
        self.done += count
        if not self.estimated and self.done >= min(ESTIMATE_AFTER, self.todo):
            self._estimate()
        if not self.bar_on and self.k >= self.next_line and self.k < self.n:
            self._line()
            self.next_line = (self.k // self.step + 1) * self.step

    def rate(self) -> float:
        """Samples per second of this epoch so far."""
        return (self.k - self.k_epoch) / max(time.perf_counter() - self.t_epoch, 1e-9)

    def _estimate(self) -> None:
        self.estimated = True
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        left = (self.todo - self.done) / rate
        if left > LONG_RUN_S:
            log.warning("this run will take about %s more (%.1f samples/s, %d samples to go)%s", duration(left),
                        rate, self.todo - self.done, f"; {self.hint}" if self.hint else "")

    def _line(self) -> None:
        rate, err = self.rate(), self._error_spikes()
        per = (err - self.mark_err) / max(self.k - self.mark_k, 1)
        self.mark_k, self.mark_err = self.k, err
        log.info("epoch %d: %d %% (%d/%d samples), %.1f samples/s, output error spikes %.2f per sample, "
                 "ETA %s (epoch), %s (run)", self.epoch_no, 100 * self.k // self.n, self.k, self.n, rate, per,
                 duration((self.n - self.k) / rate), duration((self.todo - self.done) / rate))

    def _error_spikes(self) -> int:
        """Error spikes that reached the output layer's gate so far (a compiled graph is dropped first)."""
        drop = getattr(self.net.backend, "drop_graph", None)
        if drop is not None:
            drop()
        return int(self.net.stats.err_in[-1])
