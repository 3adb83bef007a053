"""Memory preflight: will every actor (and the driver) fit where it is to run, before any starts?

``plan`` estimates each actor's bytes from the sizes, dtype and shards alone (pure, no
Ray import); ``check_nodes`` compares them with the Ray ``memory`` resource of the
node each bundle can land on (``launch/emulated_cluster.sh`` sets it to the node's
cgroup cap less its object store and its measured daemons and idle workers);
``check_local`` compares the in-process total with this machine's available memory.
A plan that cannot fit raises ``MemoryPlanError`` with one line: the actor, its need,
the node and its capacity.

What an actor holds (``core/modules.py``): a forward shard its ``W`` block
``(n_in, nb)``, vectors ``S, phi`` (``nb``), ``c`` (``n_in``, int64), ``e`` (``nb``,
int64) and ``S_at`` (``T`` x ``nb``, sample-wide messages); a backward replica its
``W^T`` block ``(n_out, nb)``, ``phi, c`` (``nb``) and ``e`` (``n_out``). Every actor is
a worker process: ``WORKER_BYTES`` more. By default (``seeded``) each actor draws its own
block (``shard_state.SeededInit``: one chunk of float64 normals at a time, ``INIT_BYTES``)
and reads checkpoint parts straight into it, so it holds its block once and the driver
holds no weights at all. Weights handed in by the caller (``ray_net(weights=...)``) are
encoded by the driver and sent through its object store: the actor then holds its
block twice at creation (its copy and the arrival), the driver ``8 + 2 x itemsize``
bytes per weight.
"""
from __future__ import annotations

from distspike.runtime.cores import own_cgroups

#: a Ray worker process running a ShardActor of a small net: its anonymous resident memory (the
#: ``RssAnon`` of a ``ray::ShardActor`` in ``/proc/<pid>/status`` was about 130 MB on this machine)
WORKER_BYTES = 150 << 20
DTYPE_BYTES = {"float64": 8, "float32": 4, "int": 8}
#: a seeded actor's init draws (``core.network.INIT_CHUNK`` float64 normals) and their encoded slice
INIT_BYTES = 2 * 8 * (1 << 21)


class MemoryPlanError(RuntimeError):
    """An actor (or the driver) needs more memory than where it is to run offers."""


