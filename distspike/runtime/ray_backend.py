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
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from distspike.config import LoggingConfig, NetConfig, RuntimeConfig
from distspike.core.messages import merge_parts
from distspike.core.modules import Numerics
from distspike.core.network import SpikingNet, init_weights
from distspike.runtime.local import make_recorder, shard_plan
from distspike.runtime.shell import Shell, make_module


class PlacementError(RuntimeError):
    """A placement group could not be placed; the message names the bundle."""


# -- assembling a message from the refs of several shards ------------------------------
class Pending:
    """A batch that exists only as refs: ``kind`` says how to assemble it from ``refs``.

    ``("shards",)``: the outputs of all shards of one layer, merged into unsharded
    order. ``("gated", n)``: ``n`` pass masks from the forward shards, then the parts
    of the gated batch; the passed events are selected.
    """

    __slots__ = ("kind", "refs")

    def __init__(self, kind: tuple, refs: list):
        self.kind, self.refs = kind, refs


def assemble(kind: tuple, parts: list):
    """Rebuild a batch (or ``Segments``) from the resolved parts of a ``Pending``."""
    if kind[0] == "value":
        return parts[0]
    if kind[0] == "shards":
        return merge_parts(list(parts)).plain()
    n = kind[1]
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
class ShardActor:
    """One shard of a forward or backward quantizer, as a Ray actor (a thin shell).

    Every message carries its position ``(epoch, sample, step)`` and how to assemble
    its batch from the argument refs, which Ray resolves before the call runs.
    """

    def __init__(self, name: str, kind: str, spec, num: Numerics, weights: np.ndarray,
                 logging: LoggingConfig | None, run_dir: str | None):
        module = make_module(kind, spec, num, weights)
        self.shell = Shell(name, module, make_recorder(logging, run_dir, name), validate=True)

    def _batch(self, pos, kind, parts):
        self.shell.set_position(*pos)
        return assemble(kind, parts)

    def _at(self, pos):
        self.shell.set_position(*pos)

    def forward(self, pos, train, kind, *parts):
        return self.shell.forward(self._batch(pos, kind, parts), train)

    def count(self, pos, kind, *parts):
        self.shell.count(self._batch(pos, kind, parts))

    def gate(self, pos, n_smooth, kind, *parts):
        smooth = np.concatenate(parts[:n_smooth]) if n_smooth else None
        return self.shell.gate(self._batch(pos, kind, parts[n_smooth:]), smooth)

    def backward(self, pos, interleave, n_smooth, kind, *parts):
        smooth = np.concatenate(parts[:n_smooth]) if n_smooth else None
        return self.shell.backward(self._batch(pos, kind, parts[n_smooth:]), interleave, smooth)

    def end_sample(self, pos, n_smooth, *parts):
        self._at(pos)
        self.shell.end_sample(np.concatenate(parts) if n_smooth else None)

    def preact(self, pos):
        self._at(pos)
        return self.shell.preact()

    def weights(self):
        return self.shell.weights()

    def counters(self):
        return self.shell.counters

    def state(self):
        return self.shell.state()

    def load_state(self, state):
        self.shell.load_state(state)

    def flush(self):
        self.shell.flush()

    def close(self):
        self.shell.close()

    def node_id(self):
        return ray.get_runtime_context().get_node_id()


