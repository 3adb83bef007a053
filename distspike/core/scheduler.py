"""Central scheduler: breadth-first or depth-first routing of spike batches (App. F).

The scheduler owns the routing graph of the spiking MLP and a work list of pending
batches ``(kind, layer, batch)``: a FIFO for breadth-first, a LIFO for depth-first.
It is the same code in every runtime; a *backend* dispatches each batch to all
shards of its destination (direct calls in-process, actor calls on Ray) and
returns their merged output.

Routing graph (consumer order as listed; ``oracle.py`` spells out the module-level
graph that each item bundles):

- ``fwd l``: spikes of layer ``l-1`` -> backward replica counts of layer ``l`` and
  forward quantizer ``l``; its output -> ``fwd l+1``; for ``l = L`` -> error counter
  (``hold_error``) or straight to ``gate L`` (un-held errors).
- ``gate l``: error spikes of layer ``l`` -> gate + updater of ``l``; passed spikes
  -> ``bwd l`` (``l >= 2``).
- ``bwd l``: passed error spikes of layer ``l`` -> backward weights + herder of
  ``l``; output -> ``gate l-1``.

Where batch-level dispatch equals event-level routing it batches: breadth-first
always (a work item is everything one module emitted while consuming one item,
Table 4), and depth-first with held errors (no state is shared across paths, except
the updater/backward-weights pair that ``BackwardQuantizer.backward(interleave=True)``
orders per event). Depth-first with un-held errors falls back to single-event
messages, which makes it the event-level recursion itself.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from distspike.config import NetConfig
from distspike.core.messages import Segments, SpikeBatch
from distspike.core.modules import ErrorCounter, Numerics, VectorQuantizer


@dataclass
class SpikeStats:
    """Spike totals per layer (index = layer; 0 is the input quantizer).

    ``fwd``: spikes emitted by the forward quantizers; ``err_in``: error spikes
    reaching gate ``l``; ``err_passed``: passed by it; ``bwd_out``: emitted by the
    backward herder of layer ``l`` (error spikes of layer ``l-1``). Counted by the
    module shells where the spikes happen, so they cost no extra messages.
    """

    fwd: np.ndarray
    err_in: np.ndarray
    err_passed: np.ndarray
    bwd_out: np.ndarray

    def as_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("fwd", "err_in", "err_passed", "bwd_out")}


def _concrete(batch) -> bool:
    return isinstance(batch, (SpikeBatch, Segments))


class Scheduler:
    """Routes one training sample (or prediction) through a backend's modules."""

    def __init__(self, backend, cfg: NetConfig, num: Numerics):
        self.backend, self.cfg, self.num = backend, cfg, num
        sizes = cfg.model.sizes
        self.L = len(sizes) - 1
        self.T = cfg.training.steps
        self.hold = cfg.training.hold_error
        self.lifo = cfg.routing == "dfs"
        self.fine = self.lifo and not self.hold
        self.smooth = cfg.training.smooth
        self.inp = VectorQuantizer(sizes[0], num)
        self.tgt = VectorQuantizer(sizes[-1], num)
        self.counter = ErrorCounter(sizes[-1])
        self.input_spikes = 0
        self.trace: list[tuple] | None = None  # (step, kind, layer, n_events) when recording
        self.step = 0

    # -- one training sample (paper section 3.8) --------------------------------
    def train_sample(self, x: np.ndarray, neg_y: np.ndarray, epoch: int = 0, sample: int = 0) -> None:
        """``T`` steps of: input root, target root, held-error roots; then SGD updates.

        ``x`` and ``neg_y`` are already encoded (``Numerics.encode``); ``epoch`` and
        ``sample`` only label the messages (traffic logs).
        """
        self.backend.reset_sample(train=True)
        self.inp.reset()
        self.tgt.reset()
        self.counter.reset()
        for t in range(self.T):
            self.step = t
            self.backend.set_position(epoch, sample, t)
            self._root(("fwd", 1, self._emit_input(x)))
            target = self.tgt.step(neg_y)
            if not self.hold:
                self._root(("gate", self.L, target))
                continue
            self.counter.add(target)
            roots = self.counter.launch()
            if roots:
                self._root(("gate", self.L, Segments(roots)))
        self.backend.end_sample([self._smooth_input(l) for l in range(1, self.L + 1)])

    def predict_scores(self, x: np.ndarray) -> np.ndarray:
        """Prediction: ``T`` forward steps; return ``sum_t u_L / T`` (un-quantized output)."""
        self.backend.reset_sample(train=False)
        self.inp.reset()
        for t in range(self.T):
            batch = self.inp.step(x)
            for layer in range(1, self.L + 1):
                if _concrete(batch) and not len(batch):
                    break
                batch = self.backend.forward(layer, batch, False)
        return self.num.decode(self.backend.preact_values(self.L)) / self.T

    # -- routing -------------------------------------------------------------------
    def stats(self) -> SpikeStats:
        """Totals so far: the shells' counters plus the input spikes counted here."""
        counts = self.backend.spike_counts()  # (4, L+1): FWD_OUT, ERR_IN, ERR_PASSED, BWD_OUT
        counts[0, 0] = self.input_spikes
        return SpikeStats(*counts)

    def _emit_input(self, x: np.ndarray) -> SpikeBatch:
        batch = self.inp.step(x)
        self.input_spikes += len(batch)
        self._record("input", 0, len(batch))
        return batch

    def _root(self, item) -> None:
        """Process one root batch and everything it causes, in FIFO or LIFO order."""
        work = deque()
        self._push(work, [item])
        while work:
            kind, layer, batch = work.pop() if self.lifo else work.popleft()
            self._push(work, self._handle(kind, layer, batch))

    def _push(self, work: deque, items: list) -> None:
        """Queue the outputs; empty batches are dropped, un-held depth-first splits into single events."""
        if self.fine:
            items = [(k, l, self.backend.fetch(b)) for k, l, b in items]
            items = [(k, l, single) for k, l, b in items for single in b.singles()]
        items = [it for it in items if not _concrete(it[2]) or len(it[2])]
        work.extend(reversed(items) if self.lifo else items)

    def _handle(self, kind: str, layer: int, batch: SpikeBatch) -> list:
        if kind == "fwd":
            return self._forward(layer, batch)
        if kind == "gate":
            return self._gate(layer, batch)
        return self._backward(layer, batch)

    def _forward(self, layer: int, batch) -> list:
        out = self.backend.forward(layer, batch, True)
        self._record("fwd", layer, out)
        if layer < self.L:
            return [("fwd", layer + 1, out)]
        if self.hold:
            self.counter.add(self.backend.fetch(out))
            return []
        return [("gate", layer, out)]

    def _gate(self, layer: int, batch) -> list:
        passed = self.backend.gate(layer, batch, self._smooth_input(layer))
        self._record("gate", layer, passed)
        return [("bwd", layer, passed)] if layer >= 2 else []

    def _backward(self, layer: int, batch) -> list:
        out = self.backend.backward(layer, batch, self.lifo, self._smooth_input(layer))
        self._record("bwd", layer, out)
        return [("gate", layer - 1, out)]

    def _smooth_input(self, layer: int):
        """Smooth updates: the running pre-activation sum feeding layer ``layer``."""
        if not self.smooth:
            return None
        return self.inp.total if layer == 1 else self.backend.preact(layer - 1)

    def _record(self, kind: str, layer: int, batch) -> None:
        if self.trace is not None:
            n = batch if isinstance(batch, int) else len(self.backend.fetch(batch))
            self.trace.append((self.step, kind, layer, n))
