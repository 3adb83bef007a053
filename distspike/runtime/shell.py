"""Thin shells around the module objects: the same class runs in-process and as a Ray actor.

A shell owns one module (a shard of a layer's forward or backward quantizer), checks
incoming spike batches, times each consumed message and hands it to its traffic
recorder (``distspike.logs.traffic``: one row per message, or per segment of a
``Segments`` message). It has no numeric code.
"""
from __future__ import annotations

import time

import numpy as np

from distspike.core.messages import Segments, SpikeBatch
from distspike.core.modules import BackwardQuantizer, ForwardQuantizer
from distspike.kernels.traffic import BACKWARD, SENT_BATCH, SENT_MASK, SENT_NONE

# spike counters kept by every shell (summed over shards they give the runtime's totals)
FWD_OUT, ERR_IN, ERR_PASSED, BWD_OUT = range(4)

# traffic-log message forms (direction | what was sent): forward, count, gate
FORWARD, COUNTED, GATED = SENT_BATCH, SENT_NONE, BACKWARD | SENT_MASK
_NO_BOUNDS = _NO_STEPS = np.zeros(0, np.int64)  # unused fields of a logged message
_NO_SIGNS, _NO_MASK = np.zeros(0, np.int8), np.zeros(0, np.bool_)
_PLUS = bytes.maketrans(b"\xff", b"\x00")  # int8 sign bytes: +1 -> 1, -1 -> 0


def passed_positive(sign: np.ndarray, passed: np.ndarray) -> int:
    """How many events with sign +1 are among the ``passed`` ones (bytewise, no temporary arrays)."""
    plus = int.from_bytes(sign.tobytes().translate(_PLUS), "little")
    return (plus & int.from_bytes(passed.tobytes(), "little")).bit_count()


def _steps(batch: Segments) -> np.ndarray:
    return _NO_STEPS if batch.steps is None else batch.steps


