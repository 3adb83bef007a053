"""The shard actor of the Ray runtime: a thin shell around one layer shard's module.

Each actor wraps a ``Shell`` around the very module object of the in-process
runtime. It checks every message (header, position, fields) before anything is
applied, numbers them, and assembles its batches from the refs of the shards
before it (``ray_refs.assemble``). The backend that sends the messages is
``ray_backend.py``; where the actors go, ``ray_placement.py``; how they are
created and re-created, ``ray_factory.py``.
"""
from __future__ import annotations

import time

import numpy as np
import ray

from distspike.config import LoggingConfig
from distspike.core.messages import MessageError, Segments, SpikeBatch
from distspike.core.modules import ErrorCounter, Numerics
from distspike.runtime.cores import probe
from distspike.runtime.ray_refs import assemble
from distspike.runtime.ray_storage import StoreActor
from distspike.runtime.shard_state import process_memory, shard_module
from distspike.runtime.storage import NodeStore
from distspike.runtime.shell import Shell


def _numbered(method):
    """A numbered message ``method(self, head, pos, *args)``: its number is used up only if it is applied.

    ``head`` and ``pos`` are checked first (``ShardActor._accept``); a ``MessageError``
    from any check leaves the actor's state as it was and is remembered, so the
    error of a later, out-of-order message can say which one went missing. (Not
    ``functools.wraps``: Ray reads the wrapper's own signature.)
    """
    def run(self, head, pos, *args):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            self._accept(head, pos)
            out = method(self, *args)
        except MessageError as err:
            self.rejected = str(err)
            raise
        self.next_seq += 1
        self.busy_s += time.perf_counter() - t0
        self.busy_cpu_s += time.thread_time() - c0
        return out

    run.__name__, run.__qualname__, run.__doc__ = method.__name__, method.__qualname__, method.__doc__
    return run


