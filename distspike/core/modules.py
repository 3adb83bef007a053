"""The modules of one spiking MLP (semantics.md), grouped as the runtime places them.

``ForwardQuantizer`` (layer ``l``, a block of its units) holds the forward weights
``W_l[:, block]``, the pre-activation sums, the rectified herder, the backward gate
and the weight updater of those columns. ``BackwardQuantizer`` (layer ``l >= 2``, a
block of layer ``l-1``'s units) holds the rows ``W_l[block, :]`` as a transposed
replica, its own copy of the updater for them, and the signed backward herder.
Input quantizer, target quantizer and error counter are small modules that live
with the scheduler. All of them are plain objects over numpy state: the in-process
runtime calls them directly and the Ray runtime wraps the very same objects in
actors.

Inside a module, events are consumed one by one in arrival order, and the module's
internal order equals the event graph's consumer order (see ``oracle.py``):
an incoming forward spike is first counted by the updater, then its weight row is
added to the pre-activation sum and to the herder; a passed error spike is applied
by the updater before the backward weights read its column.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from distspike.config import NetConfig
from distspike.core.messages import Segments, SpikeBatch
from distspike.kernels.herding import (NO_UPDATE, UPDATE_AFTER, UPDATE_BEFORE, herd_rows, herd_segments, herd_vector,
                                      herd_vector_steps)
from distspike.kernels.updates import (count_events, gate_and_update, gate_segments, launch_errors, penalize_columns,
                                       sgd_outer, sgd_outer_counts, update_delta, update_rows)


@dataclass(frozen=True)
class Numerics:
    """Arithmetic of one run: dtype, spike size ``unit``, threshold, learning rate.

    Float: ``unit = 1``, ``thresh = 1/2``, ``lr = eta / T^2``. Integer (paper
    section 5): values scaled by ``K = T^2 / eta``, ``unit = K``, ``thresh = K // 2``
    and ``lr = 1``, so training uses integer addition, comparison and indexing only.
    """

    dtype: np.dtype
    unit: object
    thresh: object
    lr: object
    scale: int
    step_lr: tuple = ()  # FSGD step size of each time step, lr * g_t (TrainingConfig.step_factors)
    penalty_lr: object = 0  # regularization * lr: a forward spike's column step is penalty_lr * relu(c)

    @staticmethod
    def of(cfg: NetConfig) -> "Numerics":
        if cfg.model.dtype == "int":
            k = cfg.scale
            dt = np.dtype(np.int64)
            return Numerics(dt, dt.type(k), dt.type(k // 2), dt.type(1), k, (dt.type(1),) * cfg.training.steps)
        dt = np.dtype(cfg.model.dtype)
        step_lr = tuple(dt.type(v) for v in cfg.step_lrs())
        penalty = dt.type(cfg.learning_rate * cfg.training.regularization)
        return Numerics(dt, dt.type(1), dt.type(0.5), dt.type(cfg.learning_rate), 1, step_lr, penalty)

    def lr_at(self, step: int):
        """The FSGD step size of time step ``step`` (``lr`` itself for ``step_lr=constant``)."""
        return self.step_lr[step] if self.step_lr else self.lr

    @property
    def is_int(self) -> bool:
        return self.dtype.kind == "i"

    def encode(self, v: np.ndarray) -> np.ndarray:
        """Real values -> this run's representation (``round(v * K)`` in integer mode)."""
        if self.is_int:
            return np.rint(np.asarray(v, np.float64) * self.scale).astype(self.dtype)
        return np.asarray(v, self.dtype)

    def decode(self, v: np.ndarray) -> np.ndarray:
        """This run's representation -> float64 real values."""
        return np.asarray(v, np.float64) / self.scale


def _owned(weights: np.ndarray, num: "Numerics") -> np.ndarray:
    """A module's own weight array, taken without a copy: it must already be C-ordered, writable,
    in the run's dtype."""
    if weights.dtype != num.dtype or not weights.flags.c_contiguous or not weights.flags.writeable:
        raise ValueError(f"weights of dtype {weights.dtype} (C-ordered: {weights.flags.c_contiguous}) "
                         f"cannot be taken as is; {num.dtype}, C-ordered and writable needed")
    return weights


def split_blocks(n: int, shards: int) -> list[tuple[int, int]]:
    """Disjoint ``[lo, hi)`` blocks covering ``range(n)``; the first ``n % shards`` get one more."""
    if shards < 1 or shards > n:
        raise ValueError(f"shards={shards!r} must be between 1 and the layer size {n}")
    base, extra = divmod(n, shards)
    bounds, lo = [], 0
    for s in range(shards):
        hi = lo + base + (1 if s < extra else 0)
        bounds.append((lo, hi))
        lo = hi
    return bounds