# -- Ray lifecycle and placement -------------------------------------------------------
def start_ray(runtime: RuntimeConfig, num_cpus: float) -> bool:
    """Join ``runtime.address``, or start an embedded local instance; True if we started it.

    The embedded instance has no dashboard, listens on loopback, uses its own temp dir
    and offers as many logical CPUs as the actors ask for (they mostly wait on
    messages, so the logical count need not match the cores).
    """
    if ray.is_initialized():
        return False
    if runtime.kind == "ray_cluster":
        ray.init(address=runtime.address, log_to_driver=False)
        return False
    temp_dir = runtime.temp_dir or tempfile.mkdtemp(prefix="dsray-", dir="/tmp")
    os.makedirs(temp_dir, exist_ok=True)
    ray.init(num_cpus=max(num_cpus, os.cpu_count() or 1), include_dashboard=False, _temp_dir=temp_dir,
             _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
    return True


def place(bundles: list[dict], names: list[str], runtime: RuntimeConfig):
    """Create the placement group and wait at most ``timeout_s`` for it; else name the bundle."""
    pg = placement_group(bundles, strategy=runtime.placement.strategy, name="distspike")
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
class RayBackend:
    """Dispatches the scheduler's batches to shard actors; same interface as ``LocalBackend``."""

    def __init__(self, actors: dict[str, object], plan: list, pg, owns_ray: bool):
        self.actors, self.pg, self.owns_ray = actors, pg, owns_ray
        self.fq: dict[int, list] = {}
        self.bq: dict[int, list] = {}
        for name, kind, spec, _ in plan:
            (self.fq if kind == "forward" else self.bq).setdefault(spec.layer, []).append(actors[name])
        self.pos = (0, 0, 0, True)
        self.calls = 0

    def set_position(self, epoch: int, sample: int, step: int, training: bool = True) -> None:
        """Sent with every message: actors start a new sample on its first message."""
        self.pos = (epoch, sample, step, training)

    def forward(self, layer: int, batch, train: bool) -> Pending:
        kind, refs = _as_args(batch)
        if train:
            for a in self.bq.get(layer, ()):
                a.count.remote(self.pos, kind, *refs)
        out = [a.forward.remote(self.pos, train, kind, *refs) for a in self.fq[layer]]
        self.calls += len(out) + (len(self.bq.get(layer, ())) if train else 0)
        return Pending(("shards",), out)

    def gate(self, layer: int, batch, smooth=None) -> Pending:
        kind, refs = _as_args(batch)
        sm = self._smooth_refs(smooth)
        masks = [a.gate.remote(self.pos, len(sm), kind, *sm, *refs) for a in self.fq[layer]]
        self.calls += len(masks)
        return Pending(("gated", len(masks), kind), masks + refs)

    def backward(self, layer: int, batch, interleave: bool, smooth=None) -> Pending:
        kind, refs = _as_args(batch)
        sm = self._smooth_refs(smooth)
        out = [a.backward.remote(self.pos, interleave, len(sm), kind, *sm, *refs) for a in self.bq[layer]]
        self.calls += len(out)
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
        self.calls += len(self.fq[layer])
        return Pending(("concat",), [a.preact.remote(self.pos) for a in self.fq[layer]])

    def preact_values(self, layer: int) -> np.ndarray:
        self.calls += len(self.fq[layer])
        return np.concatenate(ray.get([a.preact.remote(self.pos) for a in self.fq[layer]]))

    def end_sample(self, smooth_inputs: list) -> None:
        for layer, shards in (*self.fq.items(), *self.bq.items()):
            sm = self._smooth_refs(smooth_inputs[layer - 1])
            for a in shards:
                a.end_sample.remote(self.pos, len(sm), *sm)
                self.calls += 1

    def weights(self) -> list[np.ndarray]:
        return [np.concatenate(ray.get([a.weights.remote() for a in self.fq[l]]), axis=1) for l in sorted(self.fq)]

    def backward_weights(self) -> dict[int, np.ndarray]:
        return {l: np.concatenate(ray.get([a.weights.remote() for a in self.bq[l]]), axis=0)
                for l in sorted(self.bq)}

    def spike_counts(self) -> np.ndarray:
        counts = np.zeros((4, len(self.fq) + 1), np.int64)
        for group in (self.fq, self.bq):
            for layer, shards in group.items():
                for c in ray.get([a.counters.remote() for a in shards]):
                    counts[:, layer] += c
        return counts

    def state(self) -> dict[str, np.ndarray]:
        names = list(self.actors)
        states = ray.get([self.actors[n].state.remote() for n in names])
        return {f"{n}.{k}": np.array(v) for n, st in zip(names, states) for k, v in st.items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        refs = []
        for n, a in self.actors.items():
            prefix = f"{n}."
            refs.append(a.load_state.remote({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}))
        ray.get(refs)

    def node_ids(self) -> dict[str, str]:
        names = list(self.actors)
        return dict(zip(names, ray.get([self.actors[n].node_id.remote() for n in names])))

    def flush(self) -> None:
        ray.get([a.flush.remote() for a in self.actors.values()])

    def close(self) -> None:
        """Flush logs, stop the actors, free the placement group; shut down Ray if we started it."""
        if self.actors is None:
            return
        try:
            ray.get([a.close.remote() for a in self.actors.values()])
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
    remote_cls = ray.remote(ShardActor)
    actors = {}
    run_dir = os.path.abspath(run_dir) if run_dir else None
    for k, (name, kind, spec, block) in enumerate(plan):
        strategy = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=k)
        actors[name] = remote_cls.options(scheduling_strategy=strategy, max_concurrency=1,
                                          **_actor_options(bundles[k])).remote(
            name, kind, spec, num, np.ascontiguousarray(block), logging, run_dir)
    return SpikingNet(cfg, RayBackend(actors, plan, pg, owns))
