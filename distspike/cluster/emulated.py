"""An emulated Ray cluster on one machine: one network namespace and one memory cgroup per node.

``launch/emulated_cluster.sh start N | status | run -- CMD... | stop`` is a thin
wrapper around ``python -m distspike.cluster.emulated``; tests use it through the
fixture in ``tests/cluster/conftest.py``. What the rig builds (``start``):

- a bridge ``br0`` in a namespace of its own (``dsr<tag>b``), never in the root
  namespace, and one namespace per Ray node (``dsr<tag>n<i>``) holding one end of a
  veth pair (``eth0``, address ``198.18.0.<i+2>/24``, from the benchmarking range
  198.18.0.0/15) whose other end (``v<i>``) is a port of the bridge. Node 0 is the
  head; the driver (``run``) runs in its namespace, as a driver runs on a real
  cluster's head node: a Ray driver needs a raylet on its own host. Ray's servers bind
  every interface of their namespace, so they listen on the rig's veths and loopbacks
  only, never on the host's interfaces; that is why token auth is off
  (``RAY_AUTH_MODE=disabled``) inside the rig.
- a memory cgroup per node (v1 ``/sys/fs/cgroup/memory/<own>/dsr<tag>n<i>``, or v2
  where the unified hierarchy with the memory controller is mounted at
  ``/sys/fs/cgroup``; ``<own>`` is the cgroup of the process that starts the rig, so
  limits above it still hold) capped at ``--mem-mb``. ``ray start`` runs inside it, so every process of the node
  (raylet, agents, idle workers, actors, and the object store pages they write)
  is charged to it. The node's Ray ``memory`` resource is the cap less the object
  store and a reserve for the node's own daemons and idle workers
  (``--head-reserve-mb``, ``--reserve-mb``); ``start`` measures that baseline and fails if it exceeds the
  reserve. The memory preflight (``runtime/memplan.py``) checks actors against
  the ``memory`` resource, so the baseline is included in what it checks.
- a custom resource ``node_<i>`` per node (``placement=one_per_node`` pins shard
  ``i`` of every layer to it), a temp dir per node under the rig dir, and
  ``--num-cpus`` logical CPUs (default: the cores this process may run on).

Everything made is written to the state file *before* it is made, so ``stop``
removes exactly what ``start`` made (the processes in the rig's namespaces and
cgroups, the namespaces with their links, the cgroups), also after a failed or
crashed start. It never runs ``ray stop``. Processes are found with ``ip netns pids``
and the cgroups' ``cgroup.procs``, never by name.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

MIB = 1 << 20
HEAD_PORT = 6379
MAX_NODES = 200  # 198.18.0.2 .. 198.18.0.201 on one /24
#: kept free for the driver, the host and everyone else when sizing a rig (bytes)
HOST_RESERVE = 2 << 30
STATE_NAME = "rig.json"
PROG = "emulated_cluster"


class RigError(Exception):
    """A problem the user can fix, reported as one line (no traceback)."""


# -- pure planning ------------------------------------------------------------------------
def node_ip(i: int) -> str:
    """Address of node ``i`` (node 0 is the head) on the rig's /24."""
    return f"198.18.0.{i + 2}"


def rig_tag(directory: str) -> str:
    """A short tag derived from the rig dir, so rigs in different dirs never share a name."""
    return hashlib.sha1(os.path.abspath(directory).encode()).hexdigest()[:6]


