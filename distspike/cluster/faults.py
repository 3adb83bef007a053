"""Faults on the emulated cluster: kill a worker node, restart it, cut its link for a while.

``launch/emulated_cluster.sh kill I | restart I | partition I SECONDS`` (and the
functions below, for tests and ``benchmarks/bench_node_loss.py``). Only worker nodes
(``I >= 1``): the head holds the GCS and the driver, whose loss is out of scope.

- ``kill_node``: SIGKILL every process of node ``I`` (those in its namespace and its
  memory cgroup: raylet, agents, workers, actors), as a machine that loses power. Its
  namespace, link and cgroup stay, so ``restart_node`` can start it again.
- ``restart_node``: kill what is left of node ``I``, move its temp dir aside (to
  ``n<I>.<k>``, removed by ``stop``) and ``ray start`` it again in its namespace and
  cgroup, with the same address and resources: a new Ray node (a new node id) that
  offers ``node_<I>`` again.
- ``partition``: set the bridge's port of node ``I`` (``v<I>``, in the bridge's
  namespace) down for ``SECONDS``, then up again. Nothing else is touched; the node's
  processes live on but reach no one, and no one reaches them. A partition longer than
  the GCS's health checks allow (``emulated.HEALTH_CHECK``) gets the node declared dead;
  its raylet then exits once it hears so (or after Ray's GCS reconnect timeout, 60 s).
"""
from __future__ import annotations

import os
import signal
import time

from distspike.cluster import emulated
from distspike.cluster.emulated import Rig, RigError


def loaded(directory: str) -> Rig:
    """The rig recorded in ``directory``; RigError if there is none."""
    rig = Rig.load(directory)
    if rig is None or not rig.state.get("nodes"):
        raise RigError(f"no rig in {directory}; run 'emulated_cluster.sh start N' first")
    return rig


def worker(rig: Rig, i: int) -> dict:
    """Node ``i``'s record; RigError for the head or a node the rig does not have."""
    nodes = rig.state["nodes"]
    if isinstance(i, bool) or not isinstance(i, int) or not 1 <= i < len(nodes):
        raise RigError(f"node {i!r}: only worker nodes 1..{len(nodes) - 1} can be killed or cut off "
                       f"(node 0 is the head: it holds the GCS and the driver)")
    return nodes[i]


def node_pids(node: dict) -> set[int]:
    """Live processes of one node: in its namespace or its cgroup."""
    pids = emulated.netns_pids(node["ns"]) | emulated.cgroup_pids(node["cgroup"])
    return {p for p in pids if p != os.getpid()}


def kill_pids(node: dict, timeout_s: float = 30.0) -> int:
    """SIGKILL every process of ``node`` until none is left; how many were signalled."""
    signalled: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while (pids := node_pids(node)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        signalled |= pids
        time.sleep(0.05)
    if node_pids(node):
        raise RigError(f"processes {sorted(node_pids(node))} of node {node['ip']} survived SIGKILL")
    return len(signalled)


def kill_node(directory: str, i: int) -> float:
    """Kill every process of worker node ``i`` at once; the time (``time.time()``) the signals went out."""
    rig = loaded(directory)
    node = worker(rig, i)
    at = time.time()
    if not kill_pids(node):
        raise RigError(f"node {i} ({node['ip']}) has no process to kill: it is down already")
    return at


def restart_node(directory: str, i: int) -> None:
    """Start worker node ``i`` again (same namespace, cgroup, address and ``node_<i>``), after killing what is left."""
    rig = loaded(directory)
    node = worker(rig, i)
    kill_pids(node)
    if os.path.isdir(node["temp_dir"]):  # a new node must not find the old one's sockets
        old = f"{node['temp_dir']}.{len(node.get('old_temp_dirs', [])) + 1}"
        node.setdefault("old_temp_dirs", []).append(old)
        rig.save()
        os.replace(node["temp_dir"], old)
    emulated.start_node(rig, i, node)


def set_link(directory: str, i: int, up: bool) -> None:
    """Set node ``i``'s bridge port up or down (in the bridge's namespace; the node is untouched)."""
    rig = loaded(directory)
    worker(rig, i)
    bridge = emulated.names(rig.state["tag"], len(rig.state["nodes"]))["bridge"]
    emulated.sh("ip", "-n", bridge, "link", "set", f"v{i}", "up" if up else "down")


def partition(directory: str, i: int, seconds: float) -> float:
    """Cut worker node ``i`` off for ``seconds`` (its link down, then up again, also on error); when it was cut."""
    if not 0 < seconds <= 3600:
        raise RigError(f"partition of {seconds!r} s: give 0 < SECONDS <= 3600")
    set_link(directory, i, False)
    at = time.time()
    try:
        time.sleep(seconds)
    finally:
        set_link(directory, i, True)
    return at


# -- command line (emulated_cluster.sh kill | restart | partition) ----------------------------------
def add_commands(sub) -> None:
    """The fault subcommands of ``emulated_cluster.sh``."""
    sub.add_parser("kill", help="kill I: SIGKILL every process of worker node I").add_argument("node", type=int)
    sub.add_parser("restart", help="restart I: start worker node I again").add_argument("node", type=int)
    p = sub.add_parser("partition", help="partition I SECONDS: cut worker node I off for SECONDS")
    p.add_argument("node", type=int)
    p.add_argument("seconds", type=float)


def command(args) -> str:
    """Run one fault subcommand; the line it prints."""
    if args.command == "kill":
        at = kill_node(args.dir, args.node)
        return f"node {args.node} killed at {at:.3f}"
    if args.command == "restart":
        restart_node(args.dir, args.node)
        return f"node {args.node} restarted"
    at = partition(args.dir, args.node, args.seconds)
    return f"node {args.node} cut off at {at:.3f} for {args.seconds:g} s, link up again"
