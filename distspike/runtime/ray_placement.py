"""Placement of the Ray runtime's shard actors: one placement-group bundle per actor.

``place`` creates the group and waits for it; when it cannot be placed,
``unplaceable_bundle`` names the first bundle no node can hold (``PlacementError``).
"""
from __future__ import annotations

import logging
import uuid

import ray
from ray.util.placement_group import placement_group, remove_placement_group

from distspike.config import PlacementConfig, RuntimeConfig
from distspike.runtime.cores import choose

log = logging.getLogger(__name__)


class PlacementError(RuntimeError):
    """A placement group could not be placed; the message names the bundle."""


def place(bundles: list[dict], names: list[str], runtime: RuntimeConfig):
    """Create the placement group and wait at most ``timeout_s`` for it; else name the bundle."""
    # a name exists once per Ray namespace: each net's group gets its own, so nets can share a Ray;
    # the strategy goes to Ray's C++ layer as a plain str (it is a str Enum, config.Strategy)
    strategy = str(runtime.placement.strategy)
    pg = placement_group(bundles, strategy=strategy, name=f"distspike-{uuid.uuid4().hex[:12]}")
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


def actor_options(bundle: dict) -> dict:
    opts = {"num_cpus": bundle.get("CPU", 0.0)}
    if "memory" in bundle:
        opts["memory"] = bundle["memory"]
    custom = {k: v for k, v in bundle.items() if k not in ("CPU", "memory")}
    if custom:
        opts["resources"] = custom
    return opts


def shard_bundles(names: list[str], kinds: list[str], placement: PlacementConfig) -> list[dict]:
    """One bundle per actor: its group's resources, plus ``node_<k>`` for shard ``k`` with ``pin_shards``.

    Actor names are ``<kind>.<layer>.<shard>``. A bundle that would be empty asks for a
    sliver of a CPU (Ray refuses empty bundles).
    """
    groups = {"forward": placement.forward, "backward": placement.backward}
    bundles = []
    for name, kind in zip(names, kinds):
        b = groups[kind].bundle()
        if placement.pin_shards:
            b[f"node_{int(name.split('.')[2])}"] = 0.001
        bundles.append(b or {"CPU": 0.001})
    return bundles


def where_actors(actors: dict) -> dict[str, dict]:
    """Per actor: its node's address and what its process may really use (``ShardActor.where``)."""
    names = list(actors)
    return dict(zip(names, ray.get([actors[n].where.remote() for n in names])))


def actors_per_node(where: dict[str, dict]) -> str:
    """``"<node ip>: <actor> <actor>; ..."``, nodes in address order, actors in plan order."""
    nodes: dict[str, list[str]] = {}
    for name, w in where.items():
        nodes.setdefault(w["node"], []).append(name)
    order = sorted(nodes, key=lambda ip: tuple(int(p) if p.isdigit() else 0 for p in ip.split(".")))
    return "; ".join(f"{ip}: {' '.join(nodes[ip])}" for ip in order)


def alive_nodes() -> dict[str, dict]:
    """Address -> Ray resources of every alive node (``memory`` in bytes)."""
    return {n["NodeManagerAddress"]: dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")}


def choose_calls(actors: dict, setting) -> bool:
    """Compiled graphs or plain calls (``runtime.compiled``, ``cores.choose``); logs the choice and
    where the actors run, one line each."""
    where = where_actors(actors)
    compiled, why = choose(setting, where)
    log.info(why)
    log.info("actors per node: %s", actors_per_node(where))
    return compiled
