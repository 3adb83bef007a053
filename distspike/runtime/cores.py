"""``runtime.compiled=auto``: compiled graphs only where every actor has a physical core to itself.

A compiled graph's actors wait for their next message on shared-memory channels
(``runtime/compiled.py``); with fewer cores than actors they take cores from each
other, and compiled graphs measured slower than plain calls on this 2-core machine
(0.97x, 2 shards: ``benchmarks/bench_runtimes.py``). Ray's logical CPUs say nothing
about cores (``start_ray`` raises them to the bundle sum, ``local_cluster.sh``
offers 8 per node on 2 cores), so each actor reports what its process really may use
(``probe``): the physical cores among its CPU affinity, its cgroup's CPU quota, and
the machine it runs on (the kernel's boot id: nodes of one emulated cluster share one
machine, and its cores). ``choose`` is the decision, a pure function of the reports.
No Ray import here.
"""
from __future__ import annotations

import math
import os

SYSFS_CPU = "/sys/devices/system/cpu"


def physical_cores(cpus) -> int:
    """Distinct ``(package, core)`` pairs among logical CPUs ``cpus`` (each CPU alone where sysfs says nothing)."""
    cores = set()
    for cpu in cpus:
        top = os.path.join(SYSFS_CPU, f"cpu{cpu}", "topology")
        try:
            with open(os.path.join(top, "physical_package_id")) as f, open(os.path.join(top, "core_id")) as g:
                cores.add((f.read().strip(), g.read().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return len(cores)


def own_cgroups() -> list[tuple[str, str]]:
    """``(controllers, path)`` of each line of ``/proc/self/cgroup`` (v2's line has no controllers); [] if unreadable."""
    try:
        with open("/proc/self/cgroup") as f:
            return [tuple(line.rstrip("\n").split(":", 2)[1:]) for line in f if line.count(":") >= 2]
    except OSError:
        return []


def cgroup_cpu_quota() -> float | None:
    """Cores this process's cgroup allows (CFS quota / period; v1 or v2), None when unlimited or unknown."""
    for ctrls, path in own_cgroups():
        if "cpu" in ctrls.split(","):
            base = os.path.join("/sys/fs/cgroup/cpu", path.lstrip("/"))
            return _quota(os.path.join(base, "cpu.cfs_quota_us"), os.path.join(base, "cpu.cfs_period_us"))
        if ctrls == "":
            return _quota_v2(os.path.join("/sys/fs/cgroup", path.lstrip("/"), "cpu.max"))
    return None


def _quota(quota_path: str, period_path: str) -> float | None:
    try:
        with open(quota_path) as f, open(period_path) as g:
            quota, period = int(f.read()), int(g.read())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _quota_v2(path: str) -> float | None:
    try:
        with open(path) as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def machine_id() -> str:
    """The kernel's boot id: equal for every process (and emulated node) of one machine."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return os.uname().nodename


def probe() -> dict:
    """What this process may really use: ``machine``, ``cpus`` (its affinity), ``cores`` (physical
    cores among them, capped by its cgroup's CPU quota)."""
    cpus = sorted(os.sched_getaffinity(0))
    cores = physical_cores(cpus)
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return {"machine": machine_id(), "cpus": cpus, "cores": cores}


def machine_cores(reports: list[dict]) -> int:
    """Cores of one machine from its actors' reports: the union of their affinities, capped by the
    most cores any one of them may use (quotas of different cgroups are not summed: conservative)."""
    cpus = set()
    for r in reports:
        cpus.update(r["cpus"])
    return min(len(cpus), max(r["cores"] for r in reports))


def choose(setting, reports: dict[str, dict]) -> tuple[bool, str]:
    """``(compiled, why)`` for ``runtime.compiled=setting`` and the actors' ``probe`` reports.

    ``True``/``False`` are taken as given. ``"auto"``: compiled graphs when on every
    machine the actors number at most its physical cores, plain calls otherwise.
    """
    if setting is not True and setting is not False and setting != "auto":
        raise ValueError(f"runtime.compiled={setting!r} must be true, false or auto")
    if setting != "auto":
        return bool(setting), f"runtime.compiled={str(setting).lower()}: as configured"
    by_machine: dict[str, list] = {}
    for r in reports.values():
        by_machine.setdefault(r["machine"], []).append(r)
    crowded = [(len(rs), machine_cores(rs), m) for m, rs in sorted(by_machine.items())
               if len(rs) > machine_cores(rs)]
    if crowded:
        n, cores, m = crowded[0]
        return False, (f"runtime.compiled=auto: plain calls: {n} actors share {cores} physical core(s) on machine "
                       f"{m[:8]}; compiled graphs need a core per actor (their channels wait on a core each)")
    return True, (f"runtime.compiled=auto: compiled graphs: every actor has a physical core to itself "
                  f"({len(reports)} actors on {len(by_machine)} machine(s))")