class VectorQuantizer:
    """Signed herding of a vector each time step (input ``x``; target ``-y``), Alg. 1.

    ``phi <- phi + v``; while ``max|phi| > 1/2`` fire ``(argmax|phi|, sign)``. Reset to 0
    at every sample start. Also keeps the running sum of the fed vectors (the
    smooth-update input of layer 1).
    """

    def __init__(self, n: int, num: Numerics):
        self.num = num
        self.phi = np.zeros(n, num.dtype)  # (n,)
        self.total = np.zeros(n, num.dtype)  # (n,) running sum of fed vectors

    def reset(self) -> None:
        self.phi[:] = 0
        self.total[:] = 0

    def step(self, v: np.ndarray) -> SpikeBatch:
        """Feed one (encoded) vector and return the spikes of this step in firing order."""
        self.total += v
        idx, sign, _ = herd_vector(self.phi, v, self.num.thresh, self.num.unit, True, 0)
        return SpikeBatch(idx, sign)

    def steps(self, v: np.ndarray, steps: int) -> Segments:
        """``steps`` calls of ``step(v)`` in one kernel call; segment ``t`` is step ``t``."""
        idx, sign, bounds = herd_vector_steps(self.phi, self.total, v, steps, self.num.thresh, self.num.unit, True)
        return Segments(SpikeBatch(idx, sign), bounds, np.arange(steps, dtype=np.int64))


class ErrorCounter:
    """Held errors (``hold_error``): nets output and target spikes within a time step.

    ``count_j += s`` for every output spike (+1) and target spike (signed). After the
    step's forward pass, ``launch`` emits ``|count_j|`` spikes of sign ``sign(count_j)``
    for every unit in index order and clears the counts; each launched spike is a
    separate root whose backward pass completes before the next one starts.
    """

    def __init__(self, n: int):
        self.counts = np.zeros(n, np.int64)  # (n,)
        self._no_idx, self._no_sign = np.zeros(0, np.int32), np.zeros(0, np.int8)

    def reset(self) -> None:
        self.counts[:] = 0

    def add(self, batch: SpikeBatch) -> None:
        count_events(self.counts, batch.idx, batch.sign, 0)

    def launch(self) -> Segments:
        """Launch the counted errors as roots: one single-event segment each, in unit order."""
        none = np.zeros(2, np.int64)
        idx, sign, _ = launch_errors(self.counts, self._no_idx, self._no_sign, none, self._no_idx, self._no_sign, none)
        return Segments(SpikeBatch(idx, sign), np.arange(idx.shape[0] + 1, dtype=np.int64))

    def launch_steps(self, out: Segments, target: Segments) -> Segments:
        """Per step ``t``: add its output and target spikes, then ``launch``; all steps in one call.

        Segment ``k`` is the ``k``-th root, ``steps[k]`` the step that launched it.
        """
        o, g = out.batch, target.batch
        idx, sign, step = launch_errors(self.counts, o.idx, o.sign, out.bounds, g.idx, g.sign, target.bounds)
        return Segments(SpikeBatch(idx, sign), np.arange(idx.shape[0] + 1, dtype=np.int64), step)


@dataclass(frozen=True)
class LayerSpec:
    """What one shard actor needs to know about its layer: sizes, block, rules."""

    layer: int  # 1..L
    n_in: int
    n_out: int
    lo: int  # block of units owned: [lo, hi) of layer `layer` (forward) or `layer-1` (backward)
    hi: int
    fractional: bool
    smooth: bool
    reset: str  # backward reset policy: none | random | zero
    seed: int
    read_first: bool = True  # FSGD: a column is read before its own update (TrainingConfig.read_first)
    penalized: bool = False  # training.regularization > 0: forward spikes update their own columns