class Shell:
    """Wraps one module; ``name`` is ``"<kind>.<layer>.<shard>"``, e.g. ``"forward.2.0"``."""

    def __init__(self, name: str, module, recorder=None, validate: bool = True):
        self.name, self.module, self.recorder, self.validate = name, module, recorder, validate
        self.kind, layer, shard = name.split(".")
        self.layer, self.shard = int(layer), int(shard)
        spec = module.spec
        # forward shards receive spikes of layer l-1 and errors of layer l; backward ones errors of layer l
        self._n_in = {"fwd": spec.n_in, "gate": spec.n_out, "count": spec.n_in, "bwd": spec.n_out}
        self.position = (0, 0, 0)  # (epoch, sample, step) of the message being consumed
        self.training = True  # whether that sample is a training sample (else a prediction)
        self.counters = np.zeros(4, np.int64)  # FWD_OUT, ERR_IN (own block), ERR_PASSED, BWD_OUT
        self._current = None  # (training, sample) whose state the module holds
        self._pending_end = False  # SGD update of that sample not yet applied

    def set_position(self, epoch: int, sample: int, step: int, training: bool = True) -> None:
        """Label the next messages; a new ``(training, sample)`` starts a new sample on entry."""
        self.position = (epoch, sample, step)
        self.training = training

    # -- sample lifecycle: no reset or end-of-sample messages are needed --------------
    def _enter(self) -> None:
        """On the first message of a new sample: finish the previous one, then reset.

        The module resets itself (a forward quantizer's state; a backward herder's
        policy, catching up the random draws of samples it received no message in),
        and the SGD update of the previous sample is applied first (eq. 6). Every
        message and read goes through here, so a shard that sat a sample out is
        never stale.
        """
        key = (self.training, self.position[1])
        if key == self._current:
            return
        self._finish()
        self._current = key
        if self.training:
            self.module.start_sample(self.position[1])
            self._pending_end = not self.module.spec.smooth
        else:
            self.module.start_predict()

    def ended(self) -> None:
        """The current sample's SGD update (eq. 6) was applied outside (``LocalBackend.train_fused``'s kernel)."""
        self._pending_end = False

    def _finish(self) -> None:
        if self._pending_end:
            self._pending_end = False
            self.module.end_sample(None)

    def _diverged(self, err: OverflowError) -> OverflowError:
        return OverflowError(f"actor {self.name} at (epoch, sample, step)={self.position}: {err}")

    def _check(self, batch: SpikeBatch, port: str) -> None:
        if self.validate:
            batch.validate(self._n_in[port], f"actor {self.name} port {port!r}")

    # -- traffic log: the shell hands each consumed message to its recorder ---------------
    # A ``Segments`` message of one segment and no steps logs like a plain batch (one row).
    def _log_sent(self, form: int, batch, out, t0: int) -> None:
        """A message that emitted a batch (``forward``, ``backward``): one row, or one per segment."""
        if type(batch) is Segments:
            if batch.steps is not None or batch.bounds.shape[0] != 2:
                self.recorder.segments(t0, form, self.position, _steps(batch), batch.bounds, out.batch.sign,
                                       _NO_MASK, out.bounds)
                return
            batch, out = batch.batch, out.batch
        sign = out.sign
        self.recorder.message(t0, form, self.position, batch.idx.shape[0], sign.tobytes().count(1), sign.shape[0])

    def _log_count(self, batch, t0: int) -> None:
        """A message that sent nothing (``count``)."""
        if type(batch) is Segments:
            if batch.steps is not None or batch.bounds.shape[0] != 2:
                self.recorder.segments(t0, COUNTED, self.position, _steps(batch), batch.bounds, _NO_SIGNS, _NO_MASK,
                                       _NO_BOUNDS)
                return
            batch = batch.batch
        self.recorder.message(t0, COUNTED, self.position, batch.idx.shape[0], 0, 0)

    def _log_gate(self, batch, passed: np.ndarray, t0: int) -> None:
        """A gate: what it sent on are the events of ``batch`` where ``passed``."""
        if type(batch) is Segments:
            if batch.steps is not None or batch.bounds.shape[0] != 2:
                self.recorder.segments(t0, GATED, self.position, _steps(batch), batch.bounds, batch.batch.sign,
                                       passed, _NO_BOUNDS)
                return
            batch = batch.batch
        self.recorder.message(t0, GATED, self.position, batch.idx.shape[0], passed_positive(batch.sign, passed),
                              passed.tobytes().count(1))

    # -- messages: one module call per message (a ``Segments`` message too) ----------
    def forward(self, batch, train: bool = True):
        """Forward pass of a batch, or of a whole sample's steps (``Segments`` with steps)."""
        self._check(batch, "fwd")
        self._enter()
        t0 = time.perf_counter_ns()
        try:
            out = self.module.forward(batch, train)
        except OverflowError as err:
            raise self._diverged(err) from None
        if train:
            self.counters[FWD_OUT] += len(out)
            if self.recorder is not None:
                self._log_sent(FORWARD, batch, out, t0)
        return out

    def count(self, batch) -> None:
        """Count spikes of layer ``l-1`` (backward replica's input counts)."""
        self._check(batch, "count")
        self._enter()
        t0 = time.perf_counter_ns()
        self.module.count(batch)
        if self.recorder is not None:
            self._log_count(batch, t0)

    def penalize(self, batch) -> None:
        """Regularization steps of layer ``l``'s emitted spikes on a backward replica (not logged:
        in-process only; ``BackwardQuantizer.penalize``)."""
        self._check(batch, "bwd")
        self._enter()
        self.module.penalize(batch)

    def gate(self, batch, smooth=None) -> np.ndarray:
        """Gate a batch (or the segments of several roots, in order); mask of passed events."""
        self._check(batch, "gate")
        self._enter()
        t0 = time.perf_counter_ns()
        self.module.step = self.position[2]  # FSGD's g_t (training.step_lr)
        passed = self.module.gate(batch, smooth)
        spec = self.module.spec
        idx = (batch.batch if isinstance(batch, Segments) else batch).idx
        self.counters[ERR_IN] += int(np.count_nonzero((idx >= spec.lo) & (idx < spec.hi)))
        self.counters[ERR_PASSED] += int(np.count_nonzero(passed))
        if self.recorder is not None:
            self._log_gate(batch, passed, t0)
        return passed

    def backward(self, batch, interleave: bool, smooth=None):
        """Backward pass of a batch (or of several roots' segments, in order)."""
        self._check(batch, "bwd")
        self._enter()
        t0 = time.perf_counter_ns()
        self.module.step = self.position[2]  # FSGD's g_t (training.step_lr)
        try:
            out = self.module.backward(batch, interleave, smooth)
        except OverflowError as err:
            raise self._diverged(err) from None
        self.counters[BWD_OUT] += len(out)
        if self.recorder is not None:
            self._log_sent(BACKWARD | SENT_BATCH, batch, out, t0)
        return out

    def end_sample(self, smooth=None) -> None:
        """Explicit end of a sample: only smooth SGD needs it (the update reads ``S_{l-1}``)."""
        self._enter()
        self._pending_end = False
        self.module.end_sample(smooth)

    # -- state -----------------------------------------------------------------------
    def preact(self) -> np.ndarray:
        """``S`` of the current sample (zero if this shard got no message in it yet)."""
        self._enter()
        return self.module.S

    def weights(self) -> np.ndarray:
        self._finish()
        return self.module.weights()

    def state(self) -> dict:
        """Module state between samples (pending SGD update applied) and the spike counters."""
        self._finish()
        return {**self.module.state(), "counters": self.counters}

    def load_state(self, state: dict) -> None:
        self.counters[:] = state["counters"]
        self.module.load_state({k: v for k, v in state.items() if k != "counters"})
        self._current, self._pending_end = None, False

    def flush(self) -> None:
        if self.recorder is not None:
            self.recorder.flush()

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()


def make_module(kind: str, spec, num, weights: np.ndarray, own: bool = False):
    """A forward or backward quantizer shard from its spec and weight block (``own``: taken as is,
    in the module's own layout; see the quantizers)."""
    cls = ForwardQuantizer if kind == "forward" else BackwardQuantizer
    return cls(spec, num, weights, own=own)
