"""Ray runtime (``runtime=ray_local|ray_cluster``): every layer shard is a Ray actor.

Each actor (``ray_actor.py``) wraps a ``Shell`` around the very module object of
the in-process runtime. The central ``Scheduler`` is unchanged: this backend turns
its dispatches into actor calls. Placement is ``ray_placement.py``, actor creation
``ray_factory.py``, batches as refs ``ray_refs.py``. Only spike batches (and, for smooth updates, the documented
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

import numpy as np
import ray
from ray.util.placement_group import remove_placement_group

from distspike.config import ConfigError, LoggingConfig, NetConfig, RuntimeConfig
from distspike.core.messages import Segments
from distspike.core.network import SpikingNet
from distspike.core.modules import Numerics
from distspike.runtime.compiled import SampleGraph
from distspike.runtime import memplan
from distspike.runtime.connect import join
from distspike.runtime.local import block_shape, plan_specs, shard_plan
from distspike.runtime.node_loss import LossHandling
from distspike.runtime.ray_factory import ActorFactory
from distspike.runtime.ray_placement import PlacementError  # noqa: F401 - re-exported for callers
from distspike.runtime.ray_placement import alive_nodes, choose_calls, place, shard_bundles
from distspike.runtime.ray_refs import Pending, _as_args, _resolve, assemble
from distspike.runtime.ray_storage import Collecting, first_store, settle
from distspike.runtime.shard_state import SeededInit
from distspike.runtime.storage import stale_temps


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
            join(runtime.address, log_to_driver=False)  # fails fast, naming the address, if nothing listens
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



# -- the backend ------------------------------------------------------------------------
class RayBackend(LossHandling, Collecting):
    """Dispatches the scheduler's batches to shard actors; same interface as ``LocalBackend``.

    Every message to an actor is numbered (``seq``); the last call submitted to each
    actor is kept, and checked without waiting whenever a new sample starts, so an
    actor lost anywhere (also on the un-awaited backward chain) surfaces within one
    sample as one of ``failures``. ``revive`` re-creates lost actors, and
    ``load_state`` restores a checkpoint into every actor and resets the numbering.
    Where the actors' parts go, and how the driver collects them: ``Collecting``.
    """

    def __init__(self, actors: dict[str, object], factory: ActorFactory, owns_ray: bool, compiled: bool = False):
        self.actors, self.factory, self.pg, self.owns_ray = actors, factory, factory.pg, owns_ray
        self.store = factory.store  # runtime.storage, settled
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
        self.remember_nodes()  # node_loss.LossHandling: failures, lost_actor, revive, ...

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

    def busy(self) -> dict[str, tuple[int, float, float]]:
        """Per actor: ``(messages applied, seconds spent applying them, their thread CPU seconds)``
        (waits for queued calls)."""
        self.send_counts()
        names = list(self.actors)
        return dict(zip(names, self._get_all(names, "busy")))

    def node_ids(self) -> dict[str, str]:
        names = list(self.actors)
        return dict(zip(names, self._get_all(names, "node_id")))

    def flush(self) -> None:
        self.send_counts()
        self._get_all(list(self.actors), "flush")
        self.collect_traffic()  # runtime.storage=collect: the parts just written, into the run dir

    def discard_logs(self) -> None:
        self.drop_graph()  # recovery: a broken graph's execution loops must not hold the actors
        self._get_all(list(self.actors), "discard_logs")
        self.collect_traffic()  # collect: parts after the snapshot join the run dir, for the rollback to move

    def close(self) -> None:
        """Flush logs, stop the actors, free the placement group; shut down Ray if we started it."""
        if self.actors is None:
            return
        try:
            self.drop_graph()
            self.send_counts()
            for ref in [a.close.remote() for n, a in self.actors.items() if n not in self.stranded]:
                try:
                    ray.get(ref)
                except self.failures:  # a lost actor has nothing left to flush
                    pass
            self.finish_storage()
        finally:
            for a in self.actors.values():
                ray.kill(a)
            remove_placement_group(self.pg)
            self.actors = None
            if self.owns_ray:
                ray.shutdown()


def ray_net(cfg: NetConfig, runtime: RuntimeConfig, weights: list[np.ndarray] | None = None,
            logging: LoggingConfig | None = None, run_dir: str | None = None) -> SpikingNet:
    """Start (or join) Ray, check that the actors fit, place one actor per layer shard, and return the net."""
    if cfg.training.regularization:
        raise ConfigError(f"training.regularization={cfg.training.regularization!r} needs runtime=local: on Ray "
                          f"the backward replicas do not receive the forward spikes that the penalty updates")
    runtime.check_against(cfg.model)
    num = Numerics.of(cfg)
    specs = plan_specs(cfg, runtime.shards)
    bundles = shard_bundles([p[0] for p in specs], [p[1] for p in specs], runtime.placement)
    owns = start_ray(runtime, sum(b.get("CPU", 0.0) for b in bundles))
    try:
        memplan.check_ray(cfg, specs, bundles, alive_nodes(), memplan.available_bytes(), seeded=weights is None)
        if weights is None:  # the driver holds no layer: each actor draws its own block
            blocks = {name: SeededInit(tuple(cfg.model.sizes), cfg.model.w_init, cfg.seed) for name, _, _ in specs}
        else:
            blocks = {name: b for name, _, _, b in shard_plan(cfg, [num.encode(w) for w in weights], runtime.shards)}
        pg = place(bundles, [p[0] for p in specs], runtime)
    except BaseException:
        if owns:
            ray.shutdown()
        raise
    run_dir = os.path.abspath(run_dir) if run_dir else None
    logging = logging.for_net(cfg) if logging is not None else None  # one run id for all actors, respawns too
    factory = ActorFactory([(n, kind, spec, block_shape(kind, spec)) for n, kind, spec in specs], bundles, pg, num,
                           logging, first_store(runtime.storage, runtime.kind, run_dir))
    actors = {name: factory.spawn(name, blocks.pop(name)) for name, _, _ in specs}
    try:
        compiled = choose_calls(actors, runtime.compiled)  # waits for every actor to start
        factory.store = settle(actors, factory.store, runtime.storage, runtime.kind)
        for temp in stale_temps(run_dir) if factory.store.collect else ():
            temp.unlink(missing_ok=True)  # left by a collecting driver that was killed
    except BaseException:
        for a in actors.values():
            ray.kill(a)
        remove_placement_group(pg)
        if owns:
            ray.shutdown()
        raise
    backend = RayBackend(actors, factory, owns, compiled)
    backend.revive_timeout_s = runtime.placement.timeout_s
    return SpikingNet(cfg, backend)
