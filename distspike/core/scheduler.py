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
messages, which makes it the event-level recursion itself; in-process with one shard
per layer and no traffic logs (not smooth, no regularization) that recursion runs
inside one compiled call per sample (``LocalBackend.train_depth``, ``kernels/depth.py``).

In-process with one shard per layer, breadth-first training with held errors (SGD or
FSGD, not smooth) runs each sample's step-by-step schedule inside one compiled call
(``LocalBackend.train_fused``, ``kernels/fused.py``): the same messages, in the same
order, through the same kernels, without Python between them. With traffic logs on, the
kernel also tables the messages and each actor logs the rows the per-message path would.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

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
        # SGD with held errors: no weight changes within a sample and errors wait for their
        # step's forward pass, so a whole sample can travel as one message per actor
        self.sample_wide = cfg.training.rule == "sgd" and self.hold
        self.smooth = cfg.training.smooth
        self.inp = VectorQuantizer(sizes[0], num)
        self.tgt = VectorQuantizer(sizes[-1], num)
        self.counter = ErrorCounter(sizes[-1])
        self.input_spikes = 0
        self.predictions = 0  # labels prediction samples (each starts fresh forward state)
        self.trace: list[tuple] | None = None  # (step, kind, layer, n_events) when recording
        self.step = 0
        # held errors + breadth-first, not smooth: a sample's messages do not depend on its spikes
        static = self.hold and not self.lifo and not self.smooth
        # a whole sample in one compiled call when the backend offers it (in-process, one shard per layer)
        self.fused = static and getattr(backend, "can_fuse", lambda: False)()
        # the same schedule as one Ray Compiled Graph execution per sample (runtime.compiled)
        # (not with the Fig. 3 FSGD options: regularization and step_lr run message by message on Ray)
        plain = cfg.training.regularization == 0 and cfg.training.step_lr == "constant"
        self.compiled = static and plain and getattr(backend, "can_compile", lambda: False)()
        # un-held depth-first, not smooth, no regularization: the event-level recursion of a whole
        # sample in one compiled call (``LocalBackend.train_depth``, ``kernels/depth.py``)
        self.fused_depth = self.fine and not self.smooth and cfg.training.regularization == 0 and \
            getattr(backend, "can_fuse_depth", lambda: False)()

    # -- one training sample (paper section 3.8) --------------------------------
    def train_sample(self, x: np.ndarray, neg_y: np.ndarray, epoch: int = 0, sample: int = 0) -> None:
        """``T`` steps of: input root, target root, held-error roots; then SGD updates.

        ``x`` and ``neg_y`` are already encoded (``Numerics.encode``); ``epoch`` and
        ``sample`` only label the messages (traffic logs).
        """
        self.backend.set_position(epoch, sample, 0, True)
        self.counter.reset()
        if self.fused or self.fused_depth:  # the kernel resets and runs the input and target quantizers itself
            self._train_sample_fused(x, neg_y)
            return
        self.inp.reset()
        self.tgt.reset()
        targets = self.tgt.steps(neg_y, self.T)
        if self.compiled and self.trace is None:
            self.backend.train_compiled(self._emit_inputs(x), targets, self.T, self.sample_wide)
            return
        if self.sample_wide:
            self._train_sample_wide(x, targets, epoch, sample)
            return
        # smooth FSGD reads the input quantizer's running sum step by step: herd it step by step
        inputs = None if self.smooth and self.cfg.training.fractional else self._emit_inputs(x, record=False)
        t_idx, t_sign, t_bounds = targets.batch.idx, targets.batch.sign, targets.bounds
        for t in range(self.T):
            self.step = t
            self.backend.set_position(epoch, sample, t, True)
            if inputs is None:
                self._root(("fwd", 1, self._emit_input(x)))
            else:
                a, b = inputs.bounds[t], inputs.bounds[t + 1]
                self._record("input", 0, int(b - a))
                self._root(("fwd", 1, SpikeBatch(inputs.batch.idx[a:b], inputs.batch.sign[a:b])))
            target = SpikeBatch(t_idx[t_bounds[t]:t_bounds[t + 1]], t_sign[t_bounds[t]:t_bounds[t + 1]])
            if not self.hold:
                self._root(("gate", self.L, target))
                continue
            self.counter.add(target)
            roots = self.counter.launch()
            if len(roots):
                self._root(("gate", self.L, roots))
        self._end_sample()

    def _train_sample_fused(self, x: np.ndarray, neg_y: np.ndarray) -> None:
        """The step-by-step schedule below, input and target quantizers included, run inside one
        kernel (``kernels/fused.py``; un-held depth-first: ``kernels/depth.py``)."""
        tr = self.cfg.training
        if self.fused:
            stats = self.backend.train_fused(x, neg_y, self.inp, self.tgt, self.T, self.counter.counts, self.num,
                                             tr.fractional, tr.read_first)
        else:
            stats = self.backend.train_depth(x, neg_y, self.inp, self.tgt, self.T, self.num, tr.fractional,
                                             tr.read_first)
        self.input_spikes += int(stats[:, 0, 0].sum())
        if self.trace is None:
            return
        for t in range(self.T):
            self.trace.append((t, "input", 0, int(stats[t, 0, 0])))
            for layer in range(1, self.L + 1):
                self.trace.append((t, "fwd", layer, int(stats[t, 0, layer])))
            for layer in range(self.L, 0, -1):
                self.trace.append((t, "gate", layer, int(stats[t, 2, layer])))
                if layer >= 2:
                    self.trace.append((t, "bwd", layer, int(stats[t, 3, layer])))

    def _end_sample(self) -> None:
        """SGD updates apply lazily when a shard next enters a sample; smooth SGD needs the sums now."""
        if self.smooth and not self.cfg.training.fractional:
            self.backend.end_sample([self._smooth_input(l) for l in range(1, self.L + 1)])

    def _train_sample_wide(self, x: np.ndarray, targets: Segments, epoch: int, sample: int) -> None:
        """SGD + held errors: all ``T`` forward steps per message, then all error roots.

        Equivalent to the step-by-step schedule because every actor receives its
        messages in the same relative order per state it touches: forward state (``S``,
        ``phi``, counts) is never read by the backward pass except the gate, which reads
        ``S`` as it stood after its own step (kept in ``S_at``), and SGD changes no
        weight before the sample ends. Proved against the oracle in the tests.
        """
        self.backend.set_position(epoch, sample, 0)
        out = self.backend.fetch(self._run_forward(self._emit_inputs(x)))
        roots = self.counter.launch_steps(out, targets)
        if len(roots):
            self._root(("gate", self.L, roots))
        self._end_sample()

    def _run_forward(self, batch):
        for layer in range(1, self.L + 1):
            batch = self.backend.forward(layer, batch, True)
            self._record("fwd", layer, batch)
        return batch

    def predict_scores(self, x: np.ndarray) -> np.ndarray:
        """Prediction: ``T`` forward steps; return ``sum_t u_L / T`` (un-quantized output).

        Nothing flows backward, so each layer receives all ``T`` steps in one message.
        """
        self.predictions += 1
        self.inp.reset()
        self.backend.set_position(0, self.predictions, 0, False)
        batch = self.inp.steps(x, self.T)
        for layer in range(1, self.L + 1):
            batch = self.backend.forward(layer, batch, False)
        return self.num.decode(self.backend.preact_values(self.L)) / self.T

    def predict_many(self, X: list) -> np.ndarray:
        """``predict_scores`` of each (encoded) row of ``X`` (at least one), shape ``(len(X), n_L)``.

        A backend with ``predict_batch`` (Ray) sends each layer all samples' steps in one
        message per shard: every shard resets its state between samples exactly as it
        would on a new prediction sample, so the scores equal those of one sample at a time.
        """
        if not hasattr(self.backend, "predict_batch"):
            return np.stack([self.predict_scores(x) for x in X])
        steps = []
        for x in X:
            self.inp.reset()
            steps.append(self.inp.steps(x, self.T))
        first = self.predictions + 1
        self.predictions += len(X)
        return self.num.decode(self.backend.predict_batch(steps, first)) / self.T

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

    def _emit_inputs(self, x: np.ndarray, record: bool = True) -> Segments:
        """The input quantizer's spikes of all ``T`` steps (they depend on nothing else), one call."""
        inputs = self.inp.steps(x, self.T)
        self.input_spikes += len(inputs)
        if record and self.trace is not None:
            for t, n in enumerate(inputs.sizes()):
                self.trace.append((t, "input", 0, int(n)))
        return inputs

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
        passed = self.backend.gate(layer, batch, self._smooth_input(layer, fractional_only=True))
        self._record("gate", layer, passed)
        return [("bwd", layer, passed)] if layer >= 2 else []

    def _backward(self, layer: int, batch) -> list:
        out = self.backend.backward(layer, batch, self.lifo, self._smooth_input(layer, fractional_only=True))
        self._record("bwd", layer, out)
        return [("gate", layer - 1, out)]

    def _smooth_input(self, layer: int, fractional_only: bool = False):
        """Smooth updates: the running pre-activation sum feeding layer ``layer``.

        Gate and backward messages need it only for FSGD (SGD updates at sample end).
        """
        if not self.smooth or (fractional_only and not self.cfg.training.fractional):
            return None
        return self.inp.total if layer == 1 else self.backend.preact(layer - 1)

    def _record(self, kind: str, layer: int, batch) -> None:
        if self.trace is None:
            return
        batch = batch if isinstance(batch, int) else self.backend.fetch(batch)
        if isinstance(batch, Segments) and batch.steps is not None:
            for step, part in zip(batch.steps, batch.parts):
                self.trace.append((step, kind, layer, len(part)))
        else:
            self.trace.append((self.step, kind, layer, batch if isinstance(batch, int) else len(batch)))