class ForwardQuantizer:
    """Forward path and gate of the units ``[lo, hi)`` of layer ``l``.

    Forward (eq. 4, Alg. 7): for each incoming spike ``(i, s)``: ``c_i += s``;
    ``S += s * W[i, block]``; ``phi += s * W[i, block]``; herd (rectified, after every
    row). Backward: gate ``S_j >= 0`` and update (eq. 6 SGD / eq. 7 FSGD with
    ``lr = eta/T^2``, times ``g_t`` of the current step, ``training.step_lr``).

    Regularization (``spec.penalized``, the authors' ``SpikeWeighterModule``): after a
    training batch is herded, each emitted spike ``(j, s)`` in firing order updates its
    own column, ungated and not backpropagated:
    ``W[:, j] -= s * regularization * lr * relu(c)`` (``c`` counted through this batch).
    """

    def __init__(self, spec: LayerSpec, num: Numerics, weights: np.ndarray, own: bool = False):
        """``own``: ``weights`` is a C-ordered array of the run's dtype made for this module, taken
        as is (a shard actor's seeded block: no second copy); otherwise it is copied."""
        self.spec, self.num = spec, num
        nb = spec.hi - spec.lo
        if weights.shape != (spec.n_in, nb):
            raise ValueError(f"layer {spec.layer} shard [{spec.lo},{spec.hi}): weights shape "
                             f"{weights.shape} != {(spec.n_in, nb)}")
        self.W = _owned(weights, num) if own else np.array(weights, num.dtype, order="C")  # (n_in, nb)
        self.S = np.zeros(nb, num.dtype)  # (nb,) pre-activation sums
        self.phi = np.zeros(nb, num.dtype)  # (nb,) herder potentials
        self.c = np.zeros(spec.n_in, np.int64)  # (n_in,) signed input spike counts
        self.e = np.zeros(nb, np.int64)  # (nb,) passed error counts (SGD)
        self.S_at = np.zeros((0, nb), num.dtype)  # (steps, nb): S after each step (sample-wide messages)
        self.step = 0  # time step of the message being consumed (set by the shell): FSGD's g_t
        self._no_delta = np.zeros(0, num.dtype)
        self._no_hist, self._no_rows = np.zeros((0, nb), num.dtype), np.zeros(0, np.int64)

    def reset_sample(self) -> None:
        """Forward state is reset at every sample start (paper section 3.8)."""
        self.S[:] = 0
        self.phi[:] = 0
        self.c[:] = 0
        self.e[:] = 0

    def start_sample(self, sample: int) -> None:
        self.reset_sample()

    def start_predict(self) -> None:
        """Prediction uses fresh forward state (its own herders, Alg. 3)."""
        self.reset_sample()

    def _history(self, steps: np.ndarray) -> np.ndarray:
        """The ``S_at`` buffer, with a row for every step of ``steps`` (reused across samples)."""
        need = int(steps.max()) + 1
        if self.S_at.shape[0] < need:
            self.S_at = np.zeros((need, self.S.shape[0]), self.num.dtype)
        return self.S_at

    def forward(self, batch, count: bool = True):
        """Consume spikes of layer ``l-1``; return this block's spikes with merge keys.

        ``Segments`` (all steps of a sample in one message) go through one kernel call;
        in training the sums ``S`` after each step are kept in ``S_at`` for that step's gate.
        """
        if isinstance(batch, Segments):
            return self._forward_segments(batch, count)
        if count:
            count_events(self.c, batch.idx, batch.sign, 0)
        n = self.num
        off, idx, sign, pot = herd_rows(self.W, self.phi, self.S, batch.idx, batch.sign, n.thresh, n.unit,
                                        False, self.spec.lo, True, self._no_delta, NO_UPDATE)
        if count and self.spec.penalized:
            penalize_columns(self.W, update_delta(self.c, n.penalty_lr, n.dtype), idx, sign, self.spec.lo)
        return SpikeBatch(idx, sign, off, pot)

    def _forward_segments(self, segs: Segments, train: bool) -> Segments:
        b, n = segs.batch, self.num
        if train:
            count_events(self.c, b.idx, b.sign, 0)
        hist, rows = self._no_hist, self._no_rows
        if train and segs.steps is not None and segs.steps.shape[0]:
            hist, rows = self._history(segs.steps), segs.steps
        off, idx, sign, pot, bounds = herd_segments(self.W, self.phi, self.S, b.idx, b.sign, segs.bounds, n.thresh,
                                                    n.unit, False, self.spec.lo, True, self._no_delta, NO_UPDATE, NO_UPDATE,
                                                    hist, rows)
        return Segments(SpikeBatch(idx, sign, off, pot), bounds, segs.steps)

    def delta(self, smooth_input=None, lr=None) -> np.ndarray:
        """``lr * relu(c)``, or ``lr * relu(S_{l-1})`` for smooth updates (``lr``: default ``num.lr``)."""
        src = smooth_input if self.spec.smooth else self.c
        return update_delta(src, self.num.lr if lr is None else lr, self.num.dtype)

    def gate(self, batch, smooth_input=None) -> np.ndarray:
        """Gate error spikes of this block and apply their updates; mask of passed events.

        ``Segments`` are gated in order in one kernel call; segments with time steps
        (sample-wide messages) are gated against ``S`` as it stood after their step.
        """
        delta = self.delta(smooth_input, self.num.lr_at(self.step)) if self.spec.fractional else self._no_delta
        lo, frac = self.spec.lo, self.spec.fractional
        if not isinstance(batch, Segments):
            return gate_and_update(self.W, self.S, self.e, delta, batch.idx, batch.sign, lo, frac)
        if batch.steps is None:
            S_rows, rows = self.S.reshape(1, -1), np.zeros(batch.n_parts, np.int64)
        else:
            S_rows, rows = self.S_at, batch.steps
        b = batch.batch
        return gate_segments(self.W, S_rows, self.e, delta, b.idx, b.sign, batch.bounds, rows, lo, frac)

    def end_sample(self, smooth_input=None) -> None:
        """SGD: ``W -= outer(lr * relu(c), e)`` once per sample (eq. 6)."""
        if self.spec.fractional:
            return
        if self.spec.smooth:
            if self.e.any():
                sgd_outer(self.W, self.delta(smooth_input), self.e)
        else:  # from the counts, in one compiled call
            sgd_outer_counts(self.W, self.c, self.num.lr, self.e, False)

    def weights(self) -> np.ndarray:
        return self.W

    def state(self) -> dict:
        """Arrays that fully describe this module between samples (checkpoints)."""
        return {"W": self.W}

    def load_state(self, state: dict) -> None:
        if state["W"] is not self.W:  # a part read in place (``runtime/shard_state.py``) is already there
            self.W[...] = state["W"]


