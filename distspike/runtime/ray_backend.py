"""Ray runtime (``runtime=ray_local|ray_cluster``): every layer shard is a Ray actor.

Each actor wraps a ``Shell`` around the very module object of the in-process
runtime. The central ``Scheduler`` is unchanged: this backend turns its dispatches
into actor calls. Only spike batches (and, for smooth updates, the documented
running-sum exception) cross actors during training.

Batching choices (each proven equivalent by the oracle tests):

- *ObjectRefs, not values*: an actor's output stays in the object store; the next
  layer's shards receive the refs of all previous-layer shards as arguments and
  merge them themselves (``assemble``). The scheduler fetches only where routing
  depends on the data: the output layer's spikes with held errors (to count errors),
  and every batch in un-held depth-first (single-event recursion).
- *Submit whole chains before waiting*: Ray runs the calls one caller submits to one
  actor in submission order, so a time step's forward chain and all its backward
  roots are submitted without waiting; the only round trip per step is the fetch
  of the output spikes.
- *One message per actor per step for the held error roots* (``Segments``).
- Reset and end-of-sample calls are fire-and-forget.
- *Counts ride along*: a backward replica counts the forward spikes entering its
  layer, and nothing reads those counts before its next backward (or end-of-sample)
  message. So the count batches are not sent on their own: they are kept, in order,
  and travel in the replica's next backward message (``counted_backward``), which
  applies them first, each at its own position; whatever is left goes out as one
  ``counts`` message before the sample ends or a state is read. The replica applies
  exactly the same operations in the same order, so results stay bit-equal, and
  training with held errors saves up to one call per replica per time step.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid

import numpy as np
import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from distspike.config import LoggingConfig, NetConfig, RuntimeConfig
from distspike.core.messages import MessageError, Segments, SpikeBatch, gather_parts, merge_parts
from distspike.core.modules import ErrorCounter, Numerics
from distspike.core.network import SpikingNet, init_weights
from distspike.runtime.compiled import SampleGraph
from distspike.runtime.local import make_recorder, shard_plan
from distspike.runtime.shell import Shell, make_module


class PlacementError(RuntimeError):
    """A placement group could not be placed; the message names the bundle."""


# -- assembling a message from the refs of several shards ------------------------------
class Pending:
    """A batch that exists only as refs: ``kind`` says how to assemble it from ``refs``.

    ``("shards",)``: the outputs of all shards of one layer, merged into unsharded
    order. ``("gated", n, inner)``: ``n`` pass masks from the forward shards, then the
    parts of the gated batch (``inner``); the passed events are selected.
    ``("rooted", n)``: the ``(roots, mask)`` pairs of the ``n`` shards of the output gate
    (compiled sample graph, ``runtime/compiled.py``); the passed roots are selected.
    """

    __slots__ = ("kind", "refs")

    def __init__(self, kind: tuple, refs: list):
        self.kind, self.refs = kind, refs


def assemble(kind: tuple, parts: list, gather: bool = False):
    """Rebuild a batch (or ``Segments``) from the resolved parts of a ``Pending``.

    ``gather``: for a receiver that only counts the events, shard outputs are gathered
    without the k-way merge (``gather_parts``).
    """
    if kind[0] == "value":
        return parts[0]
    if kind[0] == "shards":
        return gather_parts(list(parts)) if gather else merge_parts(list(parts)).plain()
    n = kind[1]
    if kind[0] == "rooted":  # n (roots, mask) pairs of the output gate's shards (compiled sample graph)
        masks = [p[1] for p in parts[:n]]
        return parts[0][0].select(np.logical_or.reduce(masks) if n > 1 else masks[0])
    mask = np.logical_or.reduce(parts[:n]) if n > 1 else parts[0]
    return assemble(kind[2], parts[n:]).select(mask)


def _resolve(parts: list) -> list:
    """Fetch the ObjectRefs among ``parts`` in one ``ray.get``; plain values pass through."""
    at = [k for k, p in enumerate(parts) if isinstance(p, ray.ObjectRef)]
    parts = list(parts)
    for k, value in zip(at, ray.get([parts[k] for k in at])):
        parts[k] = value
    return parts


def _as_args(batch) -> tuple[tuple, list]:
    """``(kind, refs)`` to pass a concrete or pending batch as top-level call arguments."""
    if isinstance(batch, Pending):
        return batch.kind, batch.refs
    return ("value",), [batch]


# -- the actor -----------------------------------------------------------------------
def _numbered(method):
    """A numbered message ``method(self, head, pos, *args)``: its number is used up only if it is applied.

    ``head`` and ``pos`` are checked first (``ShardActor._accept``); a ``MessageError``
    from any check leaves the actor's state as it was and is remembered, so the
    error of a later, out-of-order message can say which one went missing. (Not
    ``functools.wraps``: Ray reads the wrapper's own signature.)
    """
    def run(self, head, pos, *args):
        t0 = time.perf_counter()
        try:
            self._accept(head, pos)
            out = method(self, *args)
        except MessageError as err:
            self.rejected = str(err)
            raise
        self.next_seq += 1
        self.busy_s += time.perf_counter() - t0
        return out

    run.__name__, run.__qualname__, run.__doc__ = method.__name__, method.__qualname__, method.__doc__
    return run


class ShardActor:
    """One shard of a forward or backward quantizer, as a Ray actor (a thin shell).

    Every message carries a header ``(seq, layer)``, its position ``(epoch, sample,
    step, training)`` and how to assemble its batch from the argument refs, which Ray
    resolves before the call runs. ``seq`` numbers the messages to this actor: one
    whose number is not the next expected one, or that is meant for another layer,
    is rejected with a ``MessageError`` before anything is applied, so no batch is
    applied twice or skipped (a rejected message does not use up its number).
    """

    def __init__(self, name: str, kind: str, spec, num: Numerics, weights: np.ndarray,
                 logging: LoggingConfig | None, run_dir: str | None):
        module = make_module(kind, spec, num, weights)
        self.shell = Shell(name, module, make_recorder(logging, run_dir, name), validate=True)
        self.name, self.num, self.n_in = name, num, spec.n_in
        self.next_seq = 0  # number of the next message to apply
        self.rejected: str | None = None  # why the last rejected message was rejected
        self.busy_s = 0.0  # seconds spent applying numbered messages (benchmarks: actor time vs wall time)
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

    def busy(self) -> tuple[int, float]:
        """``(messages applied, seconds spent applying them)`` since the actor started."""
        return self.next_seq, self.busy_s

    def node_id(self):
        return ray.get_runtime_context().get_node_id()


def _is_count(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= 0


# -- Ray lifecycle and placement -------------------------------------------------------
def start_ray(runtime: RuntimeConfig, num_cpus: float) -> bool:
    """Join ``runtime.address``, or start an embedded local instance; True if we started it.

    The embedded instance has no dashboard, listens on loopback, uses its own temp dir
    and offers as many logical CPUs as the actors ask for (they mostly wait on
    messages, so the logical count need not match the cores).
    """
    if ray.is_initialized():
        return False
    if runtime.kind == "ray_cluster":  # a loopback-only cluster (launch/local_cluster.sh) is joined as such
        loopback = str(runtime.address or "").rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]")
        with loopback_only() if loopback else contextlib.nullcontext():
            ray.init(address=runtime.address, log_to_driver=False)
        return False
    temp_dir = runtime.temp_dir or tempfile.mkdtemp(prefix="dsray-", dir="/tmp")
    os.makedirs(temp_dir, exist_ok=True)
    with loopback_only():
        ray.init(num_cpus=max(num_cpus, os.cpu_count() or 1), include_dashboard=False, _temp_dir=temp_dir,
                 _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
    return True


#: Ray's switch for "cluster mode" (on by default on Linux); off, a node's address is loopback
CLUSTER_MODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def loopback_only():
    """While an embedded instance starts: node address 127.0.0.1, so every Ray server binds loopback only.

    Ray replaces a loopback ``_node_ip_address`` by the host's routable address
    (``services.resolve_ip_for_localhost``) unless cluster mode is off, and its gRPC
    servers (GCS, raylet, object manager, workers) bind all interfaces unless the
    node address is loopback. Cluster mode is read from ``CLUSTER_MODE_ENV`` when Ray
    is imported, so both the environment (for the processes ``ray.init`` starts) and
    the imported constant (for this driver) are switched for the start, then restored.
    """
    from ray._private import ray_constants
    saved_env, saved_flag = os.environ.get(CLUSTER_MODE_ENV), getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[CLUSTER_MODE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop(CLUSTER_MODE_ENV, None)
        else:
            os.environ[CLUSTER_MODE_ENV] = saved_env
        if saved_flag is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved_flag


def place(bundles: list[dict], names: list[str], runtime: RuntimeConfig):
    """Create the placement group and wait at most ``timeout_s`` for it; else name the bundle."""
    # a name exists once per Ray namespace: each net's group gets its own, so nets can share a Ray
    pg = placement_group(bundles, strategy=runtime.placement.strategy, name=f"distspike-{uuid.uuid4().hex[:12]}")
    ready = pg.ready()
    done, _ = ray.wait([ready], timeout=runtime.placement.timeout_s)
    if done:
        return pg
    remove_placement_group(pg)
    k, why = unplaceable_bundle(bundles, runtime.placement.strategy)
    raise PlacementError(
        f"placement: bundle {k} (actor {names[k]}, {bundles[k]}) could not be placed within "
        f"{runtime.placement.timeout_s:g} s under strategy {runtime.placement.strategy}: {why}")


def unplaceable_bundle(bundles: list[dict], strategy: str) -> tuple[int, str]:
    """The first bundle no alive node can hold (or the one past the node count for STRICT_SPREAD)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    for k, b in enumerate(bundles):
        if not any(all(res.get(key, 0.0) >= v for key, v in b.items()) for res in nodes):
            missing = sorted(key for key, v in b.items() if not any(res.get(key, 0.0) >= v for res in nodes))
            return k, f"no node offers {missing or b}"
    if strategy == "STRICT_SPREAD" and len(bundles) > len(nodes):
        return len(nodes), f"STRICT_SPREAD needs {len(bundles)} nodes, the cluster has {len(nodes)}"
    if strategy == "STRICT_PACK":
        total = {}
        for b in bundles:
            for key, v in b.items():
                total[key] = total.get(key, 0.0) + v
        return len(bundles) - 1, f"STRICT_PACK needs {total} on one node"
    return len(bundles) - 1, "the cluster lacks free resources for all bundles together"


def _actor_options(bundle: dict) -> dict:
    opts = {"num_cpus": bundle.get("CPU", 0.0)}
    if "memory" in bundle:
        opts["memory"] = bundle["memory"]
    custom = {k: v for k, v in bundle.items() if k not in ("CPU", "memory")}
    if custom:
        opts["resources"] = custom
    return opts


# -- the backend ------------------------------------------------------------------------
class ActorFactory:
    """Creates the shard actors of one network in their placement-group bundles (and re-creates lost ones).

    ``plan`` rows are ``(name, kind, spec, weight shape)``; bundle ``k`` holds actor ``k``.
    """

    def __init__(self, plan: list, bundles: list[dict], pg, num: Numerics, logging: LoggingConfig | None,
                 run_dir: str | None):
        self.plan, self.bundles, self.pg, self.num = plan, bundles, pg, num
        self.logging, self.run_dir = logging, run_dir
        self.index = {row[0]: k for k, row in enumerate(plan)}
        self.remote_cls = ray.remote(ShardActor)

    def spawn(self, name: str, block: np.ndarray | None = None):
        """Start actor ``name`` in its bundle; ``block`` its weights (zeros: a checkpoint is loaded next)."""
        k = self.index[name]
        _, kind, spec, shape = self.plan[k]
        block = np.zeros(shape, self.num.dtype) if block is None else np.ascontiguousarray(block)
        strategy = PlacementGroupSchedulingStrategy(placement_group=self.pg, placement_group_bundle_index=k)
        return self.remote_cls.options(scheduling_strategy=strategy, max_concurrency=1,
                                       **_actor_options(self.bundles[k])).remote(
            name, kind, spec, self.num, block, self.logging, self.run_dir)


class RayBackend:
    """Dispatches the scheduler's batches to shard actors; same interface as ``LocalBackend``.

    Every message to an actor is numbered (``seq``); the last call submitted to each
    actor is kept, and checked without waiting whenever a new sample starts, so an
    actor lost anywhere (also on the un-awaited backward chain) surfaces within one
    sample as one of ``failures``. ``revive`` re-creates lost actors, and
    ``load_state`` restores a checkpoint into every actor and resets the numbering.
    """

    #: exceptions meaning an actor (or the node, or objects it held) was lost
    failures = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError, ray.exceptions.NodeDiedError)
    #: seconds an actor may take to answer a ping after a loss before it is counted as lost too
    ping_timeout_s = 60.0

    def __init__(self, actors: dict[str, object], factory: ActorFactory, owns_ray: bool, compiled: bool = False):
        self.actors, self.factory, self.pg, self.owns_ray = actors, factory, factory.pg, owns_ray
        self.compiled = compiled  # runtime.compiled: train samples through a SampleGraph where it applies
        self.graph: SampleGraph | None = None  # built on first use; torn down when actors are replaced
        self.fq: dict[int, list[str]] = {}
        self.bq: dict[int, list[str]] = {}
        self.layer_of: dict[str, int] = {}
        for name, kind, spec, _ in factory.plan:
            (self.fq if kind == "forward" else self.bq).setdefault(spec.layer, []).append(name)
            self.layer_of[name] = spec.layer
        self.seq = {name: 0 for name in actors}  # number of the next message to each actor
        self.tail: dict[str, ray.ObjectRef] = {}  # the last call submitted to each actor
        self.deferred: dict[str, list] = {}  # backward replica -> count batches not yet sent: (pos, kind, refs)
        self.pos = (0, 0, 0, True)
        self.calls = 0

    def can_compile(self) -> bool:
        """Whether ``train_compiled`` is on (``runtime.compiled``); the scheduler decides where it applies."""
        return self.compiled

    def train_compiled(self, inputs: Segments, targets: Segments, steps: int, wide: bool = False) -> None:
        """One training sample as one execution of the compiled sample graph; waits for it.

        ``wide`` (SGD): the graph of sample-wide messages (``compiled.py``), fed all steps at once.

        Messages are numbered as if sent one by one. Raises what any message raised (a
        lost actor as one of ``failures``).
        """
        self.check()
        self.send_counts()
        if self.graph is None:
            self.graph = SampleGraph(self.actors, self.fq, self.bq, steps, wide)
        bases = dict(self.seq)
        for name, n in self.graph.sent.items():
            self.seq[name] += n
        self.calls += self.graph.messages
        try:
            self.graph.run(self.pos[0], self.pos[1], bases, inputs, targets)
        except BaseException:
            # a failed graph (e.g. a lost actor) is dropped at once: its surviving actors'
            # execution loops would otherwise block the messages of the recovery
            self.drop_graph()
            raise

    def drop_graph(self) -> None:
        """Tear the compiled graph down (before actors are replaced or stopped); rebuilt on next use."""
        graph, self.graph = self.graph, None
        if graph is not None:
            try:
                graph.teardown()
            except Exception:  # noqa: BLE001 - a graph with a lost actor may fail to tear down; it is dropped anyway
                pass

    def _send(self, name: str, method: str, *args) -> ray.ObjectRef:
        """Submit message ``method`` to actor ``name`` with its header ``(seq, layer)`` and the position.

        A compiled sample graph is torn down first: its actors busy-wait on their channels
        while it exists, which would slow down every other message (e.g. predictions).
        """
        if self.graph is not None:
            self.drop_graph()
        ref = getattr(self.actors[name], method).remote((self.seq[name], self.layer_of[name]), self.pos, *args)
        self.seq[name] += 1
        self.tail[name] = ref
        self.calls += 1
        return ref

    def set_position(self, epoch: int, sample: int, step: int, training: bool = True) -> None:
        """Sent with every message: actors start a new sample on its first message."""
        if (epoch, sample, training) != (self.pos[0], self.pos[1], self.pos[3]):
            self.check()
            self.send_counts()
        self.pos = (epoch, sample, step, training)

    def check(self) -> None:
        """Raise the error of any finished last call (a lost actor, a rejected message); never waits."""
        refs = list(self.tail.values())
        if not refs:
            return
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        done = set(ready)
        self.tail = {n: r for n, r in self.tail.items() if r not in done}
        if ready:
            ray.get(ready)

    def _take_counts(self, name: str) -> tuple[list, list]:
        """``(meta, parts)`` of the count batches kept for ``name``, which are then sent."""
        items = self.deferred.pop(name, [])
        return [(pos, kind, len(refs)) for pos, kind, refs in items], [r for _, _, refs in items for r in refs]

    def send_counts(self) -> None:
        """Send every kept count batch (one ``counts`` message per replica); before a state is read."""
        for name in list(self.deferred):
            meta, parts = self._take_counts(name)
            if meta:
                self._send(name, "counts", meta, *parts)

    def forward(self, layer: int, batch, train: bool) -> Pending:
        kind, refs = _as_args(batch)
        if train:  # the replicas' counts ride along with their next message
            for name in self.bq.get(layer, ()):
                self.deferred.setdefault(name, []).append((self.pos, kind, refs))
        return Pending(("shards",), [self._send(name, "forward", train, kind, *refs) for name in self.fq[layer]])

    def gate(self, layer: int, batch, smooth=None) -> Pending:
        kind, refs = _as_args(batch)
        sm = self._smooth_refs(smooth)
        masks = [self._send(name, "gate", len(sm), kind, *sm, *refs) for name in self.fq[layer]]
        return Pending(("gated", len(masks), kind), masks + refs)

    def backward(self, layer: int, batch, interleave: bool, smooth=None) -> Pending:
        kind, refs = _as_args(batch)
        sm = self._smooth_refs(smooth)
        out = []
        for name in self.bq[layer]:
            meta, counted = self._take_counts(name)
            if meta:
                out.append(self._send(name, "counted_backward", meta, interleave, len(sm), kind, *counted, *sm, *refs))
            else:
                out.append(self._send(name, "backward", interleave, len(sm), kind, *sm, *refs))
        return Pending(("shards",), out)

    def _smooth_refs(self, smooth) -> list:
        """Smooth updates: the running sum travels as refs (the documented dense exception)."""
        if smooth is None:
            return []
        return list(smooth.refs) if isinstance(smooth, Pending) else [smooth]

    def fetch(self, batch):
        """Resolve a pending batch into a concrete one (one round trip)."""
        if not isinstance(batch, Pending):
            return batch
        return assemble(batch.kind, _resolve(batch.refs))

    def preact(self, layer: int) -> Pending:
        """``S_l`` as the refs of its shards' blocks (concatenated by the receiver)."""
        return Pending(("concat",), [self._send(name, "preact") for name in self.fq[layer]])

    def predict_batch(self, samples: list, first: int) -> np.ndarray:
        """``S_L`` after the last step of each of ``samples`` (one ``Segments`` of ``T`` steps per
        prediction sample ``first, first+1, ...``), shape ``(K, n_L)``: one ``forward_many``
        message per shard and layer for the whole batch, each layer's fed by the shards before."""
        self.set_position(0, first, 0, False)
        kind, refs = ("value",), [list(samples)]
        for layer in sorted(self.fq):
            last = layer == max(self.fq)
            refs = [self._send(name, "forward_many", first, last, kind, *refs) for name in self.fq[layer]]
            kind = ("shards",)
        return np.concatenate(ray.get(refs), axis=1)

    def preact_values(self, layer: int) -> np.ndarray:
        return np.concatenate(ray.get([self._send(name, "preact") for name in self.fq[layer]]))

    def end_sample(self, smooth_inputs: list) -> None:
        self.send_counts()
        for layer, shards in (*self.fq.items(), *self.bq.items()):
            sm = self._smooth_refs(smooth_inputs[layer - 1])
            for name in shards:
                self._send(name, "end_sample", len(sm), *sm)

    def _get_all(self, names: list[str], method: str) -> list:
        return ray.get([getattr(self.actors[n], method).remote() for n in names])

    def weights(self) -> list[np.ndarray]:
        self.send_counts()
        return [np.concatenate(self._get_all(self.fq[l], "weights"), axis=1) for l in sorted(self.fq)]

    def backward_weights(self) -> dict[int, np.ndarray]:
        self.send_counts()
        return {l: np.concatenate(self._get_all(self.bq[l], "weights"), axis=0) for l in sorted(self.bq)}

    def spike_counts(self) -> np.ndarray:
        counts = np.zeros((4, len(self.fq) + 1), np.int64)
        for group in (self.fq, self.bq):
            for layer, shards in group.items():
                for c in self._get_all(shards, "counters"):
                    counts[:, layer] += c
        return counts

    def state(self) -> dict[str, np.ndarray]:
        self.send_counts()
        names = list(self.actors)
        states = self._get_all(names, "state")
        return {f"{n}.{k}": np.array(v) for n, st in zip(names, states) for k, v in st.items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Load a checkpoint into every actor; earlier calls still queued finish first, then numbering restarts."""
        refs = []
        for n, a in self.actors.items():
            prefix = f"{n}."
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            refs.append(a.load_state.remote(sub, self.seq[n]))
        ray.get(refs)
        self.tail.clear()  # calls before the restore: their results and errors are void
        self.deferred.clear()  # counts of the rolled-back sample

    def lost_actor(self, err: BaseException) -> str:
        """The name of the actor ``err`` reports lost, else of the actors that do not answer."""
        actor_id = getattr(err, "actor_id", None)
        for name, a in self.actors.items():
            if actor_id and a._actor_id.hex() == actor_id:
                return name
        return ", ".join(self.unanswered()) or "unknown"

    def explains_loss(self, err: BaseException) -> bool:
        """A failed task (e.g. a message rejected as out of order), or a closed channel of the compiled
        graph, while some actor is lost."""
        echoes = (ray.exceptions.RayTaskError, ray.exceptions.RayChannelError)
        return isinstance(err, echoes) and bool(self.unanswered())

    def unanswered(self) -> list[str]:
        """Actors that are dead or do not answer a ping within ``ping_timeout_s`` (after their queue)."""
        pings = {n: a.ping.remote() for n, a in self.actors.items()}
        lost = []
        for name, ref in pings.items():
            try:
                ray.get(ref, timeout=self.ping_timeout_s)
            except (*self.failures, ray.exceptions.GetTimeoutError):
                lost.append(name)
        return lost

    def revive(self) -> list[str]:
        """Re-create every actor that is dead or does not answer; their names."""
        self.drop_graph()
        lost = self.unanswered()
        for name in lost:
            ray.kill(self.actors[name], no_restart=True)
            self.actors[name] = self.factory.spawn(name)
        return lost

    def busy(self) -> dict[str, tuple[int, float]]:
        """Per actor: ``(messages applied, seconds spent applying them)`` (waits for queued calls)."""
        self.send_counts()
        names = list(self.actors)
        return dict(zip(names, self._get_all(names, "busy")))

    def node_ids(self) -> dict[str, str]:
        names = list(self.actors)
        return dict(zip(names, self._get_all(names, "node_id")))

    def flush(self) -> None:
        self.send_counts()
        self._get_all(list(self.actors), "flush")

    def discard_logs(self) -> None:
        self.drop_graph()  # recovery: a broken graph's execution loops must not hold the actors
        self._get_all(list(self.actors), "discard_logs")

    def close(self) -> None:
        """Flush logs, stop the actors, free the placement group; shut down Ray if we started it."""
        if self.actors is None:
            return
        try:
            self.drop_graph()
            self.send_counts()
            for ref in [a.close.remote() for a in self.actors.values()]:
                try:
                    ray.get(ref)
                except self.failures:  # a lost actor has nothing left to flush
                    pass
        finally:
            for a in self.actors.values():
                ray.kill(a)
            remove_placement_group(self.pg)
            self.actors = None
            if self.owns_ray:
                ray.shutdown()


def ray_net(cfg: NetConfig, runtime: RuntimeConfig, weights: list[np.ndarray] | None = None,
            logging: LoggingConfig | None = None, run_dir: str | None = None) -> SpikingNet:
    """Start (or join) Ray, place one actor per layer shard, and return the net."""
    runtime.check_against(cfg.model)
    if weights is None:
        weights = init_weights(cfg.model.sizes, cfg.model.w_init, cfg.seed)
    num = Numerics.of(cfg)
    plan = shard_plan(cfg, [num.encode(w) for w in weights], runtime.shards)
    groups = {"forward": runtime.placement.forward, "backward": runtime.placement.backward}
    bundles = [groups[kind].bundle() or {"CPU": 0.001} for _, kind, _, _ in plan]
    owns = start_ray(runtime, sum(b.get("CPU", 0.0) for b in bundles))
    try:
        pg = place(bundles, [p[0] for p in plan], runtime)
    except BaseException:
        if owns:
            ray.shutdown()
        raise
    run_dir = os.path.abspath(run_dir) if run_dir else None
    factory = ActorFactory([(n, kind, spec, block.shape) for n, kind, spec, block in plan], bundles, pg, num,
                           logging, run_dir)
    actors = {name: factory.spawn(name, block) for name, _, _, block in plan}
    return SpikingNet(cfg, RayBackend(actors, factory, owns, runtime.compiled))
