"""Thin shells around the module objects: the same class runs in-process and as a Ray actor.

A shell owns one module (a shard of a layer's forward or backward quantizer), checks
incoming spike batches, times each consumed message and hands one traffic-log row per
message to its recorder (``distspike.logs.traffic``). It has no numeric code.
"""
from __future__ import annotations

import time

import numpy as np

from distspike.core.messages import Segments, SpikeBatch
from distspike.core.modules import BackwardQuantizer, ForwardQuantizer

# spike counters kept by every shell (summed over shards they give the runtime's totals)
FWD_OUT, ERR_IN, ERR_PASSED, BWD_OUT = range(4)

EVENT_BYTES = 5  # int32 index + int8 sign
HEADER_BYTES = 16  # source, layer, sample, step


def batch_bytes(batch: SpikeBatch) -> int:
    return HEADER_BYTES + EVENT_BYTES * len(batch)


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
        self.counters = np.zeros(4, np.int64)  # FWD_OUT, ERR_IN (own block), ERR_PASSED, BWD_OUT

    def set_position(self, epoch: int, sample: int, step: int) -> None:
        self.position = (epoch, sample, step)

    def _diverged(self, err: OverflowError) -> OverflowError:
        return OverflowError(f"actor {self.name} at (epoch, sample, step)={self.position}: {err}")

    def _check(self, batch: SpikeBatch, port: str) -> None:
        if self.validate:
            batch.validate(self._n_in[port], f"actor {self.name} port {port!r}")

    def _log(self, direction: str, batch: SpikeBatch, out: SpikeBatch | None, t0: float) -> None:
        rec = self.recorder
        if rec is None:
            return
        seconds = time.perf_counter() - t0
        n_out = 0 if out is None else len(out)
        pos = 0 if out is None else int(np.count_nonzero(out.sign > 0))
        out_bytes = 0 if out is None else batch_bytes(out)
        rec.record(direction, *self.position, len(batch), pos, n_out - pos, batch_bytes(batch), out_bytes, seconds)

    # -- messages ------------------------------------------------------------------
    def reset_sample(self, train: bool = True) -> None:
        if train or isinstance(self.module, ForwardQuantizer):
            self.module.reset_sample()

    def forward(self, batch: SpikeBatch, train: bool = True) -> SpikeBatch:
        self._check(batch, "fwd")
        t0 = time.perf_counter()
        try:
            out = self.module.forward(batch, train)
        except OverflowError as err:
            raise self._diverged(err) from None
        if train:
            self.counters[FWD_OUT] += len(out)
            self._log("forward", batch, out, t0)
        return out

    def count(self, batch: SpikeBatch) -> None:
        self._check(batch, "count")
        t0 = time.perf_counter()
        self.module.count(batch)
        self._log("forward", batch, None, t0)

    def gate(self, batch, smooth=None) -> np.ndarray:
        """Gate a batch (or the segments of several roots, in order); mask of passed events."""
        self._check(batch, "gate")
        parts = batch.parts if isinstance(batch, Segments) else [batch]
        masks = [self._gate_one(p, smooth) for p in parts]
        return np.concatenate(masks) if masks else np.zeros(0, bool)

    def _gate_one(self, batch: SpikeBatch, smooth) -> np.ndarray:
        t0 = time.perf_counter()
        passed = self.module.gate(batch, smooth)
        spec = self.module.spec
        self.counters[ERR_IN] += int(np.count_nonzero((batch.idx >= spec.lo) & (batch.idx < spec.hi)))
        self.counters[ERR_PASSED] += int(np.count_nonzero(passed))
        self._log("backward", batch, batch.select(passed), t0)
        return passed

    def backward(self, batch, interleave: bool, smooth=None):
        """Backward pass of a batch (or of several roots' segments, in order)."""
        self._check(batch, "bwd")
        if isinstance(batch, Segments):
            return Segments([self._backward_one(p, interleave, smooth) for p in batch.parts])
        return self._backward_one(batch, interleave, smooth)

    def _backward_one(self, batch: SpikeBatch, interleave: bool, smooth) -> SpikeBatch:
        t0 = time.perf_counter()
        try:
            out = self.module.backward(batch, interleave, smooth)
        except OverflowError as err:
            raise self._diverged(err) from None
        self.counters[BWD_OUT] += len(out)
        self._log("backward", batch, out, t0)
        return out

    def end_sample(self, smooth=None) -> None:
        self.module.end_sample(smooth)

    # -- state -----------------------------------------------------------------------
    def preact(self) -> np.ndarray:
        return self.module.S

    def weights(self) -> np.ndarray:
        return self.module.weights()

    def state(self) -> dict:
        return {**self.module.state(), "counters": self.counters}

    def load_state(self, state: dict) -> None:
        self.counters[:] = state["counters"]
        self.module.load_state({k: v for k, v in state.items() if k != "counters"})

    def flush(self) -> None:
        if self.recorder is not None:
            self.recorder.flush()

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()


def make_module(kind: str, spec, num, weights: np.ndarray):
    """A forward or backward quantizer shard from its spec and weight block."""
    cls = ForwardQuantizer if kind == "forward" else BackwardQuantizer
    return cls(spec, num, weights)