class BackwardQuantizer:
    """Backward weights and signed backward herder of the units ``[lo, hi)`` of layer ``l-1``.

    Holds ``W_l[block, :]`` transposed (``WT[j]`` is the block of column ``j``). For each
    passed error spike ``(j, s)`` of layer ``l``: the updater step on its replica, then
    ``phi += s * W_l[block, j]`` and signed herding (Alg. 6); its spikes are error spikes
    of layer ``l-1``. Reset policy of ``phi`` at sample start: none | random | zero.
    """

    def __init__(self, spec: LayerSpec, num: Numerics, weights: np.ndarray, own: bool = False):
        """``weights``: the rows ``W_l[block, :]`` (copied, transposed); with ``own``, already the
        transposed ``(n_out, nb)`` replica, C-ordered in the run's dtype, taken as is."""
        self.spec, self.num = spec, num
        nb = spec.hi - spec.lo
        shape = (spec.n_out, nb) if own else (nb, spec.n_out)
        if weights.shape != shape:
            raise ValueError(f"layer {spec.layer} backward shard [{spec.lo},{spec.hi}): weights shape "
                             f"{weights.shape} != {shape}")
        self.WT = _owned(weights, num) if own else \
            np.array(np.asarray(weights, num.dtype).T, order="C")  # (n_out, nb), owned copy
        self.phi = np.zeros(nb, num.dtype)  # (nb,) never reset by default
        self.c = np.zeros(nb, np.int64)  # (nb,) counts of this block's forward spikes
        self.e = np.zeros(spec.n_out, np.int64)  # (n_out,) passed error counts (SGD)
        self.rng = np.random.default_rng([spec.seed, spec.layer])
        self.last_sample = -1  # index of the last training sample started (random-reset draws)
        self.step = 0  # time step of the message being consumed (set by the shell): FSGD's g_t
        self._no_delta = np.zeros(0, num.dtype)
        self._no_hist, self._no_rows = np.zeros((0, nb), num.dtype), np.zeros(0, np.int64)

    def start_sample(self, sample: int) -> None:
        """Reset per policy at the start of training sample ``sample`` (0, 1, ...).

        ``random`` draws one vector per training sample from this layer's RNG; draws
        of samples in which this shard received no message are made up here, so the
        stream does not depend on which samples reached it.
        """
        self.c[:] = 0
        self.e[:] = 0
        if self.spec.reset == "zero":
            self.phi[:] = 0
        elif self.spec.reset == "random":
            for _ in range(sample - self.last_sample - 1):
                self._random_phi()
            self.phi[:] = self._random_phi()
        self.last_sample = sample

    def _random_phi(self) -> np.ndarray:
        """``phi ~ U(-1/2, 1/2)`` over the whole layer, sliced to this block (shard-invariant)."""
        u = self.rng.uniform(-0.5, 0.5, self.spec.n_in)[self.spec.lo:self.spec.hi]  # (nb,)
        return self.num.encode(u) if self.num.is_int else u.astype(self.num.dtype)

    def count(self, batch) -> None:
        """Count this block's forward spikes of layer ``l-1`` (input counts of the replica)."""
        batch = batch.batch if isinstance(batch, Segments) else batch
        count_events(self.c, batch.idx, batch.sign, self.spec.lo)

    def delta(self, smooth_input=None, lr=None) -> np.ndarray:
        """``lr * relu(c)`` of this block; smooth: ``lr * relu(S_{l-1})`` (full vector given)."""
        src = smooth_input[self.spec.lo:self.spec.hi] if self.spec.smooth else self.c
        return update_delta(src, self.num.lr if lr is None else lr, self.num.dtype)

    def penalize(self, batch) -> None:
        """Regularization: the spikes ``(j, s)`` layer ``l`` just emitted update this replica's
        rows as ``ForwardQuantizer.forward`` updates the forward columns (same order, same values)."""
        batch = batch.batch if isinstance(batch, Segments) else batch
        update_rows(self.WT, update_delta(self.c, self.num.penalty_lr, self.num.dtype), batch.idx, batch.sign)

    def backward(self, batch, interleave: bool, smooth_input=None):
        """Consume passed error spikes of layer ``l``; return error spikes of layer ``l-1``.

        FSGD (eq. 7) updates the column ``W[:, j] -= s * lr * relu(c)`` of every passed
        error ``(j, s)``; ``spec.read_first`` says whether the backward weights read that
        column before the update (default) or after it. ``interleave`` (depth-first):
        update and read alternate event by event. Otherwise (breadth-first) one consumer
        takes the whole batch before the other: all columns are read, then all updates
        applied (or the reverse). ``Segments`` are consumed in order, each as a batch of
        its own, in one kernel call.
        """
        fractional = self.spec.fractional
        delta = self.delta(smooth_input, self.num.lr_at(self.step)) if fractional else self._no_delta
        per_event, per_batch = self._update_modes(interleave)
        if isinstance(batch, Segments):
            return self._backward_segments(batch, delta, per_event, per_batch)
        n = self.num
        if not fractional:
            count_events(self.e, batch.idx, batch.sign, 0)
        if per_batch == UPDATE_BEFORE:
            update_rows(self.WT, delta, batch.idx, batch.sign)
        off, idx, sign, pot = herd_rows(self.WT, self.phi, self.phi, batch.idx, batch.sign, n.thresh, n.unit,
                                        True, self.spec.lo, False, delta, per_event)
        if per_batch == UPDATE_AFTER:
            update_rows(self.WT, delta, batch.idx, batch.sign)
        return SpikeBatch(idx, sign, off, pot)

    def _update_modes(self, interleave: bool) -> tuple[int, int]:
        """``(per_event, per_batch)`` FSGD update placement for the kernels (``UPDATE_*``)."""
        if not self.spec.fractional:
            return NO_UPDATE, NO_UPDATE
        mode = UPDATE_AFTER if self.spec.read_first else UPDATE_BEFORE
        return (mode, NO_UPDATE) if interleave else (NO_UPDATE, mode)

    def _backward_segments(self, segs: Segments, delta: np.ndarray, per_event: int, per_batch: int) -> Segments:
        b, n = segs.batch, self.num
        if not self.spec.fractional:
            count_events(self.e, b.idx, b.sign, 0)
        off, idx, sign, pot, bounds = herd_segments(self.WT, self.phi, self.phi, b.idx, b.sign, segs.bounds,
                                                    n.thresh, n.unit, True, self.spec.lo, False, delta,
                                                    per_event, per_batch, self._no_hist, self._no_rows)
        return Segments(SpikeBatch(idx, sign, off, pot), bounds, segs.steps)

    def end_sample(self, smooth_input=None) -> None:
        if self.spec.fractional:
            return
        if self.spec.smooth:
            if self.e.any():
                sgd_outer(self.WT, self.delta(smooth_input), self.e, transposed=True)
        else:  # from the counts, in one compiled call
            sgd_outer_counts(self.WT, self.c, self.num.lr, self.e, True)

    def weights(self) -> np.ndarray:
        """This replica's block ``W_l[lo:hi, :]``."""
        return self.WT.T

    def state(self) -> dict:
        """Replica weights, the never-reset herder potentials and the reset RNG (as JSON text)."""
        rng = np.frombuffer(json.dumps(self.rng.bit_generator.state).encode(), np.uint8)
        return {"WT": self.WT, "phi": self.phi, "rng": rng, "last_sample": np.array(self.last_sample)}

    def load_state(self, state: dict) -> None:
        if state["WT"] is not self.WT:  # read in place already (``runtime/shard_state.py``)
            self.WT[...] = state["WT"]
        self.phi[...] = state["phi"]
        self.rng.bit_generator.state = json.loads(bytes(np.asarray(state["rng"], np.uint8)).decode())
        self.last_sample = int(state["last_sample"])