class ShardActor(StoreActor):
    """One shard of a forward or backward quantizer, as a Ray actor (a thin shell).

    Every message carries a header ``(seq, layer)``, its position ``(epoch, sample,
    step, training)`` and how to assemble its batch from the argument refs, which Ray
    resolves before the call runs. ``seq`` numbers the messages to this actor: one
    whose number is not the next expected one, or that is meant for another layer,
    is rejected with a ``MessageError`` before anything is applied, so no batch is
    applied twice or skipped (a rejected message does not use up its number). Where it
    writes its traffic and checkpoint parts: ``store`` (``StoreActor``, ``runtime.storage``).
    """

    def __init__(self, name: str, kind: str, spec, num: Numerics, weights,
                 logging: LoggingConfig | None, store: NodeStore | None, first_seq: int = 0):
        module = shard_module(kind, spec, num, weights)  # its block, its seeded block, or zeros
        self.shell = Shell(name, module, None, validate=True)
        self.name, self.num, self.n_in, self.logging = name, num, spec.n_in, logging
        self.use_storage(store, first_seq)  # its traffic recorder, where the store says
        self.next_seq = 0  # number of the next message to apply
        self.rejected: str | None = None  # why the last rejected message was rejected
        self.busy_s = 0.0  # seconds spent applying numbered messages (benchmarks: actor time vs wall time)
        self.busy_cpu_s = 0.0  # the same by this thread's CPU clock (waits for a shared core do not count)
        self.counter: ErrorCounter | None = None  # held errors of the output gate (compiled sample graph)
        # the only shard of its layer: its output needs no merge keys (``merge_shards``), so it travels
        # without them (5 instead of 13 bytes per event: Ray passes results under 100 KB inline)
        self.alone = spec.hi - spec.lo == (spec.n_out if kind == "forward" else spec.n_in)

    # -- message checks: everything is checked before anything is applied ------------
    def _accept(self, head, pos) -> None:
        """Reject a message for another layer, out of order, or with a malformed position."""
        if not (isinstance(head, tuple) and len(head) == 2):
            raise MessageError(f"actor {self.name}: field 'header' must be (seq, layer), got {head!r}")
        seq, layer = head
        if layer != self.shell.layer:
            raise MessageError(f"actor {self.name}: field 'layer' is {layer!r}, this actor serves layer "
                               f"{self.shell.layer}")
        if seq != self.next_seq:
            what = "was already applied" if isinstance(seq, int) and seq < self.next_seq else "skips messages"
            why = f" (message {self.next_seq} was rejected: {self.rejected})" if self.rejected else ""
            raise MessageError(f"actor {self.name}: message number {seq!r} {what}; expected {self.next_seq}{why}")
        if not (isinstance(pos, tuple) and len(pos) == 4 and all(_is_count(v) for v in pos[:3])
                and isinstance(pos[3], (bool, np.bool_))):
            raise MessageError(f"actor {self.name}: field 'position' must be (epoch, sample, step, training) "
                               f"with non-negative integers, got {pos!r}")
        self.shell.set_position(*pos)

    def _batch(self, kind, parts, count: bool = False):
        """The message's batch; ``count``: a batch this replica only counts (field 'counts'), whose
        shard outputs are gathered without the k-way merge: counts and the per-step sizes a count
        message logs do not depend on the order."""
        field = "counts" if count else "batch"
        try:
            batch = assemble(kind, parts, gather=count)
        except (IndexError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise MessageError(f"actor {self.name}: field '{field}' cannot be assembled as {kind!r} from "
                               f"{len(parts)} part(s): {err}") from None
        if not isinstance(batch, (SpikeBatch, Segments)):
            raise MessageError(f"actor {self.name}: field '{field}' must be a SpikeBatch or Segments, "
                               f"got {type(batch).__name__}")
        return batch

    def _smooth(self, parts, n_smooth):
        """The running sum of smooth updates: ``n_in`` finite values of the run's dtype."""
        if not n_smooth:
            return None
        try:
            smooth = np.concatenate(parts[:n_smooth])
        except (TypeError, ValueError) as err:
            raise MessageError(f"actor {self.name}: field 'smooth' cannot be concatenated: {err}") from None
        if smooth.dtype != self.num.dtype or smooth.shape != (self.n_in,):
            raise MessageError(f"actor {self.name}: field 'smooth' must be {self.n_in} values of dtype "
                               f"{self.num.dtype}, got dtype {smooth.dtype}, shape {smooth.shape}")
        if smooth.dtype.kind == "f" and not np.isfinite(smooth).all():
            raise MessageError(f"actor {self.name}: field 'smooth' holds a value that is not finite "
                               f"({smooth[~np.isfinite(smooth)][0]!r})")
        return smooth

    # -- messages (numbered) -------------------------------------------------------------
    def _sent(self, out):
        """What a forward or backward message sends on: without merge keys when no merge needs them."""
        return out.plain() if self.alone else out

    @_numbered
    def forward(self, train, kind, *parts):
        return self._sent(self.shell.forward(self._batch(kind, parts), train))

    def _samples(self, kind, parts) -> list:
        """The per-sample batches of a ``forward_many`` message: ``("value",)``: one list of
        batches; ``("shards",)``: one list per shard of the layer before, merged sample by sample."""
        lists = parts if kind == ("shards",) else parts[:1] if kind == ("value",) else None
        if lists is None or not lists or not all(isinstance(p, list) for p in lists) \
                or len({len(p) for p in lists}) != 1:
            raise MessageError(f"actor {self.name}: field 'samples' must be lists of batches of equal length "
                               f"(kind ('value',) or ('shards',)), got kind {kind!r} and "
                               f"{[type(p).__name__ + (f'[{len(p)}]' if isinstance(p, list) else '') for p in parts]}")
        return [self._batch(("shards",), [p[k] for p in lists]) for k in range(len(lists[0]))]

    @_numbered
    def forward_many(self, first: int, last: bool, kind, *parts):
        """Prediction of several samples in one message (``Scheduler.predict_many``).

        Sample ``k`` is prediction sample ``first + k``: the shell starts it afresh
        (``start_predict``) and consumes its steps, exactly as one message per sample
        would. Returns each sample's output, or with ``last`` (the output layer, whose
        spikes nobody reads) each sample's ``S`` after its last step, stacked ``(K, block)``.
        """
        samples = self._samples(kind, parts)
        if not _is_count(first):
            raise MessageError(f"actor {self.name}: field 'first' must be a non-negative integer, got {first!r}")
        if not isinstance(last, (bool, np.bool_)):
            raise MessageError(f"actor {self.name}: field 'last' must be a bool, got {last!r}")
        for batch in samples:  # all checked before any is applied
            self.shell._check(batch, "fwd")
        epoch = self.shell.position[0]
        outs = []
        for k, batch in enumerate(samples):
            self.shell.set_position(epoch, first + k, 0, False)
            out = self.shell.forward(batch, False)
            outs.append(self.shell.preact().copy() if last else self._sent(out))
        if last:
            return np.stack(outs) if outs else np.zeros((0, self.shell.module.spec.hi - self.shell.module.spec.lo))
        return outs

    @_numbered
    def count(self, kind, *parts):
        return self.shell.count(self._batch(kind, parts, count=True))

    def _count_batches(self, meta, parts: tuple, head_pos) -> tuple[list, tuple]:
        """Assemble and check deferred count batches ``meta = [(position, kind, n_parts), ...]``.

        Returns ``[(position, batch), ...]`` and the parts after theirs. Each must belong to
        the message's own sample (the counts of another sample would reset with it).
        """
        if not isinstance(meta, (list, tuple)):
            raise MessageError(f"actor {self.name}: field 'counts' must be a list, got {type(meta).__name__}")
        out, at = [], 0
        for item in meta:
            if not (isinstance(item, tuple) and len(item) == 3 and _is_count(item[2])):
                raise MessageError(f"actor {self.name}: field 'counts' must hold (position, kind, n_parts), "
                                   f"got {item!r}")
            pos, kind, n = item
            if not (isinstance(pos, tuple) and len(pos) == 4 and all(_is_count(v) for v in pos[:3])
                    and isinstance(pos[3], (bool, np.bool_)) and bool(pos[3]) == bool(head_pos[3])
                    and (pos[0], pos[1]) == (head_pos[0], head_pos[1])):
                raise MessageError(f"actor {self.name}: field 'counts' holds position {pos!r}, not of the "
                                   f"message's sample {head_pos!r}")
            if at + n > len(parts):
                raise MessageError(f"actor {self.name}: field 'counts' needs {at + n} parts, got {len(parts)}")
            batch = self._batch(kind, parts[at:at + n], count=True)
            self.shell._check(batch, "count")
            out.append((pos, batch))
            at += n
        return out, parts[at:]

    def _apply_counts(self, counts: list) -> None:
        """Count each deferred batch at its own position, then restore the message's position."""
        here = (*self.shell.position, self.shell.training)
        for pos, batch in counts:
            self.shell.set_position(*pos)
            self.shell.count(batch)
        self.shell.set_position(*here)

    @_numbered
    def counts(self, meta, *parts):
        """Deferred count batches that found no backward message to ride along with."""
        here = (*self.shell.position, self.shell.training)
        counts, rest = self._count_batches(meta, parts, here)
        if rest:
            raise MessageError(f"actor {self.name}: field 'counts' leaves {len(rest)} part(s) unused")
        self._apply_counts(counts)

    @_numbered
    def gate(self, n_smooth, kind, *parts):
        batch, smooth = self._batch(kind, parts[n_smooth:]), self._smooth(parts, n_smooth)
        return self.shell.gate(batch, smooth)

    @_numbered
    def backward(self, interleave, n_smooth, kind, *parts):
        batch, smooth = self._batch(kind, parts[n_smooth:]), self._smooth(parts, n_smooth)
        return self._sent(self.shell.backward(batch, interleave, smooth))

    @_numbered
    def counted_backward(self, meta, interleave, n_smooth, kind, *parts):
        """Deferred counts (``meta`` and the first parts), then a backward batch; all checked first."""
        here = (*self.shell.position, self.shell.training)
        counts, parts = self._count_batches(meta, parts, here)
        batch, smooth = self._batch(kind, parts[n_smooth:]), self._smooth(parts, n_smooth)
        self.shell._check(batch, "bwd")
        self._apply_counts(counts)
        return self._sent(self.shell.backward(batch, interleave, smooth))

    @_numbered
    def end_sample(self, n_smooth, *parts):
        return self.shell.end_sample(self._smooth(parts, n_smooth))

    @_numbered
    def preact(self):
        return self.shell.preact()

    # -- compiled sample graph (runtime.compiled, ``runtime/compiled.py``) ----------------
    def node(self, ctx, k: int, step: int, op: str, static: tuple, *parts):
        """Message ``k`` of this actor in one execution of the compiled sample graph.

        ``ctx = (epoch, sample, bases)`` comes from the graph's input: the message is
        number ``bases[name] + k`` at position ``(epoch, sample, step)``, so it is checked
        and numbered like any other message. ``op`` names the message, ``static`` are its
        fixed arguments, ``parts`` the batches of the nodes it reads.
        """
        epoch, sample, bases = ctx
        head, pos = (bases[self.name] + k, self.shell.layer), (epoch, sample, step, True)
        return getattr(self, f"graph_{op}")(head, pos, *static, *parts)

    # Every message of the graph is sent every sample; an empty batch is not handed to the
    # shell (the scheduler drops empty batches; an empty message changes no state), so the
    # shells log the same messages as in the other runtimes.
    @_numbered
    def graph_forward(self, kind, *parts):
        batch = self._batch(kind, parts)
        return self._sent(self.shell.forward(batch, True)) if len(batch) else SpikeBatch.empty()

    @_numbered
    def graph_root_gate(self, n_out, kind, *parts):
        """Held errors at the output (``ErrorCounter``), launched as roots, then gated: ``(roots, mask)``.

        ``parts``: the output layer's ``n_out`` shard outputs of this step, then the target
        spikes of this step. Every shard of the output gate keeps the same counter, so
        all launch the same roots; each gates (and updates) its own block.
        """
        if self.counter is None or self.shell.position[2] == 0:
            self.counter = ErrorCounter(self.shell.module.spec.n_out)
        self.counter.add(self._batch(kind, parts[:n_out]))
        self.counter.add(self._batch(("value",), parts[n_out:]))
        roots = self.counter.launch()
        return roots, (self.shell.gate(roots) if len(roots) else np.zeros(0, np.bool_))

    @_numbered
    def graph_gate(self, kind, *parts):
        batch = self._batch(kind, parts)
        return self.shell.gate(batch) if len(batch) else np.zeros(0, np.bool_)

    @_numbered
    def graph_backward(self, count_kind, n_count, kind, *parts):
        """The step's count batch (spikes entering this layer), then the backward batch (breadth-first)."""
        counted, batch = self._batch(count_kind, parts[:n_count], count=True), self._batch(kind, parts[n_count:])
        self.shell._check(counted, "count")
        self.shell._check(batch, "bwd")
        if len(counted):
            self.shell.count(counted)
        if len(batch):
            return self._sent(self.shell.backward(batch, False))
        return Segments(SpikeBatch.empty(), np.zeros_like(batch.bounds), batch.steps) \
            if isinstance(batch, Segments) else SpikeBatch.empty()

    # The sample-wide (SGD) graph: every message holds all steps of the sample and is handed to
    # the shell whatever it holds, as the scheduler's sample-wide path sends it; after the output
    # gate, ``None`` stands for "no message" when the counter launched no root (``_wide_batch``).
    def _wide_batch(self, kind, parts):
        """The batch of a sample-wide graph message, or ``None`` when its chain was not started
        (the message before it sent ``None``)."""
        if any(p is None for p in parts):
            return None
        return self._batch(kind, parts)

    @_numbered
    def graph_forward_wide(self, kind, *parts):
        return self._sent(self.shell.forward(self._batch(kind, parts), True))

    @_numbered
    def graph_root_gate_wide(self, n_out, kind, *parts):
        """The counter over all steps (``ErrorCounter.launch_steps``, fresh each sample), then the gate:
        ``(roots, mask)``, or ``None`` when no root was launched. ``parts``: the output layer's
        ``n_out`` shard outputs, then the sample's target spikes."""
        out, target = self._batch(kind, parts[:n_out]), self._batch(("value",), parts[n_out:])
        if not (isinstance(out, Segments) and isinstance(target, Segments)):
            raise MessageError(f"actor {self.name}: field 'batch' of a sample-wide output gate must be Segments, "
                               f"got {type(out).__name__} and {type(target).__name__}")
        self.shell._check(target, "gate")
        roots = ErrorCounter(self.shell.module.spec.n_out).launch_steps(out, target)
        return (roots, self.shell.gate(roots)) if len(roots) else None

    @_numbered
    def graph_gate_wide(self, kind, *parts):
        batch = self._wide_batch(kind, parts)
        return None if batch is None else self.shell.gate(batch)

    @_numbered
    def graph_backward_wide(self, count_kind, n_count, kind, *parts):
        """The sample's count batch (all spikes entering this layer), then the backward batch, if any."""
        counted, batch = self._batch(count_kind, parts[:n_count], count=True), self._wide_batch(kind, parts[n_count:])
        self.shell._check(counted, "count")
        if batch is not None:
            self.shell._check(batch, "bwd")
        self.shell.count(counted)
        return None if batch is None else self._sent(self.shell.backward(batch, False))

    # -- control (not numbered: reads, checkpoints, logs) ------------------------------
    def weights(self):
        return self.shell.weights()

    def counters(self):
        return self.shell.counters

    def state(self):
        return self.shell.state()

    def load_state(self, state, next_seq: int):
        """Restore a checkpoint's state; the next message is number ``next_seq``."""
        self.shell.load_state(state)
        self.next_seq, self.rejected = int(next_seq), None

    def flush(self):
        self.shell.flush()

    def discard_logs(self):
        """Drop traffic rows not yet written (after a rollback they would be logged twice)."""
        if self.shell.recorder is not None:
            self.shell.recorder.discard()

    def close(self):
        self.shell.close()

    def ping(self):
        return self.name

    def memory(self) -> dict:
        """This process's resident memory now and at its peak (bytes; ``VmRSS``, ``VmHWM``)."""
        return process_memory()

    def busy(self) -> tuple[int, float, float]:
        """``(messages applied, seconds spent applying them, CPU seconds of the applying thread in them)``
        since the actor started."""
        return self.next_seq, self.busy_s, self.busy_cpu_s

    def node_id(self):
        return ray.get_runtime_context().get_node_id()

    def where(self) -> dict:
        """Its node's address and what its process may really use (``cores.probe``): for ``compiled=auto``."""
        return {"node": ray.util.get_node_ip_address(), **probe()}


def _is_count(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= 0