def plan_nodes(n: int, cap: int, store: int, reserves: tuple[int, int], available: int) -> list[int]:
    """Ray ``memory`` resource (bytes) of each of ``n`` nodes capped at ``cap``; RigError if they cannot fit.

    ``store``: object store per node; ``reserves``: ``(head, other)`` bytes for a node's
    own daemons and idle workers (the head also runs the GCS); ``available``: memory this
    machine can give the rig (``MemAvailable`` less ``HOST_RESERVE``).
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_NODES:
        raise RigError(f"N={n!r} must be a node count from 1 to {MAX_NODES}")
    memories = [cap - store - (reserves[0] if i == 0 else reserves[1]) for i in range(n)]
    if min(memories) < 64 * MIB:
        need = store + max(reserves[: min(n, 2)]) + 64 * MIB
        raise RigError(f"--mem-mb={cap // MIB} leaves {max(min(memories), 0) // MIB} MiB for actors after the "
                       f"object store ({store // MIB} MiB) and the node reserve; give at least {need // MIB}")
    if n * cap > available:
        raise RigError(f"N={n} nodes x {cap // MIB} MiB = {n * cap // MIB} MiB exceed the {available // MIB} MiB "
                       f"this machine has available for a rig; use fewer nodes or a smaller --mem-mb")
    return memories


def names(tag: str, n: int) -> dict:
    """The namespaces and cgroups of a rig of ``n`` nodes."""
    return {"bridge": f"dsr{tag}b", "nodes": [f"dsr{tag}n{i}" for i in range(n)]}


# -- the host: root, namespaces, cgroups ------------------------------------------------------
def own_cgroup(controller: str) -> str:
    """This process's cgroup path (``/``-rooted) for a v1 ``controller``, or the v2 path for ``""``."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if (controller and controller in ctrls.split(",")) or (not controller and ctrls == ""):
                return path
    return "/"


def cgroup_base() -> tuple[str, int]:
    """``(directory, version)`` under which the rig's memory cgroups go: this process's own memory
    cgroup (so limits above it still hold), v2 if the unified hierarchy has the memory controller."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        with open("/sys/fs/cgroup/cgroup.controllers") as f:
            if "memory" in f.read().split():
                return os.path.join("/sys/fs/cgroup", own_cgroup("").lstrip("/")).rstrip("/"), 2
    if os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        return os.path.join("/sys/fs/cgroup/memory", own_cgroup("memory").lstrip("/")).rstrip("/"), 1
    raise RigError("no cgroup memory controller (neither v1 at /sys/fs/cgroup/memory nor v2 at /sys/fs/cgroup)")


def cgroup_usage(path: str, version: int) -> int:
    """Non-reclaimable memory charged to a cgroup: anonymous plus shared memory (object store) bytes."""
    with open(os.path.join(path, "memory.stat")) as f:
        stat = dict(line.split()[:2] for line in f if line.strip())
    keys = ("total_rss", "total_shmem") if version == 1 else ("anon", "shmem")
    return sum(int(stat.get(k, 0)) for k in keys)


def require_host() -> None:
    """Root and network namespaces, else one line saying which is missing."""
    if os.geteuid() != 0:
        raise RigError("needs root (network namespaces and cgroups); run it as root")
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            raise RigError(f"needs '{tool}' on PATH (iproute2 / util-linux)")
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise RigError(f"no network namespaces here: ip netns list: {probe.stderr.strip() or probe.returncode}")


def host_problem() -> str | None:
    """Why a rig cannot be built here (no root, no namespaces, no memory cgroup), or None."""
    try:
        require_host()
        cgroup_base()
    except RigError as err:
        return str(err)
    return None


def available_memory() -> int:
    """``MemAvailable`` of this machine less ``HOST_RESERVE`` (bytes)."""
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    return max(info.get("MemAvailable", 0) - HOST_RESERVE, 0)


def usable_cores() -> int:
    """Cores this process may run on (its affinity)."""
    return len(os.sched_getaffinity(0))


def sh(*cmd: str) -> str:
    """Run a command; its stdout, or RigError with its stderr as one line."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        msg = " ".join(done.stderr.split()) or f"exit {done.returncode}"
        raise RigError(f"{' '.join(cmd)}: {msg}")
    return done.stdout


def netns_exists(ns: str) -> bool:
    return os.path.exists(f"/run/netns/{ns}")


def netns_pids(ns: str) -> set[int]:
    """Processes in namespace ``ns`` (none if it is gone)."""
    if not netns_exists(ns):
        return set()
    done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return {int(p) for p in done.stdout.split()}