def gib(n: float) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def actor_bytes(kind: str, n_in: int, n_out: int, nb: int, itemsize: int, steps: int, seeded: bool = False) -> int:
    """Bytes one shard actor holds at its peak (creation), ``nb`` its block's width; ``seeded``: it
    draws its own block (held once, plus one chunk of draws), else it arrives through the object store."""
    if kind == "forward":
        weights = n_in * nb * itemsize
        vectors = (2 + steps) * nb * itemsize + 8 * (n_in + nb)
    else:
        weights = n_out * nb * itemsize
        vectors = nb * itemsize + 8 * (nb + n_out)
    if seeded:
        return WORKER_BYTES + weights + min(INIT_BYTES, 16 * weights // itemsize) + vectors
    return WORKER_BYTES + 2 * weights + vectors


def plan(rows: list[tuple], dtype: str, steps: int, seeded: bool = False) -> dict[str, int]:
    """Per actor: its bytes. ``rows``: ``(name, kind, spec)`` as ``local.plan_specs`` gives them."""
    isz = DTYPE_BYTES[dtype]
    return {name: actor_bytes(kind, s.n_in, s.n_out, s.hi - s.lo, isz, steps, seeded) for name, kind, s in rows}


def driver_bytes(sizes: list[int], dtype: str, in_process: bool) -> int:
    """Bytes the driver holds: float64 init and encoded weights; blocks in flight (Ray) or the
    in-process modules' own copies (``in_process``: forward blocks and backward replicas)."""
    isz = DTYPE_BYTES[dtype]
    per_layer = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    total = sum(per_layer)
    held = 8 * total + isz * total
    if in_process:
        return held + isz * total + isz * sum(per_layer[1:])
    return held + isz * total


def candidates(bundle: dict, nodes: dict[str, dict]) -> list[str]:
    """Nodes offering every custom resource ``bundle`` asks for (all nodes if it asks for none)."""
    custom = [k for k in bundle if k not in ("CPU", "GPU", "memory")]
    return [n for n, res in nodes.items() if all(res.get(k, 0.0) > 0 for k in custom)]


def check_nodes(needs: dict[str, int], bundles: dict[str, dict], nodes: dict[str, dict]) -> None:
    """Each actor against the largest node its bundle can land on; actors that can land on one node
    only, together against that node. ``nodes``: address -> Ray resources (``memory`` in bytes)."""
    pinned: dict[str, list[str]] = {}
    for name, need in needs.items():
        where = candidates(bundles[name], nodes)
        if not where:
            continue  # no node offers its resources: placement names the bundle
        best = max(where, key=lambda n: nodes[n].get("memory", 0.0))
        cap = nodes[best].get("memory", 0.0)
        if need > cap:
            raise MemoryPlanError(f"preflight: actor {name} needs {gib(need)}, more than the {gib(cap)} of Ray "
                                  f"memory of node {best}, the largest it can run on")
        if len(where) == 1:
            pinned.setdefault(best, []).append(name)
    for node, names in pinned.items():
        total, cap = sum(needs[n] for n in names), nodes[node].get("memory", 0.0)
        if total > cap:
            raise MemoryPlanError(f"preflight: actors {', '.join(names)} need {gib(total)} together, more than the "
                                  f"{gib(cap)} of Ray memory of node {node}, where they are pinned")


def check_driver(need: int, available: int, what: str) -> None:
    """The driver (or the in-process run, ``what``) against this machine's available memory."""
    if need > available:
        raise MemoryPlanError(f"preflight: {what} needs {gib(need)}, more than the {gib(available)} this machine "
                              f"has available")


def check_ray(cfg, specs: list[tuple], bundles: list[dict], nodes: dict[str, dict], available: int,
              seeded: bool = False) -> None:
    """A Ray run, before any actor starts: each actor against the nodes its bundle can land on
    (``nodes``: address -> Ray resources); unless ``seeded`` (actors draw their own blocks, the
    driver holds no weights), the driver against ``available`` bytes of its machine."""
    needs = plan(specs, cfg.model.dtype, cfg.training.steps, seeded)
    check_nodes(needs, {name: b for (name, _, _), b in zip(specs, bundles)}, nodes)
    if not seeded:
        check_driver(driver_bytes(cfg.model.sizes, cfg.model.dtype, in_process=False), available,
                     "the driver (it encodes and sends the weights it was given)")


def available_bytes() -> int:
    """``MemAvailable``, capped by this process's memory cgroup limit less its usage (v1 or v2)."""
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    avail = info.get("MemAvailable", info.get("MemFree", 0))
    room = cgroup_room()
    return int(min(avail, room)) if room is not None else int(avail)


def cgroup_room() -> float | None:
    """This process's memory cgroup limit less its usage, or None when unlimited or unknown."""
    lines = own_cgroups()
    for ctrls, path in lines:
        base = None
        if "memory" in ctrls.split(","):
            base, files = f"/sys/fs/cgroup/memory{path}", ("memory.limit_in_bytes", "memory.usage_in_bytes")
        elif ctrls == "" and len(lines) == 1:
            base, files = f"/sys/fs/cgroup{path}", ("memory.max", "memory.current")
        if base:
            try:
                with open(f"{base}/{files[0]}") as a, open(f"{base}/{files[1]}") as b:
                    limit, usage = a.read().strip(), int(b.read())
            except (OSError, ValueError):
                return None
            return None if limit == "max" or int(limit) >= 1 << 60 else int(limit) - usage
    return None

