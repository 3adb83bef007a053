"""Placement of the Ray runtime's shard actors: one placement-group bundle per actor.

``place`` creates the group and waits for it; when it cannot be placed,
``unplaceable_bundle`` names the first bundle no node can hold (``PlacementError``).
"""
from __future__ import annotations

import uuid

import ray
from ray.util.placement_group import placement_group, remove_placement_group

from distspike.config import RuntimeConfig


class PlacementError(RuntimeError):
    """A placement group could not be placed; the message names the bundle."""


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


def actor_options(bundle: dict) -> dict:
    opts = {"num_cpus": bundle.get("CPU", 0.0)}
    if "memory" in bundle:
        opts["memory"] = bundle["memory"]
    custom = {k: v for k, v in bundle.items() if k not in ("CPU", "memory")}
    if custom:
        opts["resources"] = custom
    return opts