def cgroup_pids(path: str) -> set[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return {int(p) for p in f.read().split()}
    except FileNotFoundError:
        return set()


# -- the state file -----------------------------------------------------------------------
class Rig:
    """A rig's state, saved to ``<dir>/rig.json`` before each thing it makes is made."""

    def __init__(self, directory: str, state: dict | None = None):
        self.dir = os.path.abspath(directory)
        self.path = os.path.join(self.dir, STATE_NAME)
        self.state = state if state is not None else {
            "tag": rig_tag(self.dir), "namespaces": [], "cgroups": [], "nodes": [], "address": None}

    @classmethod
    def load(cls, directory: str) -> "Rig | None":
        path = os.path.join(directory, STATE_NAME)
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                state = json.load(f)
        except (OSError, ValueError) as err:
            raise RigError(f"state file {path} is unreadable ({err}); delete it and run stop again") from None
        if not isinstance(state, dict) or not isinstance(state.get("tag"), str):
            raise RigError(f"state file {path} is not a rig state; delete it and run stop again")
        return cls(directory, state)

    def save(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f, indent=1)
        os.replace(tmp, self.path)

    def made(self, key: str, item: str) -> None:
        """Record ``item`` (a namespace or cgroup) before it is made."""
        self.state[key].append(item)
        self.save()

    @property
    def head_ns(self) -> str:
        return self.state["nodes"][0]["ns"]


# -- start ------------------------------------------------------------------------------
#: the GCS's health checks of the rig's raylets, shorter than Ray's defaults (a check every 3 s,
#: 10 s timeout, 5 failures) so that a lost node is declared dead within seconds: a killed
#: node after about 5 failed checks 1 s apart (5-6 s), a cut-off one after 5 checks that each
#: time out after 1.5 s (about 8-13 s). Settings already in the environment win.
HEALTH_CHECK = {"RAY_health_check_initial_delay_ms": "2000", "RAY_health_check_period_ms": "1000",
                "RAY_health_check_timeout_ms": "1500", "RAY_health_check_failure_threshold": "5"}


def ray_env() -> dict:
    """Environment of the rig's Ray processes: no auth (nothing listens outside the rig), no usage
    stats, the rig's health checks (``HEALTH_CHECK``)."""
    env = dict(HEALTH_CHECK)
    env.update(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    return env


def make_network(rig: Rig, n: int) -> None:
    """The bridge namespace, then per node a namespace with ``eth0`` wired to a bridge port."""
    ns = names(rig.state["tag"], n)
    bridge = ns["bridge"]
    rig.made("namespaces", bridge)
    sh("ip", "netns", "add", bridge)
    sh("ip", "-n", bridge, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", bridge, "link", "set", "br0", "up")
    for i, node in enumerate(ns["nodes"]):
        rig.made("namespaces", node)
        sh("ip", "netns", "add", node)
        sh("ip", "-n", bridge, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", node)
        sh("ip", "-n", bridge, "link", "set", f"v{i}", "master", "br0", "up")
        sh("ip", "-n", node, "addr", "add", f"{node_ip(i)}/24", "dev", "eth0")
        sh("ip", "-n", node, "link", "set", "eth0", "up")
        sh("ip", "-n", node, "link", "set", "lo", "up")


def make_cgroup(rig: Rig, name: str, cap: int) -> str:
    """A memory cgroup capped at ``cap`` bytes (no swap beyond it where v1 allows setting that)."""
    base, version = cgroup_base()
    path = os.path.join(base, name)
    rig.made("cgroups", path)
    os.makedirs(path, exist_ok=True)
    limit = "memory.limit_in_bytes" if version == 1 else "memory.max"
    with open(os.path.join(path, limit), "w") as f:
        f.write(str(cap))
    if version == 2 and os.path.exists(os.path.join(path, "memory.swap.max")):
        with open(os.path.join(path, "memory.swap.max"), "w") as f:
            f.write("0")
    return path


def ray_start_args(rig: Rig, i: int, node: dict) -> list[str]:
    """The ``ray start`` command of node ``i``: its address, caps, resource ``node_<i>`` and temp dir."""
    ray = os.environ.get("RAY") or os.path.join(os.path.dirname(sys.executable), "ray")
    args = [ray, "start", "--node-ip-address", node["ip"], "--num-cpus", str(node["num_cpus"]),
            "--memory", str(node["memory"]), "--object-store-memory", str(node["store"]),
            "--resources", json.dumps({f"node_{i}": 1}), "--temp-dir", node["temp_dir"], "--disable-usage-stats"]
    if i == 0:
        return [*args, "--head", "--port", str(HEAD_PORT), "--include-dashboard=false"]
    return [*args, "--address", rig.state["address"]]


def in_netns(ns: str, cmd: list[str]) -> list[str]:
    """``cmd`` run in network namespace ``ns`` (mounts untouched, so cgroups stay visible)."""
    return ["nsenter", f"--net=/run/netns/{ns}", "--", *cmd]


def start_node(rig: Rig, i: int, node: dict) -> None:
    """``ray start`` for node ``i``, in its own session, namespace and cgroup; waits for the command."""
    cgroup = node["cgroup"]

    def enter_cgroup():  # runs in the child before exec: every process the node spawns inherits it
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    os.makedirs(node["temp_dir"], exist_ok=True)
    with open(os.path.join(rig.dir, f"n{i}.log"), "ab") as log:
        done = subprocess.run(in_netns(node["ns"], ray_start_args(rig, i, node)), stdout=log, stderr=log,
                              env=ray_env(), preexec_fn=enter_cgroup, start_new_session=True, timeout=300)
    if done.returncode != 0:
        raise RigError(f"ray start of node {i} failed (exit {done.returncode}); see {rig.dir}/n{i}.log")


#: prefix of the one line of WAIT_NODES's stdout that carries its result; Ray's own driver prints
#: node-death notices ("(2) raylet has lagging heartbeats ...") to the same stdout, before or after it
NODES_MARK = "DISTSPIKE-NODES "

WAIT_NODES = """
import json, sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False)
deadline = time.monotonic() + float(sys.argv[3])
while True:
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= int(sys.argv[2]) or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print("DISTSPIKE-NODES " + json.dumps(sorted((n["NodeManagerAddress"], n["Resources"].get("memory", 0))
                                             for n in alive)), flush=True)
"""


def marked_line(stdout: str, mark: str) -> str | None:
    """The payload of the last line of ``stdout`` that starts with ``mark``, or None."""
    found = [line[len(mark):] for line in stdout.splitlines() if line.startswith(mark)]
    return found[-1] if found else None


def wait_nodes(rig: Rig, n: int, timeout_s: float = 300.0) -> list:
    """Connect a driver in the head namespace and wait until ``n`` nodes are alive; their (ip, memory)."""
    cmd = in_netns(rig.head_ns, [sys.executable, "-c", WAIT_NODES, rig.state["address"], str(n), str(timeout_s)])
    done = subprocess.run(cmd, capture_output=True, text=True, env=ray_env(), timeout=timeout_s + 60)
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-1:]) or f"exit {done.returncode}"
        raise RigError(f"the driver namespace cannot reach the head at {rig.state['address']}: {tail}")
    payload = marked_line(done.stdout, NODES_MARK)
    if payload is None:
        tail = " ".join(done.stdout.strip().splitlines()[-1:]) or "no output"
        raise RigError(f"the node census in the driver namespace printed no result line: {tail}")
    alive = json.loads(payload)
    if len(alive) < n:
        raise RigError(f"only {len(alive)} of {n} nodes came up within {timeout_s:g} s; see {rig.dir}/n*.log")
    return alive


def measure_baselines(rig: Rig, reserves: tuple[int, int]) -> None:
    """Record each node's measured baseline (its cgroup's anon + shmem); RigError if over the reserve."""
    _, version = cgroup_base()
    for i, node in enumerate(rig.state["nodes"]):
        node["baseline"] = cgroup_usage(node["cgroup"], version)
    rig.save()
    for i, node in enumerate(rig.state["nodes"]):
        reserve, key = (reserves[0], "--head-reserve-mb") if i == 0 else (reserves[1], "--reserve-mb")
        if node["baseline"] > reserve:
            raise RigError(f"node {i}: its daemons and idle workers use {node['baseline'] // MIB} MiB, more than "
                           f"{key}={reserve // MIB}; start with a larger {key}")


def start(directory: str, n: int, cap_mb: int = 1536, store_mb: int = 100, reserve_mb: tuple[int, int] = (600, 300),
          num_cpus: int | None = None) -> str:
    """Build a rig of ``n`` nodes; returns its address. Cleans up everything it made if it fails.

    ``reserve_mb``: ``(head, other)`` MiB for each node's own daemons and idle workers."""
    require_host()
    old = Rig.load(directory)
    if old is not None:
        raise RigError(f"a rig (tag {old.state['tag']}) is already recorded in {directory}, running or left by "
                       f"a crash; run 'emulated_cluster.sh stop' first")
    cap, store, reserves = cap_mb * MIB, store_mb * MIB, (reserve_mb[0] * MIB, reserve_mb[1] * MIB)
    memories = plan_nodes(n, cap, store, reserves, available_memory())
    cgroup_base()
    rig = Rig(directory)
    rig.save()
    try:
        build(rig, n, cap, store, memories, num_cpus or usable_cores())
        measure_baselines(rig, reserves)
    except BaseException:
        stop(directory)
        raise
    return rig.state["address"]


def build(rig: Rig, n: int, cap: int, store: int, memories: list[int], num_cpus: int) -> None:
    """Network, cgroups, then the Ray nodes (head first), then wait until all are alive."""
    make_network(rig, n)
    for i, ns in enumerate(names(rig.state["tag"], n)["nodes"]):
        rig.state["nodes"].append({"ns": ns, "ip": node_ip(i), "cap": cap, "store": store, "memory": memories[i],
                                   "num_cpus": num_cpus, "temp_dir": os.path.join(rig.dir, f"n{i}"),
                                   "cgroup": make_cgroup(rig, ns, cap)})
    rig.state["address"] = f"{node_ip(0)}:{HEAD_PORT}"
    rig.save()
    for i, node in enumerate(rig.state["nodes"]):
        start_node(rig, i, node)
    wait_nodes(rig, n)


# -- stop, status, run --------------------------------------------------------------------
def rig_pids(rig: Rig) -> set[int]:
    """Every live process in the rig's namespaces or cgroups."""
    pids = set()
    for ns in rig.state["namespaces"]:
        pids |= netns_pids(ns)
    for cg in rig.state["cgroups"]:
        pids |= cgroup_pids(cg)
    return {p for p in pids if p != os.getpid()}


def kill_all(rig: Rig, grace_s: float) -> None:
    """SIGTERM the rig's processes, SIGKILL those left after ``grace_s``, until none is left."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 30.0)):
        for pid in rig_pids(rig):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while rig_pids(rig) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not rig_pids(rig):
            return
    raise RigError(f"processes {sorted(rig_pids(rig))} of the rig survived SIGKILL; run stop again")


def found_leftovers(directory: str) -> Rig:
    """A rig without a state file: whatever namespaces and cgroups carry its tag."""
    rig = Rig(directory)
    tag = rig.state["tag"]
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    rig.state["namespaces"] = [ns for ns in listed if ns.startswith(f"dsr{tag}")]
    try:
        base, _ = cgroup_base()
        rig.state["cgroups"] = [os.path.join(base, d) for d in os.listdir(base) if d.startswith(f"dsr{tag}")]
    except RigError:
        pass
    return rig


def stop(directory: str, grace_s: float = 5.0, keep_logs: bool = False) -> list[str]:
    """Remove exactly what ``start`` made; what was removed (empty if nothing was there)."""
    require_host()
    rig = Rig.load(directory) or found_leftovers(directory)
    kill_all(rig, grace_s)
    removed = []
    for ns in reversed(rig.state["namespaces"]):
        if netns_exists(ns):
            sh("ip", "netns", "del", ns)  # its veth ends (and the bridge) go with it
            removed.append(f"netns {ns}")
    for cg in rig.state["cgroups"]:
        if os.path.isdir(cg):
            os.rmdir(cg)
            removed.append(f"cgroup {cg}")
    if os.path.exists(rig.path):
        os.remove(rig.path)
        removed.append(f"state {rig.path}")
    if not keep_logs:
        for node in rig.state["nodes"]:
            for d in [node["temp_dir"], *node.get("old_temp_dirs", [])]:  # restart_node moves old ones aside
                shutil.rmtree(d, ignore_errors=True)
    return removed


def status(directory: str) -> list[str]:
    """One line per node: namespace, address, processes, memory charged against the cap."""
    rig = Rig.load(directory)
    if rig is None:
        return [f"no rig in {directory}"]
    lines = [f"rig {rig.state['tag']} in {rig.dir}: RAY_ADDRESS={rig.state['address']}"]
    version = cgroup_base()[1] if rig.state["cgroups"] else 1
    for i, node in enumerate(rig.state["nodes"]):
        used = cgroup_usage(node["cgroup"], version) if os.path.isdir(node["cgroup"]) else 0
        lines.append(f"node {i} ({node['ns']}, {node['ip']}): {len(netns_pids(node['ns']))} processes, "
                     f"{used // MIB} of {node['cap'] // MIB} MiB used (baseline at start "
                     f"{node.get('baseline', 0) // MIB} MiB), Ray memory {node['memory'] // MIB} MiB, "
                     f"{node['num_cpus']} CPUs")
    return lines


def run(directory: str, cmd: list[str]) -> int:
    """Run ``cmd`` in the driver (head) namespace with ``RAY_ADDRESS`` set; its exit status."""
    rig = Rig.load(directory)
    if rig is None or not rig.state.get("address"):
        raise RigError(f"no rig in {directory}; run 'emulated_cluster.sh start N' first")
    if not cmd:
        raise RigError("run needs a command: run -- CMD...")
    env = dict(ray_env(), RAY_ADDRESS=rig.state["address"])
    return subprocess.run(in_netns(rig.head_ns, cmd), env=env).returncode


# -- command line ---------------------------------------------------------------------------
def default_dir() -> str:
    """``$DISTSPIKE_RIG_DIR``, else ``/tmp/dsr-<uid>`` (short: Ray's socket paths must fit 107 bytes)."""
    return os.environ.get("DISTSPIKE_RIG_DIR") or f"/tmp/dsr-{os.getuid()}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emulated_cluster.sh", description="An emulated Ray cluster on this machine.")
    p.add_argument("--dir", default=default_dir(), help="rig dir: state file, logs, node temp dirs")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("start", help="start N nodes; prints RAY_ADDRESS=<ip>:<port> last")
    s.add_argument("n", type=int)
    s.add_argument("--mem-mb", type=int, default=1536, help="memory cap of each node (MiB)")
    s.add_argument("--object-store-mb", type=int, default=100, help="object store of each node (MiB)")
    s.add_argument("--head-reserve-mb", type=int, default=600, help="the head's daemons, GCS and idle workers (MiB)")
    s.add_argument("--reserve-mb", type=int, default=300, help="each other node's daemons and idle workers (MiB)")
    s.add_argument("--num-cpus", type=int, default=None, help="logical CPUs per node (default: usable cores)")
    sub.add_parser("status")
    st = sub.add_parser("stop")
    st.add_argument("--grace-s", type=float, default=5.0)
    st.add_argument("--keep-logs", action="store_true")
    r = sub.add_parser("run", help="run -- CMD...: CMD in the driver namespace")
    r.add_argument("cmd", nargs=argparse.REMAINDER)
    from distspike.cluster import faults
    faults.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "start":
            address = start(args.dir, args.n, args.mem_mb, args.object_store_mb,
                            (args.head_reserve_mb, args.reserve_mb), args.num_cpus)
            print("\n".join(status(args.dir)))
            print(f"RAY_ADDRESS={address}")
        elif args.command == "stop":
            print("\n".join(stop(args.dir, args.grace_s, args.keep_logs)) or f"nothing to stop in {args.dir}")
        elif args.command == "status":
            print("\n".join(status(args.dir)))
        elif args.command == "run":
            return run(args.dir, args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd)
        else:
            from distspike.cluster import faults
            print(faults.command(args))
    except RigError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
