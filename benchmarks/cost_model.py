"""A cost model of one training sample of the sharded Ray runtime, calibrated from microbenchmarks only.

    python benchmarks/cost_model.py calibrate [--hops results/cluster_hops.json]   # -> results/cost_calibration.json
    python benchmarks/cost_model.py compare [--points results/scaling_points.jsonl] [--write]
    python benchmarks/cost_model.py cluster [--nodes 16 --cores 8 --hop-ms ...] [--write]

Time per sample (``predict``) of a 784-n-...-10 net with ``k`` shards per layer:

- **hops**: the critical path is a chain of *stages* (a stage: every shard of one
  layer handling one message, each needing the outputs of all shards of the stage
  before). Plain calls: ``3L`` stages per sample for SGD (forward ``1..L``, the
  driver's fetch of the output spikes, gates ``L..1``, backward ``L..2``) and per time
  step for FSGD. Compiled graphs: the driver's fetch is gone (the counter runs in the
  output gate's actors), ``3L - 1`` stages per step plus one for the execution.
  A plain stage costs what the scheduler microbenchmark measured (``sched_stage_ms``:
  ``bench_cluster.py points`` on 784-100-100-10, a net whose kernels cost next to
  nothing, ``(wall - busy critical path) / stages``, ``results/gap_points.jsonl``: the
  real driver, its Python per message, real batches to (de)serialise, a stage's shards
  starting one after another), plus what a larger payload adds to an echo chain stage;
  a compiled stage (and a plain one where that is not calibrated) the latency of a
  chain stage of echo actors with the same fan-out and payload (``bench_cluster.py
  hops``: same node, or across emulated nodes);
- **work** of the busiest shard of each (kind, layer): ``bench_shell.py`` times every
  shell message of the in-process runtime's unfused schedule (one ``Shell`` call per
  message, as the actors get; the same MNIST samples as the points) per sample, in
  CPU time of its thread (wall time on a core shared with other processes also counts
  the waits for it), times its *actor factor*: the same shells inside one Ray actor
  across idle gaps of a stage latency, over hot in-process; plus what the actor does per
  message around its shell (``bench_actor.py``: the real ``ShardActor`` replaying recorded
  messages inside a Ray actor: ``a`` per message plus ``b`` per spike in it). Where a width or shard count was not measured (the
  cluster table): the kernel formula (every shard of forward layer ``l`` adds one row
  of its ``n_l / k`` columns per incoming spike; a passed error adds one column of
  ``n_{l-1}`` and updates both copies; ns per element from ``bench_kernels.py``, plus
  its per-message cost ``message_overhead_us``) times the measured shell / formula
  ratio of the rule at width 5000. Slowed by the memory-bandwidth share when ``m``
  shards of one machine stream at once (``bench_memory.py --shards``: two processes
  ran ``r2`` times as fast as one, efficiency ``e2 = r2 / 2``; ``e(m) = e2 **
  log2(m)`` beyond two is an assumption); Ray's own CPU per call (the echo actors' CPU
  per call in the hops benchmark) counts as CPU of the actor;
- **CPU contention** when runnable actors outnumber a machine's cores: plain calls,
  the shards of a stage (``m`` per machine) share its ``c`` cores (work x ``m / c``);
  compiled graphs, every actor of the graph spins on its channel (``bench_idle.py``:
  about one core each, yielding to other threads), so with ``A`` actors (and the
  driver's read) on ``c`` cores work and hops slow by the factor ``bench_idle.py
  --beside`` measured for a loop beside ``(A + 1) / c - 1`` idle compiled actors; across
  nodes, where the same probe with the idle actors on another node of the rig (``calibrate
  --spin-cross``) says that their channel keeps its core, fair shares: work and hops x ``A / c``.

``calibrate`` runs ``bench_kernels`` and ``bench_memory`` functions here and reads
the figures of the rig's microbenchmarks (hops, scheduler gaps) and of ``bench_shell.py``; ``compare`` predicts every measured scaling
point (``bench_cluster.py points``) and prints predicted against measured; ``cluster``
prints the prediction for a real cluster. The model functions are pure (no Ray).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION = ROOT / "results" / "cost_calibration.json"
HOPS_JSON = ROOT / "results" / "cluster_hops.json"
POINTS_JSONL = ROOT / "results" / "scaling_points.jsonl"
SHELL_JSON = ROOT / "results" / "shell_busy.json"
ACTOR_JSON = ROOT / "results" / "actor_messages.json"
GAPS_JSONL = ROOT / "results" / "gap_points.jsonl"
#: the 24 target points measured with ``--shell-probe`` at a slow hour, and every constant re-measured right after
BESIDE_JSONL = ROOT / "results" / "scaling_beside.jsonl"
RECAL = ROOT / "results" / "recal_1217" / "cost_calibration.json"
T = 10
#: assumed network latency of one cross-node stage on a real cluster (ms; see ``report_text``)
WIRE_MS = 0.1


# -- pure model ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """One configuration: net sizes, rule, shards per layer, nodes, plain/compiled, cores per machine,
    machines (the rig's nodes share one), and the measured spikes per sample (forward per layer
    ``fwd[0..L]``, errors passed per layer ``passed[0..L]``)."""

    sizes: tuple[int, ...]
    rule: str
    shards: int
    nodes: int
    compiled: bool
    cores: int
    machines: int
    fwd: tuple[float, ...]
    passed: tuple[float, ...]
    speed: float = 1.0  # the machine's kernel cost beside the point over the calibration's (``speed_of``)


def interp(table: dict[float, float], x: float) -> float:
    """Piecewise-linear interpolation in ``table`` (x -> y), extended linearly past its ends (>= 0)."""
    xs = sorted(table)
    if len(xs) == 1:
        return table[xs[0]]
    if x <= xs[0]:
        lo, hi = xs[0], xs[1]
    elif x >= xs[-1]:
        lo, hi = xs[-2], xs[-1]
    else:
        hi = next(v for v in xs if v >= x)
        lo = xs[xs.index(hi) - 1]
    y = table[lo] + (table[hi] - table[lo]) * (x - lo) / (hi - lo)
    return max(y, 0.0)


def stages(p: Point) -> int:
    """Critical-path stages per sample (module docstring)."""
    L = len(p.sizes) - 1
    per = 3 * L if not p.compiled else 3 * L - 1
    n = per * (T if p.rule == "fsgd" else 1)
    return n + (1 if p.compiled else 0)


def payload_kb(p: Point) -> float:
    """Mean KB per message: the sample's forward spikes over its forward messages (5 bytes per
    event from one shard, 13 with merge keys)."""
    L = len(p.sizes) - 1
    per_event = 5 if p.shards == 1 else 13
    events = sum(p.fwd[:L]) / L / p.shards
    return events * per_event / (T if p.rule == "fsgd" else 1) / 1024


def bw_efficiency(m: int, e2: float) -> float:
    """Speed of each of ``m`` shards streaming at once on one machine, relative to one alone."""
    return 1.0 if m <= 1 else e2 ** math.log2(m)


#: the blocks ``bench_memory.same_block_rates`` streams for ``e2``: the forward.2 block of one of 2 shards
E2_BLOCKS = ((5000, 2500), (20000, 10000))


def block_mb(p: Point) -> float:
    """MB of the largest forward block of one shard (``n_{l-1}`` rows of ``n_l / k`` float32 columns)."""
    return max(a * b / p.shards for a, b in zip(p.sizes[:-1], p.sizes[1:])) * 4 / 1e6


def e2_of(cal: dict, p: Point) -> float:
    """``e2`` for this point: ``bench_memory.same_block_rates`` (two processes streaming their own block of
    one shape at once against one alone, per CPU second) interpolated by the point's block size in log2 MB,
    held at the ends of the calibrated sizes, at most 1; the older ``bw_e2`` where that was not measured."""
    by = cal.get("bw_e2_block")
    if not by:
        return cal["bw_e2"]
    table = {math.log2(int(r) * int(c) * 4 / 1e6): v for r, c, v in ((*k.split("x"), v) for k, v in by.items())}
    x = min(max(math.log2(block_mb(p)), min(table)), max(table))
    return min(1.0, interp(table, x))


def stage_work_elements(p: Point) -> list[tuple[float, float]]:
    """Per layer ``l``: (row elements, strided column elements) of its busiest shard per sample."""
    out = []
    for l in range(1, len(p.sizes)):
        rows = p.fwd[l - 1] * p.sizes[l] / p.shards  # forward: a row of its block per incoming spike
        errs = p.passed[l] / p.shards
        cols = errs * p.sizes[l - 1]  # the forward copy's (strided) column update
        back = errs * p.sizes[l - 1] * 2 if l > 1 else 0.0  # backward replica: herd a row of W^T, update it
        out.append((rows + back, cols))
    return out


def shards_per_machine(p: Point) -> int:
    """Shards of one layer that share a machine (the rig's nodes all share one)."""
    return max(1, math.ceil(p.shards / min(p.machines, p.shards)))


def actors_per_machine(p: Point) -> int:
    """Actors of the whole net on the busiest machine (forward L layers + backward L-1, k shards each)."""
    L = len(p.sizes) - 1
    return math.ceil((2 * L - 1) * p.shards / min(p.machines, p.shards * (2 * L - 1)))


def contention(p: Point) -> float:
    """Slow-down of an actor's work from CPU contention on its machine (module docstring)."""
    c = p.cores
    if p.compiled:
        return max(1.0, actors_per_machine(p) / c)
    return max(1.0, shards_per_machine(p) / c)


#: a loop beside one idle compiled actor at most this much slower: the actor's channel yields its core
YIELD_LIMIT = 1.25


def spin_factor(cal: dict, p: Point) -> float:
    """Compiled graphs: slow-down of the working actor beside the spinning ones of its machine
    (``bench_idle.py --beside``: a loop beside ``m`` idle compiled actors on its core), with
    ``m`` = the other runnable actors (and the driver's read) per core; 1 without oversubscription. Across
    nodes (``p.nodes > 1``), where the same probe with the idle actors on another node of the rig
    (``spin_slowdown_cross``) says that their channel does not give its core up (a loop beside one of them
    over ``YIELD_LIMIT`` times as slow): fair shares of the cores among all the actors (``contention``)."""
    extra = (actors_per_machine(p) + 1) / p.cores - 1
    if extra <= 0:
        return 1.0
    cross = cal.get("spin_slowdown_cross") if p.nodes > 1 else None
    if cross and cross.get("1", 1.0) > YIELD_LIMIT:  # the channel keeps its share: fair shares of the cores
        return contention(p)
    measured = cal.get("spin_slowdown")
    if not measured:  # not measured: fair shares of the cores
        return contention(p)
    table = {0.0: 1.0, **{float(m): f for m, f in measured.items()}}
    return interp(table, extra)


def echo_ms(cal: dict, p: Point) -> float:
    """ms of an echo chain stage (``bench_cluster.py hops``) for this fan-out (plain: by payload)."""
    where = "cross" if p.nodes > 1 else "same"
    if p.compiled:  # calibrated with one actor per stage (more would already contend): linear in fan-out
        return cal["compiled_ms"][where]["1"] * p.shards
    by_fan = {float(k): interp({float(kb): ms for kb, ms in v.items()}, payload_kb(p))
              for k, v in cal["plain_ms"][where].items()}
    return interp(by_fan, p.shards)


def sched_stage_ms(cal: dict, p: Point) -> float | None:
    """ms per plain-call stage of the real scheduler, driver and actors beyond their work (``gap_points``:
    ``(wall - busy critical path) / stages`` of a net whose kernels cost next to nothing; this holds what an
    echo chain lacks: the driver's Python per message, real batches to (de)serialise, a stage's shards
    starting one after another), for this rule and same/cross node; past the largest calibrated shard
    count scaled as the echo chain's stage by fan-out; plus what the echo chain (fan-out 1) says a larger
    payload adds (never less). None where not calibrated (compiled graphs: never)."""
    table = cal.get("sched_ms", {}).get("cross" if p.nodes > 1 else "same", {}).get(p.rule)
    if p.compiled or not table:
        return None
    top = max(int(k) for k in table)
    k = min(p.shards, top)
    ms, kb = table[str(k)]["stage_ms"], table[str(k)]["kb"]
    if p.shards > top:
        ms *= echo_ms(cal, p) / echo_ms(cal, Point(**{**p.__dict__, "shards": top}))
    where = cal["plain_ms"]["cross" if p.nodes > 1 else "same"]["1"]
    fan1 = {float(x): v for x, v in where.items()}
    return ms + max(0.0, interp(fan1, payload_kb(p)) - interp(fan1, kb))


def hop_ms(cal: dict, p: Point) -> float:
    """ms per critical-path stage: the scheduler microbenchmark's stage where calibrated, else the echo
    chain's stage."""
    sched = sched_stage_ms(cal, p)
    return echo_ms(cal, p) if sched is None else sched


def formula_work(cal: dict, p: Point) -> list[float]:
    """Seconds per sample of each layer's busiest shard from the kernels' hot-loop cost (rows by block
    width, strided columns) plus ``bench_kernels``' per-message shell cost, before contention."""
    rows = {float(k): v for k, v in cal["row_ns"].items()}  # by block width, held at the widest measured
    ns_row = interp(rows, min(max(p.sizes[1:-1]) / p.shards, max(rows)))
    per_layer = stages(p) / max(len(p.sizes) - 1, 1)  # critical-path messages per layer per sample, about
    shell = cal.get("message_us", {}).get(p.rule, 0.0) * 1e-6 * per_layer
    return [(r * ns_row + c * cal["col_ns"]) * 1e-9 + shell for r, c in stage_work_elements(p)]


def shell_busy(cal: dict, p: Point) -> dict[str, float] | None:
    """ms per sample of every shell (``bench_shell.py``, in-process, hot) at this width, rule and shard
    count, or None where that was not measured."""
    return cal.get("shell_ms", {}).get(str(max(p.sizes[1:-1])), {}).get(p.rule, {}).get(str(p.shards))


def actor_message_s(cal: dict, p: Point, name: str, calls: float) -> float:
    """Seconds per sample that actor ``name`` spends on its messages beyond its shell's work
    (``bench_actor.py``: header checks, assembling and validating the batch, ``plain()``):
    ``calls * a + b * events``, its events per sample being the spikes of layer ``l - 1`` (forward
    batches; a replica's counts) and the errors passed at layer ``l`` (gates; a replica's backward
    batches); the line of the measured shard count nearest ``p.shards``, inside a Ray actor where
    measured. 0 where not calibrated."""
    by = cal.get("actor_msg", {}).get(p.rule)
    if not by or not calls:
        return 0.0
    k = min(by, key=lambda s: (abs(int(s) - p.shards), int(s)))
    a, b = by[k]["a_us"], by[k]["b_us_per_event"]
    layer = int(name.split(".")[1])
    events = p.fwd[layer - 1] + p.passed[layer]
    return max(0.0, calls * a + b * events) * 1e-6


def actor_factor(cal: dict, p: Point) -> float:
    """An actor's shell work over the in-process shells': the real ``ShardActor`` inside a Ray actor over the
    same ``ShardActor`` in-process (``bench_actor.py``, 1 shard, the rule at the point's width) where measured;
    else ``bench_shell.py``'s factor (the in-process net inside one Ray actor across idle gaps) at the width,
    else at 5000."""
    width = str(max(p.sizes[1:-1]))
    real = cal.get("actor_shell_factor", {}).get(width, {}).get(p.rule)
    if real is not None:
        return real
    return cal.get("actor_factor_by_width", {}).get(width, {}).get(p.rule, cal.get("actor_factor", {}).get(p.rule, 1.0))


def layer_work(cal: dict, p: Point) -> tuple[list[float], float]:
    """(seconds per sample of the busiest shard of each (kind, layer), seconds of all shards together)
    in an actor, before contention: ``bench_shell``'s in-process shell busy times its actor factor
    (an actor's busy time across idle gaps over the hot in-process one). Where the shells were not
    measured at this width and shard count: the kernel formula times the measured shell / formula ratio
    of the rule (``shell_ratio``, at the calibrated width), times the same factor."""
    factor = actor_factor(cal, p)
    busy = shell_busy(cal, p)
    if busy is not None:
        calls = cal.get("shell_calls", {}).get(str(max(p.sizes[1:-1])), {}).get(p.rule, {}).get(str(p.shards), {})
        groups: dict[str, float] = {}
        every = 0.0
        for name, ms in busy.items():
            key = name.rsplit(".", 1)[0]
            v = ms * 1e-3 * factor + actor_message_s(cal, p, name, calls.get(name, 0.0))
            groups[key] = max(groups.get(key, 0.0), v)
            every += v
        return [v for _, v in sorted(groups.items())], every
    ratio = cal.get("shell_ratio", {}).get(p.rule, 1.0) * factor
    work = [w * ratio for w in formula_work(cal, p)]
    # the backward replicas (layers 2..L) are the same order of work as the forward shards: their share
    # of the formula is inside stage_work_elements already
    return work, sum(work) * p.shards


def predict(cal: dict, p: Point) -> dict:
    """Predicted seconds per sample: ``wall``, ``crit`` (sum of the busiest shards' work, in CPU seconds),
    ``actor_cpu`` (the busiest actor's CPU) and ``total_cpu`` (all actors). CPU seconds do not grow while a
    process waits for a core, so CPU contention (``squeeze``) slows the wall time only; the memory-bandwidth
    share (a stall on memory is CPU time) slows both."""
    e2 = e2_of(cal, p)
    m = min(shards_per_machine(p), p.cores)
    squeeze = spin_factor(cal, p) if p.compiled else contention(p)
    stall = 1.0 / bw_efficiency(m, e2)
    work, all_work = layer_work(cal, p)
    work, all_work = [w * p.speed for w in work], all_work * p.speed
    crit = sum(work) * stall
    hops = stages(p) * hop_ms(cal, p) * 1e-3 * (squeeze if p.compiled else 1.0)
    wall = hops + crit * squeeze
    msgs = stages(p) / max(len(p.sizes) - 1, 1)  # messages per actor per sample, about
    call_cpu = interp({float(k): v for k, v in cal["call_cpu_ms"].items()}, p.shards) * 1e-3
    actors = (2 * (len(p.sizes) - 1) - 1) * p.shards
    if p.compiled:  # every actor spins on its channel: the machine's cores are all busy
        per = min(1.0, p.cores * p.machines / (actors + 1)) * wall * cal["spin_cores"]  # + the driver's read
        return {"wall": wall, "crit": crit, "actor_cpu": max(per, max(work) * stall), "total_cpu": per * actors}
    calls = cal.get("shell_calls", {}).get(str(max(p.sizes[1:-1])), {}).get(p.rule, {}).get(str(p.shards))
    if calls:  # messages per actor per sample as the in-process shells got them (bench_shell.py)
        msgs, n_msgs = max(calls.values()), sum(calls.values())
    else:
        n_msgs = actors * msgs
    cpu = [w * stall + msgs * call_cpu for w in work]
    total = all_work / bw_efficiency(m, e2) + n_msgs * call_cpu
    return {"wall": wall, "crit": crit, "actor_cpu": max(cpu), "total_cpu": total}


def off(pred: float, meas: float) -> float:
    """Relative error of ``pred`` against ``meas`` (``pred / meas - 1``)."""
    return pred / meas - 1.0 if meas > 0 else math.inf


# -- calibration (runs the microbenchmarks) --------------------------------------------------------
def hop_constants(hops: dict) -> dict:
    """The hop part of a calibration from ``bench_cluster.py hops`` figures (``nodes=1``: same node;
    the smallest other rig: across nodes)."""
    same = hops["nodes=1"]
    cross = next((hops[k] for k in sorted(hops) if k != "nodes=1"), same)
    return {"plain_ms": {"same": same["plain_ms"], "cross": cross["plain_ms"]},
            "compiled_ms": {"same": same["compiled_ms"], "cross": cross["compiled_ms"]},
            "call_cpu_ms": same["call_cpu_ms"], "sources": {"hops": {k: v["measured"] for k, v in hops.items()}}}


def _spin_slowdown(measure) -> dict:
    """``bench_idle.slowdown_beside`` for 1, 2, 4 spinners; {} (and a note) if the probe fails."""
    try:
        return {m: round(f, 3) for m, f in measure([1, 2, 4]).items()}
    except (RuntimeError, OSError) as err:
        print(f"spin slowdown not measured: {err}", file=sys.stderr)
        return {}


def spin_cross_constants(runs: int = 3) -> dict:
    """``spin_slowdown_cross``: ``bench_idle.slowdown_beside`` for 1, 2, 4 idle compiled actors on another node
    of the rig than the driver's (``BENCH_IDLE_ADDRESS`` and ``BENCH_IDLE_RESOURCE``, default ``node_1``,
    set by the caller; run through ``launch/emulated_cluster.sh run``), the median of ``runs`` probes; a
    channel across a node boundary does not give its core up as a same-node one does (module docstring)."""
    import statistics
    import time
    if not os.environ.get("BENCH_IDLE_ADDRESS"):
        raise SystemExit("calibrate --spin-cross: set BENCH_IDLE_ADDRESS to the rig's address and run it "
                         "through launch/emulated_cluster.sh run")
    os.environ.setdefault("BENCH_IDLE_RESOURCE", "node_1")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_idle import slowdown_beside
    probes = [_spin_slowdown(slowdown_beside) for _ in range(runs)]
    probes = [q for q in probes if q]
    if not probes:
        raise SystemExit("calibrate --spin-cross: every probe failed (see above)")
    table = {m: round(statistics.median(q[m] for q in probes), 3) for m in probes[0]}
    return {"spin_slowdown_cross": table, "spin_cross_probes": probes,
            "spin_cross_where": os.environ["BENCH_IDLE_RESOURCE"],
            "spin_cross_measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def spin_constants() -> dict:
    """``spin_slowdown`` (``bench_idle.slowdown_beside`` for 1, 2, 4 idle compiled actors on the loop's core)
    and when it was measured."""
    import time
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_idle import slowdown_beside
    return {"spin_slowdown": _spin_slowdown(slowdown_beside),
            "spin_measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def calibrate(hops_path: Path, seconds: float) -> dict:
    """Constants from ``bench_kernels``, ``bench_memory``, ``bench_idle`` (run here) and the rig's hop figures."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import numpy as np
    from bench_kernels import column_ns_per_element, message_overhead_us, ns_per_element
    from bench_memory import shard_rates
    from bench_idle import idle_cpu_per_actor
    row = {str(n): round(ns_per_element(n, np.float32, seconds)[0], 4) for n in (300, 1250, 2500, 5000, 20000)}
    col = column_ns_per_element(5000, np.float32, seconds)
    r1, r2 = shard_rates(5000, seconds)
    import time
    micro = {"row_ns": row, "col_ns": round(col, 4), "bw_e2": round(r2 / r1 / 2, 4), **e2_constants(),
             "message_us": {r: round(message_overhead_us(r), 2) for r in ("sgd", "fsgd")},
             "spin_cores": round(idle_cpu_per_actor(), 3),
             **spin_constants(), "micro_measured": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                          time.gmtime())}
    return {**micro, **hop_constants(json.loads(hops_path.read_text()))}


def e2_constants(seconds: float = 3.0, rounds: int = 3) -> dict:
    """``e2`` by block (``bench_memory.same_block_rates`` on ``E2_BLOCKS``, per CPU second, the median of
    ``rounds`` A B rounds) and when it was measured."""
    import time
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_memory import same_block_e2, same_block_rates
    by = {f"{n}x{w}": round(same_block_e2(same_block_rates(n, w, seconds, rounds)), 4) for n, w in E2_BLOCKS}
    return {"bw_e2_block": by, "bw_e2_measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def shell_constants(cal: dict, shell: dict) -> dict:
    """The work part from ``bench_shell.py`` (``results/shell_busy.json``): in-process shell busy ms per
    sample by width, rule and shard count; the actor factor (busy inside a Ray actor across idle gaps over
    hot in-process, ``k = 1``) per rule; and per rule the ratio of the shells' busy time to the kernel
    formula's (``formula_work``) at the widest calibrated width, for widths and shard counts not measured."""
    out = {"shell_ms": {}, "actor_factor": {}, "gap_factor": {}, "shell_ratio": {}, "shell_measured": {}}
    for key, rec in sorted(shell.items()):
        rule, k, width = key.split(":")
        work = rec["hot"].get("cpu_busy_ms") or rec["hot"]["busy_ms"]  # the shells' CPU where measured
        out["shell_ms"].setdefault(width, {}).setdefault(rule, {})[k] = {n: round(v, 4) for n, v in work.items()}
        out.setdefault("shell_calls", {}).setdefault(width, {}).setdefault(rule, {})[k] = \
            {n: round(v, 2) for n, v in rec["hot"]["calls"].items()}
        out["shell_measured"][key] = rec["measured"]
        if "actor_factor" in rec:  # by width; the rule's figure at the calibrated width 5000 stands for the others
            out.setdefault("actor_factor_by_width", {}).setdefault(width, {})[rule] = round(rec["actor_factor"], 4)
            if width == "5000" or rule not in out["actor_factor"]:
                out["shell_gap_ms"] = rec.get("gap_ms")
                out["actor_factor"][rule] = round(rec["actor_factor"], 4)
                out["gap_factor"][rule] = round(rec["gap_factor"], 4)
        if k == "1":
            h = rec["hot"]
            p = Point((784, int(width), int(width), 10), rule, 1, 1, False, 2, 1, tuple(h["fwd"]), tuple(h["passed"]))
            if width == "5000" or rule not in out["shell_ratio"]:
                out["shell_ratio"][rule] = round(sum(work.values()) / (sum(formula_work(cal, p)) * 1e3), 4)
    return out


def actor_msg_constants(recs: dict) -> dict:
    """The per-message line of ``bench_actor.py`` (``results/actor_messages.json``) by rule and shard
    count: inside a Ray actor where measured, else in-process; at the widest width measured. And by width
    and rule (1 shard), the real actor's shell factor: the ``Shell`` CPU of its messages inside the Ray
    actor over in-process (time-weighted: the sums over every replayed message)."""
    out, when, shell = {}, {}, {}
    for key, rec in sorted(recs.items(), key=lambda kv: int(kv[0].split(":")[2])):
        rule, k, width = key.split(":")
        fit = rec.get("ray") or rec.get("inprocess")
        if fit:
            out.setdefault(rule, {})[k] = {"a_us": fit["a_us"], "b_us_per_event": fit["b_us_per_event"],
                                           "mode": "ray" if rec.get("ray") else "inprocess", "width": int(width)}
            when[key] = rec["measured"]
        rows = rec.get("rows", {})
        if k == "1" and rows.get("ray") and rows.get("inprocess"):
            factor = sum(r["shell_us"] for r in rows["ray"]) / sum(r["shell_us"] for r in rows["inprocess"])
            shell.setdefault(width, {})[rule] = round(factor, 4)
    return {"actor_msg": out, "actor_msg_measured": when, "actor_shell_factor": shell}


def sched_constants(cal: dict, recs: list[dict]) -> dict:
    """The scheduler's ms per plain stage from ``results/gap_points.jsonl`` (``bench_cluster.py points`` on a
    net whose kernels cost next to nothing: the real driver, scheduler, messages and actors):
    ``(wall - critical-path busy) / stages`` and the mean payload (KB), by same/cross node, rule and shard
    count (the median of the last session's runs; cross node from the 2-node rig; the 4-node runs are not
    used)."""
    import numpy as np
    out: dict = {"same": {}, "cross": {}}
    when = {}
    for (w, rule, k, nodes, mode), runs in sorted(runs_by_point([r for r in recs if r["nodes"] <= 2]).items()):
        if mode != "plain" or "median" not in runs[-1]:
            continue
        per = [(r["median"]["wall"] - r["median"]["crit_busy"]) / stages(point_of(r, 2)) * 1e3 for r in runs]
        where = "cross" if nodes > 1 else "same"
        out[where].setdefault(rule, {})[str(k)] = {"stage_ms": round(float(np.median(per)), 4),
                                                    "kb": round(payload_kb(point_of(runs[-1], 2)), 4)}
        when[f"{where}:{rule}:{k}"] = runs[-1]["measured"]
    return {"sched_ms": out, "sched_measured": when,
            "sched_sizes": sorted({tuple(r["sizes"]) for r in recs if "median" in r})}


# -- comparison and the cluster table ---------------------------------------------------------------
def point_of(rec: dict, cores: int) -> Point:
    m = rec["median"]
    return Point(tuple(rec["sizes"]), rec["rule"], rec["shards"], rec["nodes"], rec["mode"] == "compiled",
                 cores, 1, tuple(m["fwd"]), tuple(m["passed"]))


def width_of(rec: dict) -> int:
    return max(rec["sizes"][1:-1])


#: block width of ``bench_cluster.kernel_ns``, the probe ``speed_of`` compares with ``row_ns`` at that width
PROBE_WIDTH = 20000


def speed_of(cal: dict, runs: list[dict]) -> float | None:
    """How much slower the machine ran a point's kernels than at calibration: the median over ``runs`` of
    the kernel probe taken beside the windows (``bench_cluster.kernel_ns``, CPU ns per element of a 784 x
    ``PROBE_WIDTH`` float32 block, the mean of the probes before and after) over the calibration's ``row_ns`` at
    that width; None where no run carries the probe."""
    import numpy as np
    probes = [sum(r["kernel_ns"]) / len(r["kernel_ns"]) for r in runs if r.get("kernel_ns")]
    return float(np.median(probes)) / cal["row_ns"][str(PROBE_WIDTH)] if probes else None


def beside_cal(cal: dict, runs: list[dict]) -> dict | None:
    """The calibration with its work term taken at the point's own hour: ``shell_ms`` and ``shell_calls``
    at the point's width, rule and shard count replaced by the shells measured beside its windows
    (``bench_cluster.py points --shell-probe``: ``bench_shell.measure`` before and after, the median over
    every run's probes); every other constant (hops, actor factor, messages, contention) as calibrated.
    None where no run carries the probe."""
    import numpy as np
    probes = [q for r in runs for q in r.get("shell_probe", [])]
    if not probes:
        return None
    w, rule, k = str(width_of(runs[0])), runs[0]["rule"], str(runs[0]["shards"])
    out = dict(cal)
    for key, field in (("shell_ms", "cpu_busy_ms"), ("shell_calls", "calls")):
        got = {n: float(np.median([q[field][n] for q in probes])) for n in probes[0][field]}
        by_width = dict(cal.get(key, {}))
        by_width[w] = {**by_width.get(w, {}), rule: {**by_width.get(w, {}).get(rule, {}), k: got}}
        out[key] = by_width
    return out


def measured(runs: list[dict]) -> dict:
    """The median over ``runs`` (records of one point, each the median of its windows)."""
    import numpy as np
    ms = [r["median"] for r in runs]
    med = lambda xs: float(np.median(xs))  # noqa: E731
    tl = [m["timeline_union"] for m in ms if m.get("timeline_union")]
    by_cpu = all("crit_cpu" in m for m in ms)  # the work by the applying thread's CPU clock, where recorded
    return {"wall": med([m["wall"] for m in ms]), "crit": med([m["crit_cpu" if by_cpu else "crit_busy"] for m in ms]),
            "crit_by": "cpu" if by_cpu else "busy", "crit_busy": med([m["crit_busy"] for m in ms]),
            "timeline": med(tl) if tl else None, "actor_cpu": med([max(m["cpu"].values()) for m in ms]),
            "total_cpu": med([sum(m["cpu"].values()) for m in ms]), "runs": len(ms),
            "windows": sum(r.get("repeats", 0) for r in runs),
            "spread": (min(m["wall"] for m in ms), max(m["wall"] for m in ms))}


GRID = [(rule, k, n, mode) for rule in ("sgd", "fsgd") for n in (1, 2, 4) for k in (1, 2, 4, 8)
        for mode in ("plain", "compiled")]
#: a point's runs: the records measured within this many hours of its last one (older ones are superseded)
SESSION_H = 3.0


def _hours(stamp: str) -> float:
    import datetime as dt
    return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M UTC").timestamp() / 3600


def runs_by_point(recs: list[dict]) -> dict[tuple, list[dict]]:
    """Per (width, rule, shards, nodes, mode): its runs (``SESSION_H``; where some recorded ``crit_cpu``, only
    those), or its last record if that did not finish."""
    by: dict[tuple, list[dict]] = {}
    for r in recs:
        by.setdefault((width_of(r), r["rule"], r["shards"], r["nodes"], r["mode"]), []).append(r)
    out = {}
    for key, rs in by.items():
        done = [r for r in rs if "median" in r]
        # runs that timed the critical path by thread CPU supersede those that could not (busy wall time only)
        done = [r for r in done if "crit_cpu" in r["median"]] or done
        if not done:
            out[key] = [rs[-1]]
            continue
        last = max(_hours(r["measured"]) for r in done)
        out[key] = [r for r in done if last - _hours(r["measured"]) <= SESSION_H]
    return out


def spikes_by_rule(recs: list[dict]) -> dict[tuple, tuple]:
    """Spikes per sample of each (rule, width) from its measured points (every runtime and sharding trains
    the same spikes, bit for bit: the median over the points' own medians)."""
    import numpy as np
    out = {}
    for key in sorted({(r["rule"], width_of(r)) for r in recs if "median" in r}):
        rs = [r for r in recs if (r["rule"], width_of(r)) == key and "median" in r]
        ms = [r["median"] for r in rs]
        out[key] = (tuple(np.median([m["fwd"] for m in ms], axis=0)),
                    tuple(np.median([m["passed"] for m in ms], axis=0)), rs[0]["sizes"])
    return out


def core_share_of(runs: list[dict]) -> dict[str, float] | None:
    """The median over ``runs`` of the share of a core that 1 and 2 spinning processes got beside the
    windows (``bench_cluster.core_share``), or None where a run did not probe it."""
    import numpy as np
    if not runs or not all("core_share" in r for r in runs):
        return None
    return {k: float(np.median([r["core_share"][k] for r in runs])) for k in runs[0]["core_share"]}


def runnable_of(p: Point) -> int:
    return actors_per_machine(p) if p.compiled else shards_per_machine(p)


def compare_table(cal: dict, recs: list[dict], cores: int, beside: bool = False) -> list[str]:
    """Markdown rows for the whole grid at width 5000 (and every other measured point): predicted /
    measured ms per sample and how far off, with when each point was measured and how often
    (predictions alone where a point is not measured yet); ``beside``: the measured points whose runs
    carry a shell probe only, each predicted with ``beside_cal``."""
    lines = ["| width | rule | shards | nodes | mode | runnable / cores | measured (UTC), runs x windows | "
             "wall pred / meas (runs' range) | off | critical path pred / meas CPU or busy (busy; timeline) | off | "
             "busiest actor CPU pred / meas | off | all actors' CPU pred / meas | off |",
             "|---:|---|---:|---:|---|---|---|---|---:|---|---:|---|---:|---|---:|"]
    got, spikes = runs_by_point(recs), spikes_by_rule(recs)
    keys = [(5000, *g) for g in GRID] + sorted(k for k in got if k[0] != 5000)
    for w, rule, k, n, mode in keys:
        if (rule, w) not in spikes:
            continue
        fwd, passed, sizes = spikes[(rule, w)]
        p = Point(tuple(sizes), rule, k, n, mode == "compiled", cores, 1, fwd, passed)
        runs = got.get((w, rule, k, n, mode))
        c = cal
        if beside:
            c = beside_cal(cal, runs) if runs and "median" in runs[-1] else None
            if c is None:
                continue
        pr = predict(c, p)
        runnable = runnable_of(p)
        head = (f"| {w} | {rule} | {k} | {n} | {mode} | {runnable} / {cores}"
                f"{' (over)' if runnable > cores else ''} |")
        if runs is None or "median" not in runs[-1]:
            why = (f"did not finish in {runs[-1]['timed_out']} s ({runs[-1]['measured'][5:]})" if runs
                   else "not measured yet")
            lines.append(f"{head} {why} | " + " | ".join(f"{pr[q] * 1e3:.1f} / - | -"
                                                         for q in ("wall", "crit", "actor_cpu", "total_cpu")) + " |")
            continue
        me = measured(runs)
        cells = []
        for q in ("wall", "crit", "actor_cpu", "total_cpu"):
            extra = ""
            if q == "crit":  # by CPU where recorded (busy wall clock, timeline union beside it)
                extra = (f" CPU ({me['crit_busy'] * 1e3:.1f}" if me["crit_by"] == "cpu" else " busy (-") + \
                        (f"; {me['timeline'] * 1e3:.1f})" if me["timeline"] else "; -)")
            if q == "wall" and me["runs"] > 1:
                extra = f" ({me['spread'][0] * 1e3:.1f}-{me['spread'][1] * 1e3:.1f})"
            cells.append(f"{pr[q] * 1e3:.1f} / {me[q] * 1e3:.1f}{extra} | {off(pr[q], me[q]):+.0%}")
        when = runs[-1]["measured"][5:]
        share = core_share_of(runs)
        share = f", share {share['1']:.2f} / {share['2']:.2f}" if share else ""
        lines.append(f"{head} {when}, {me['runs']} x {runs[-1].get('repeats', '?')}{share} | " + " | ".join(cells) + " |")
    return lines


def scaled_spikes(fwd: tuple, passed: tuple, w0: int, w: int, alpha: float) -> tuple[tuple, tuple]:
    """Spike counts of a 784-w-w-10 net from those measured at width ``w0``: hidden layers' counts
    scale as ``(w / w0) ** alpha`` (input and output layers unchanged)."""
    s = (w / w0) ** alpha
    f = tuple(v * s if 0 < l < len(fwd) - 1 else v for l, v in enumerate(fwd))
    p = tuple(v * s if 0 < l < len(passed) - 1 else v for l, v in enumerate(passed))
    return f, p


def cluster_cal(cal: dict, wire_ms: float) -> dict:
    """The calibration for a real cluster: every cross-node stage of the rig (echo chains and the scheduler
    microbenchmark) plus ``wire_ms`` of network."""
    plain = {k: {kb: v + wire_ms for kb, v in by.items()} for k, by in cal["plain_ms"]["cross"].items()}
    compiled = {k: v + wire_ms for k, v in cal["compiled_ms"]["cross"].items()}
    out = dict(cal, plain_ms=dict(cal["plain_ms"], cross=plain), compiled_ms=dict(cal["compiled_ms"], cross=compiled))
    if cal.get("sched_ms", {}).get("cross"):
        cross = {r: {k: {**v, "stage_ms": v["stage_ms"] + wire_ms} for k, v in t.items()}
                 for r, t in cal["sched_ms"]["cross"].items()}
        out["sched_ms"] = dict(cal["sched_ms"], cross=cross)
    return out


def cluster_table(cal: dict, spikes: dict, widths: list[int], nodes: int, cores: int, alpha: float) -> list[str]:
    """Predicted ms per sample on ``nodes`` machines of ``cores`` cores, shards ``k`` <= ``nodes`` on ``k``
    nodes (one shard of every layer per node; 1 shard: all on one node), plain and compiled."""
    counts = [k for k in (1, 2, 4, 8, 16) if k <= nodes]
    lines = ["| width | rule | " + " | ".join(f"{k} shard(s): plain / compiled" for k in counts) + " | best |",
             "|---:|---|" + "---|" * len(counts) + "---|"]
    for rule in ("sgd", "fsgd"):
        if (rule, 5000) not in spikes:
            continue
        fwd0, passed0, sizes0 = spikes[(rule, 5000)]
        for w in widths:
            fwd, passed = scaled_spikes(fwd0, passed0, sizes0[1], w, alpha)
            cells, best = [], None
            for k in counts:
                pair = []
                for comp in (False, True):
                    t = predict(cal, Point((784, w, w, 10), rule, k, k, comp, cores, k, fwd, passed))["wall"] * 1e3
                    pair.append(t)
                    best = min(best or (t, k, comp), (t, k, comp))
                cells.append(f"{pair[0]:.1f} / {pair[1]:.1f}")
            lines.append(f"| {w} | {rule} | " + " | ".join(cells) +
                         f" | {best[1]} {'compiled' if best[2] else 'plain'} ({best[0]:.1f} ms) |")
    return lines


COLUMNS = (("wall", "wall time"), ("crit", "critical path"), ("actor_cpu", "busiest actor's CPU"),
           ("total_cpu", "all actors' CPU"))


def within(cal: dict, recs: list[dict], cores: int, tol: float = 0.25,
           column: str = "wall", adjust: bool = False, beside: bool = False) -> tuple[int, int, list[str]]:
    """(points within ``tol`` on ``column``, points compared, one line per point) over measured points
    where runnable actors <= cores; ``adjust``: only the points whose runs carry a kernel probe, their work
    scaled by ``speed_of``; ``beside``: only the points whose runs carry a shell probe, each predicted
    with ``beside_cal``."""
    got, spikes = runs_by_point(recs), spikes_by_rule(recs)
    ok, n, notes = 0, 0, []
    for key, runs in sorted(got.items()):
        if "median" not in runs[-1]:
            continue
        w, rule, k, nodes, mode = key
        fwd, passed, sizes = spikes[(rule, w)]
        p = Point(tuple(sizes), rule, k, nodes, mode == "compiled", cores, 1, fwd, passed)
        if runnable_of(p) > cores:
            continue
        if adjust:
            speed = speed_of(cal, runs)
            if speed is None:
                continue
            p = Point(**{**p.__dict__, "speed": speed})
        c = beside_cal(cal, runs) if beside else cal
        if c is None:
            continue
        e = off(predict(c, p)[column], measured(runs)[column])
        n += 1
        ok += abs(e) <= tol
        notes.append(f"{w} {rule}:{k}:{mode} on {nodes} node(s): {e:+.0%}")
    return ok, n, notes


def worst_of(notes: list[str]) -> str:
    return max(notes, key=lambda s: abs(float(s.rsplit(": ", 1)[1].rstrip("%")))) if notes else "-"


def calibration_lines(cal: dict) -> list[str]:
    """The calibrated constants, one bullet each, with the benchmark they come from."""
    rows = ", ".join(f"{k} units {v:.2f}" for k, v in sorted(cal["row_ns"].items(), key=lambda kv: int(kv[0])))
    plain = cal["plain_ms"]
    lines = [f"- kernel rows, float32 ns per element by block width (`bench_kernels.ns_per_element`): {rows}",
             f"- strided column update, float32, 784 x 5000 (`bench_kernels.column_ns_per_element`): "
             f"{cal['col_ns']:.2f} ns per element",
             ("- memory bandwidth: 2 shards streaming at once each run at e2 of one alone, by block (each process "
              "its own block of that shape, per CPU second; `bench_memory.same_block_rates`, "
              f"{cal.get('bw_e2_measured', '?')}): " + ", ".join(f"{k} float32 {v:.2f}" for k, v in
                                                              sorted(cal["bw_e2_block"].items(), key=lambda kv: int(kv[0].split("x")[0]))) +
              " (interpolated in log block size, held at the ends)" if cal.get("bw_e2_block") else
              f"- memory bandwidth: 2 shards streaming at once each run at e2 = {cal['bw_e2']:.2f} of one alone "
              f"(`bench_memory.shard_rates(5000)`)"),
             f"- an idle compiled-graph actor burns {cal['spin_cores']:.2f} cores (`bench_idle.py`); a loop beside "
             f"m idle compiled actors on its core runs " + (", ".join(f"{f:.2f}x as slow (m={m})" for m, f in
                                                                  sorted(cal.get("spin_slowdown", {}).items()))
                                                        or "(not measured)") + " (`bench_idle.py --beside`)"]
    if cal.get("spin_slowdown_cross"):
        lines.append("- the same loop beside m idle compiled actors on another node of a 2-node rig runs "
                     + ", ".join(f"{f:.2f}x as slow (m={m})" for m, f in sorted(cal["spin_slowdown_cross"].items()))
                     + f" (median of {len(cal.get('spin_cross_probes', []))} probes, `cost_model.py calibrate "
                     f"--spin-cross`, {cal.get('spin_cross_measured', '?')}): over {YIELD_LIMIT}x beside one, so "
                     "the model gives compiled graphs across nodes fair shares of the cores")
    for where in ("same", "cross"):
        cells = "; ".join(f"fan {k}: " + ", ".join(f"{kb} KB {ms:.2f}" for kb, ms in sorted(by.items(), key=lambda x: int(x[0])))
                          for k, by in sorted(plain[where].items(), key=lambda x: int(x[0])))
        comp = ", ".join(f"fan {k}: {v:.2f}" for k, v in sorted(cal["compiled_ms"][where].items()))
        lines.append(f"- {where}-node chain stage, ms (`bench_cluster.py hops`): plain {cells}; compiled {comp}")
    lines.append("- actor CPU per plain call (echo actors), ms by fan-out: " +
                 ", ".join(f"{k}: {v:.2f}" for k, v in sorted(cal["call_cpu_ms"].items())))
    for width, by_rule in sorted(cal.get("shell_ms", {}).items(), key=lambda kv: int(kv[0])):
        cells = "; ".join(f"{rule} " + ", ".join(f"{k} shard(s) {sum(b.values()):.1f} (busiest forward.2 "
                                                 f"{max(v for n, v in b.items() if n.startswith('forward.2')):.1f})"
                                                 for k, b in sorted(by.items(), key=lambda kv: int(kv[0])))
                          for rule, by in sorted(by_rule.items()))
        lines.append(f"- shells' busy time in-process, hot, width {width}, ms per sample, all shells (`bench_shell.py`, "
                     f"unfused `runtime=local`, the points' samples): {cells}")
    if cal.get("actor_msg"):
        lines.append("- the actor's own cost per message beyond its shell (`bench_actor.py`, the real `ShardActor` "
                     "replaying recorded forward messages, thread CPU of the call minus the shell's): " +
                     "; ".join(f"{r} {k} shard(s) {v['a_us']:.1f} us + {v['b_us_per_event'] * 1e3:.2f} ns per spike "
                               f"({v['mode']}, width {v['width']})"
                               for r, by in sorted(cal["actor_msg"].items()) for k, v in sorted(by.items())))
    for width, by in sorted(cal.get("actor_factor_by_width", {}).items(), key=lambda kv: int(kv[0])):
        if width != "5000":
            lines.append(f"- actor factor at width {width} (`bench_shell.py --width {width} --shards 1 --rounds 1`, "
                         "used for that width): " + ", ".join(f"{r} {f:.2f}" for r, f in sorted(by.items())))
    if cal.get("actor_factor"):
        lines.append("- the same shells across idle gaps of " + f"{cal.get('shell_gap_ms') or 2.0:g} ms / inside one Ray "
                     "actor across those gaps, over hot in-process (`bench_shell.py`, 1 shard): " +
                     ", ".join(f"{r} {cal['gap_factor'].get(r, float('nan')):.2f} / {f:.2f}"
                               for r, f in sorted(cal["actor_factor"].items())) +
                     "; the shells' busy time over the kernel formula (rows, columns, bench_kernels' per-message "
                     "cost), for widths and shard counts not measured: " +
                     ", ".join(f"{r} {v:.2f}" for r, v in sorted(cal.get("shell_ratio", {}).items())))
    for where in ("same", "cross"):
        by = cal.get("sched_ms", {}).get(where)
        if by:
            lines.append(f"- the real scheduler's ms per plain stage beyond the work, {where} node "
                         f"(`bench_cluster.py points` on 784-100-100-10, `results/gap_points.jsonl`): " +
                         "; ".join(f"{r} " + ", ".join(f"{k} shard(s) {v['stage_ms']:.2f}" for k, v in sorted(t.items()))
                                   for r, t in sorted(by.items())))
    return lines


def compare_text(cal: dict, recs: list[dict], cores: int, adjust: bool = False, beside: bool = False) -> str:
    lines = []
    for col, what in COLUMNS:
        ok, n, notes = within(cal, recs, cores, column=col, adjust=adjust, beside=beside)
        lines.append(f"- {what}: within +-25 % at {ok} of {n} measured points with runnable actors <= {cores} cores "
                     f"(farthest off: {worst_of(notes)})" + (": " + "; ".join(notes) if col == "wall" else ""))
    return ("\n".join(calibration_lines(cal)) + "\n\n" + "\n".join(compare_table(cal, recs, cores, beside)) + "\n\n" +
            "\n".join(lines))


def verdict(cal: dict, recs: list[dict], cores: int) -> str:
    """The verdict line: whether the target is met on every column, from the points as measured."""
    got = {col: within(cal, recs, cores, column=col) for col, _ in COLUMNS}
    met = all(n and ok == n for ok, n, _ in got.values())
    cells = "; ".join(f"{what} {got[col][0]} of {got[col][1]}" for col, what in COLUMNS)
    return (f"**Verdict.** The target (within +-25 % in wall time, critical path and CPU per actor wherever "
            f"runnable actors <= cores) is {'met' if met else '*not* met'}: {cells}, with every constant from "
            "the microbenchmarks above and none fitted to the scaling points.")


def slow_hour_lines(cal: dict, cores: int) -> list[str]:
    """The subsection on ``BESIDE_JSONL``: each target point's measured wall time beside three predictions
    (the standing calibration, the same-hour one in ``RECAL``, and the standing one with the point's own
    shells, ``beside_cal``) and the within-25 % counts of each; empty where the files are missing."""
    if not (BESIDE_JSONL.exists() and RECAL.exists()):
        return []
    recs, recal = load_points(BESIDE_JSONL), json.loads(RECAL.read_text())
    got, spikes = runs_by_point(recs), spikes_by_rule(recs)
    lines = ["| width | rule | shards | nodes | measured (UTC) | kernel probe, ns | wall measured | standing calibration "
             "| same-hour calibration | standing + shells beside |", "|---:|---|---:|---:|---|---|---:|---|---|---|"]
    for (w, rule, k, n, mode), runs in sorted(got.items()):
        fwd, passed, sizes = spikes[(rule, w)]
        p = Point(tuple(sizes), rule, k, n, mode == "compiled", cores, 1, fwd, passed)
        me = measured(runs)["wall"]
        cells = []
        for c in (cal, recal, beside_cal(cal, runs)):
            pr = predict(c, p)["wall"]
            cells.append(f"{pr * 1e3:.1f} ({off(pr, me):+.0%})")
        probe = ", ".join(f"{x:.2f}" for r in runs for x in r.get("kernel_ns", []))
        lines.append(f"| {w} | {rule} | {k} | {n} | {runs[-1]['measured'][11:16]} | {probe} | {me * 1e3:.1f} | "
                     + " | ".join(cells) + " |")
    counts = []
    for what, c, beside in (("standing calibration", cal, False), ("same-hour calibration", recal, False),
                            ("standing + shells beside", cal, True)):
        cols = [(label, *within(c, recs, cores, column=col, beside=beside)[:2]) for col, label in COLUMNS]
        counts.append(f"- {what}: " + "; ".join(f"{label} {ok} of {n}" for label, ok, n in cols))
    return lines + [""] + counts


SLOW_HOUR = (
    "### The same 24 points at a slow hour, with a same-hour re-calibration (2026-12-03 11:39-12:38 UTC)\n\n"
    "Commands (one locked script, nothing else of ours running): the sweep above with `--shell-probe` (each "
    "point's `bench_shell.measure` at its width, rule and shards, before and after its windows, in a spawned "
    "child), one run of 3 windows per point, rigs of 1, 2, 4 nodes (`--mem-mb 12288|8192|5120`), into "
    "`results/scaling_beside.jsonl`; right after it every microbenchmark of the calibration again, with the "
    "commands above (`bench_shell.py` at 5000 and 20000, `bench_actor.py`, `bench_cluster.py hops` and the width-100 "
    "scheduler points on 1- and 2-node rigs of 4096 MB, `cost_model.py calibrate`, `--spin-cross`), kept apart "
    "in `results/recal_1217/`. Compared with `python benchmarks/cost_model.py compare --points "
    "results/scaling_beside.jsonl [--calibration results/recal_1217/cost_calibration.json] [--beside]`. "
    "Wall ms per sample, prediction (off):\n")
SLOW_HOUR_REMARKS = (
    "The machine ran slow all through: the kernel probe beside the points read 0.73-1.19 ns per element against "
    "the standing calibration's 0.53, and the re-calibration measured 0.89 (20000) and 0.67 (5000), 2.3 ns for "
    "strided columns (0.95), the scheduler's stage 1.59-1.69 ms (1.36-1.40), and two shards sharing memory at "
    "0.68 / 0.84 of one alone (0.92 / 1.00). Re-calibrating in the same hour halves the misses but does not remove "
    "them: the wall time is within +-25 % at 13 of 24 (6 with the standing constants), and every miss is still an "
    "under-prediction, worst on the 2-node rig (measured 11:51-12:04: -17 to -45 %). So at a slow hour the points are slower than the sum of "
    "their microbenchmarks, not only slower than at calibration; the model's parts (in-process shells, echo and "
    "scheduler stages, messages) do not compose to the whole when the VM is slow, and a cost that only the whole "
    "run pays (wake-ups between Ray's threads, the driver and the actors on 2 cores; the machine showed 100 % "
    "system time during a point) grows most. The shells measured beside each point do not help (8 of 24): at "
    "5000 the unpinned child ran FSGD's shells in 20-23 ms per sample where `bench_shell.py` pinned to core 0 "
    "took 48 ms in the same hour, so on this VM even one microbenchmark moves 2x with the core it is pinned to. "
    "The 05:32-06:31 sweep above (23 of 24) stays the table's record; this one says how far the same model "
    "misses on this machine at another hour.")


def report_text(cal: dict, recs: list[dict], args, table: str) -> str:
    """The results/benchmarks.md section: commands, calibration, predicted vs measured, the cluster table."""
    shell_when = sorted(set(cal.get("shell_measured", {}).values()))
    sched_when = sorted(set(cal.get("sched_measured", {}).values()))
    return "\n".join([
        "## Sharded scaling on the emulated cluster, against the cost model", "",
        f"Calibration: kernels, memory, idle compiled actors {cal.get('micro_measured', '?')}; idle actors "
        f"beside a busy loop {cal.get('spin_measured', '?')}, on another node {cal.get('spin_cross_measured', '-')}; hops "
        f"{', '.join(f'{k} {v}' for k, v in cal['sources']['hops'].items())}; shells "
        f"{', '.join(shell_when) or '-'}; scheduler {', '.join(sched_when[:1] + sched_when[-1:]) or '-'}. The "
        "machine has 2 cores and 24 GiB. The points of the target (1 and 2 shards, plain calls) and the 8-shard and "
        "compiled points at width 20000 dated 2026-12-03 05:37-06:31 UTC were measured on a quiet machine: nothing "
        "else of ours ran beside them (`uptime` 0.1 before the sweep; the probe beside each point, `share`, says "
        "one spinning process got 0.99-1.00 of a core), though a helper's numba compiles may have queued between "
        "two rigs. The microbenchmarks and the points dated before 05:37 ran beside other helpers' jobs (on the "
        "same CPU lock) and nice-19 paper trainings outside it (on both cores all through 2026-12-03 00:05-01:40 "
        "UTC, each in its own autogroup, so nice 19 did not keep them off our processes: `share` 0.47-0.59 there). "
        "Rig processes ran on both cores (not pinned); `bench_shell.py` and `bench_actor.py` on "
        "core 0 (`taskset -c 0`), timing CPU per thread; `bench_memory.py --same-block` on both cores, per CPU "
        "second of each process.", "",
        "Commands (the rig: `PYTHON=.venv/bin/python launch/emulated_cluster.sh --dir /tmp/dsrs-cost-N start N "
        "--mem-mb 8192|4096|2560 --object-store-mb 300`, N = 1|2|4; for width 20000 12288 on 1 node, 8192 on 2; "
        "every command under `flock /tmp/distspike-cpu.lock`):", "",
        "- `launch/emulated_cluster.sh --dir D run -- .venv/bin/python benchmarks/bench_cluster.py hops "
        "--nodes N` (fans 1,2[,4]): `results/cluster_hops.json`",
        "- `launch/emulated_cluster.sh --dir D run -- .venv/bin/python benchmarks/bench_cluster.py points "
        "--nodes N --width 100 --points sgd:1:plain,sgd:2:plain,fsgd:1:plain,fsgd:2:plain --samples 20 --repeats 3 "
        "--out results/gap_points.jsonl`: the scheduler microbenchmark (784-100-100-10)",
        "- `launch/emulated_cluster.sh --dir D run -- .venv/bin/python benchmarks/bench_cluster.py points "
        "--nodes N --width 5000|20000 --points rule:shards:mode,... --samples 20|10 --repeats 3`: "
        "`results/scaling_points.jsonl` (runs x windows below; on 2026-12-03 05:32-06:31 UTC one locked script: "
        "a rig per node count, `start N --mem-mb 12288|8192|5120` for N = 1|2|4 serving both widths, two "
        "`points` runs of the four 1- and 2-shard plain points per width, then one run of `sgd:8:plain,fsgd:8:plain` "
        "and of the compiled points, `--samples 20` at 5000 and 10 at 20000 (6 for 8 shards and for 2 compiled "
        "shards), `--limit-s 400`)",
        "- `python benchmarks/bench_memory.py --same-block 5000,2500 --rounds 3` and `--same-block 20000,10000` (also "
        "run by `cost_model.py calibrate --memory-only`): `e2`, two processes streaming their own block of one "
        "shape at once against one alone",
        "- `taskset -c 0 python benchmarks/bench_shell.py --shards 1,2,4,8` and, width 20000, `... --width 20000 "
        "--rules R --shards 1 --samples 10 --repeats 3 --rounds 1` and `... --shards 2 ... --no-actor` (R = sgd, "
        "fsgd): `results/shell_busy.json`",
        "- `taskset -c 0 python benchmarks/bench_actor.py --width 5000 --rules sgd,fsgd --shards 1,2 --samples 6 "
        "--rounds 2` and `... --width 20000 --rules R --shards 1 --samples 4 --rounds 1` (R = sgd; fsgd "
        "2026-12-03 00:43 UTC): "
        "`results/actor_messages.json`",
        "- `python benchmarks/cost_model.py calibrate [--hops-only | --memory-only | --spin-only]`: "
        "`results/cost_calibration.json` (`--hops-only` keeps the kernel, memory and idle constants and re-reads "
        "the files of the other microbenchmarks; `--memory-only` re-runs only the same-block `e2`; `--spin-only` "
        "only `bench_idle.py --beside 1,2,4`)",
        "- `python benchmarks/cost_model.py report --write` (this section)", "",
        "Calibrated constants:", "", compare_text(cal, recs, args.cores), "",
        "Columns: *runnable / cores*: actors wanting a core at once (plain: the shards of a stage; compiled: every "
        "actor, counted although an idle one yields its core to a busy one, see below) against this machine's 2 cores, (over) = oversubscribed; *runs x windows*: separate "
        "nets measured, each the median of its windows (the table: the median over runs, the range of the "
        "runs' wall times in brackets; earlier sessions' runs of a point re-measured here are superseded, "
        "points not re-measured show their old date); *share*: the share of a core that 1 / 2 processes "
        "spinning at once got just before and after the windows (`bench_cluster.core_share`, the mean of the "
        "two probes): what the other load left; *critical path*: predicted work of the busiest shard "
        "per (kind, layer), measured as the sum over (kind, layer) of the busiest shard's seconds inside its "
        "messages by the applying thread's CPU clock (`CPU`; where a point was measured before that counter "
        "existed, by wall clock: `busy`), and beside it by wall clock (busy) and `ray.timeline()`'s union of "
        "actor task intervals (plain calls); both of those count a shard's waits for a core; *busiest actor / "
        "all actors' CPU*: from `/proc` of each actor process (every thread: Ray's own per call too). ms per "
        "sample.", "",
        verdict(cal, recs, args.cores) + " " + REMARKS, "",
        *([SLOW_HOUR, *slow, "", SLOW_HOUR_REMARKS, ""] if (slow := slow_hour_lines(cal, args.cores)) else []),
        f"### Predicted: a real cluster of {args.nodes} nodes x {args.node_cores} cores", "",
        f"Cross-node stage = the rig's cross-node stage (the scheduler microbenchmark across 2 emulated nodes for "
        f"plain calls, the echo chain for compiled graphs: Ray's own software cost over a veth, which adds no "
        f"latency of its own) + {args.wire_ms} ms of network latency. That figure is an assumption, not a "
        f"measurement: a round trip inside a datacenter rack is tens of microseconds on 10-25 GbE, and `tc "
        f"netem` is missing on this kernel, so it could not be emulated here. k shards on k "
        f"nodes (one shard of every layer per node, so 5 actors per node: compiled graphs never oversubscribe "
        f"8 cores); work: the shells measured at width 5000 for 1-8 shards, else the kernel formula times "
        f"the measured shell / formula ratio; spikes per hidden layer scale with width (alpha = {args.alpha}, "
        f"from the 5000-wide runs). The scheduler's stage was measured on 2 cores shared by the driver, the "
        f"actors and Ray's daemons, so a cluster node's may be shorter. Memory bandwidth per node beyond 2 "
        f"streams, NUMA and network bandwidth are not modelled. Predicted ms per sample:", "", table, ""])


#: what the verdict line cannot compute (kept in step with the figures by whoever re-runs the report)
REMARKS = (
    "Against the previous record: on 2026-12-03 00:21-01:21 UTC the same 20 points, taken beside four nice-19 "
    "trainings, had wall time within +-25 % at only 17 (misses -25 to -37 %, all under-predictions). Re-measured "
    "on a quiet machine at 05:37-06:31 UTC, the same model (no constant for plain calls changed) is within +-25 % "
    "at those 20 and at the 4 new 4-node points of width 20000 but one: FSGD with 1 shard at 20000 on 4 nodes, "
    "-27 % wall, -25 % critical path, -32 % all actors' CPU, in both of its runs (338 and 372 ms). Its critical "
    "path by CPU (171 ms) is 16-23 % above the same shard's on 1 and 2 nodes (139-148 ms), so the extra is in the "
    "shards' own work, not in the hops. One node holds both copies of the 20000 x 20000 block there (2 x 1.6 "
    "GB) under a 5120 MB cap, against 8192-12288 MB on 1 and 2 nodes, but memory pressure is not the cause: "
    "a probe run of the point (06:38 UTC, `memory.max_usage_in_bytes` and `memory.failcnt` of each node's "
    "cgroup) peaked at 3518 of 5120 MB with no failed charge and 1 major fault. Nor is it the node count: on one 4-node rig "
    "(08:32-08:38 UTC, `bench_cluster.py points --nodes 1|4 --width 20000 --points fsgd:1:plain --samples 10 --repeats 3 "
    "--out F`, one file per run, merged into `results/scaling_isolation.jsonl` under each run's name; three runs of each placement alternating, then two on a 1-node rig of 12288 "
    "MB) every actor on node 0 gave 450 / 405 / 414 ms (critical path by CPU 229 / 201 / 205), one layer per node 456 / "
    "488 / 424 (239 / 228 / 206), the 1-node rig 507 / 427 (249 / 212): the spread of one configuration within minutes, "
    "whatever the placement. All eight ran 50-80 % slower than the same point at 05:35-05:40 (267 / 279 ms). That was "
    "the machine: the forward kernel alone ran 0.86-0.89 CPU ns per element at 20000 at 08:46 (0.64-0.84 at 5000) "
    "against the calibration's 0.53 (0.33), with transparent huge pages on both 1.6 GB blocks in every run (1524 MB "
    "`AnonHugePages` each) and one stream copying at 22-26 GB/s. So this cloud VM's own speed moves by up to 2x within "
    "hours, more than the target's +-25 %; the 4-node point ran 30-55 min after the 1-node ones. Each record now "
    "carries `kernel_ns` and `stream_gbs` probes beside its windows. With them, the 12 target points at 20000 were "
    "measured again at 08:50-09:05 UTC, nothing else of ours running (rigs of 1, 2, 4 and again 1 node, one run "
    "each; `results/scaling_remeasure.jsonl`, `python benchmarks/cost_model.py compare --points "
    "results/scaling_remeasure.jsonl`; not in the table above, which keeps the 05:32-06:31 sweep): wall time within "
    "+-25 % at only 6 of 12, every miss an under-prediction (-28 to -48 %), with the kernel probe at 0.69-1.15 ns "
    "against the calibration's 0.53. The shards' own CPU rose by 40-60 % for FSGD's single shard against the sweep "
    "(155-227 ms against 138-177) but only 5-20 % for SGD (135-153 against 120-138). Scaling each point's work by its "
    "own probe (`compare --speed-adjust`, nothing fitted) brings FSGD's six within -2 to -12 % in wall time but sends "
    "SGD's 1-shard points to +24 to +51 %: the probe (a 63 MB block) tracks the memory-bound FSGD shards, not SGD's. "
    "So on this VM the model holds at one moment and misses at another by the machine's own drift, and a single "
    "kernel probe does not correct for it. How the CPU columns were brought in on 2026-12-03 (they missed by up to +58 % "
    "before): `e2` from `bench_memory.py --same-block` (0.92 / 1.00, where a benchmark that also changed the block "
    "size had given 0.67 and charged every 2-shard point 1.5x); the critical path compared by thread CPU "
    "(`ShardActor` counts it inside messages), not by wall clock; `bench_actor.py`'s actor factor for FSGD at "
    "20000 (1.04, not `bench_shell.py`'s 1.28); contention slows the predicted wall time only. Actor CPU from "
    "`/proc` counts every thread of the actor process, Ray's own per call included (the model adds the echo "
    "actors' CPU per call, 1.1-1.4 ms); the driver's CPU (7-12 ms per sample for SGD, 50-115 for FSGD) is in no "
    "actor column. Compiled graphs: an idle compiled actor burns a whole core when the core is otherwise idle "
    "(`bench_idle.py`: 0.96-1.00 CPU-s/s, about 80 % of it system time, `sched_yield`), but beside a busy loop "
    "pinned to its core it takes next to nothing: the loop keeps 0.97-0.99 of the core beside 1, 2 or 4 of them, "
    "and their threads show no CPU ticks in that second (`bench_idle.py --beside 1,2,4`, 06:19-06:27 UTC; an "
    "earlier run that timed the loop by wall clock read 0.73-1.07x, the noise of this shared machine). The model "
    "used to charge compiled graphs a fair share of the cores among all their actors (+82 to +142 % too slow on "
    "1 node); with the measured yield it charges nothing, and one compiled shard on 1 node is now predicted "
    "-2 % (SGD, 20000) to -27 % (FSGD, 20000; -23 and -25 % at 5000). Two compiled shards on 1 node (5000, "
    "measured on 2026-12-02 under load, ten actors on 2 cores) stay -72 / -77 % off. Across nodes they were slower than that by far (SGD, 1 shard, 20000: "
    "393 ms on 2 nodes and 507 on 4, against 176 predicted with the same-node yield; 2 shards on 2 nodes 701 ms): "
    "the cross-node channel's threads do not give their core up. The probe on a 2-node rig with the idle actors on "
    "node 1 says so (`BENCH_IDLE_ADDRESS=<rig> launch/emulated_cluster.sh --dir D run -- .venv/bin/python "
    "benchmarks/cost_model.py calibrate --spin-cross`, 08:41-08:43 UTC, three probes): the pinned loop ran "
    "1.90x / 7.08x / 51x as slow beside 1 / 2 / 4 of them (it kept 0.50-0.57, 0.04-0.19 and at most 0.02 of its "
    "core). So across nodes the model gives compiled graphs fair shares of the cores (work and hops x actors / "
    "cores, what it charged every compiled graph before the same-node yield was measured), not the probe's "
    "figures at 2 and 4 spinners, whose actors are all pinned to one core as in no run: SGD, 1 shard, 20000 "
    "+11 % (2 nodes) and -14 % (4 nodes), 2 shards on 2 nodes +6 %, FSGD 1 shard on 2 nodes +19 %, SGD at 5000 "
    "-5 % (they were -52 to -79 % off); all actors' CPU -4 to +64 %. Oversubscribed plain points are outside the target: at 20000 with 4 shards "
    "(00:47-00:56 UTC, under load) wall -45 / -51 % (SGD) and -12 / -7 % (FSGD); with 8 shards (quiet) -43 to "
    "-56 % (SGD) and -10 to -30 % (FSGD), where 40 actors share 2 cores and the critical path by CPU is 2-3x the "
    "prediction. The earlier sessions' oversubscribed points measured the critical path by wall clock only "
    "(`busy`), which holds every wait for a core, so their -40 to -90 % there compare two different things.")


def load_points(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calibrate")
    c.add_argument("--hops", type=Path, default=HOPS_JSON)
    c.add_argument("--seconds", type=float, default=1.0)
    c.add_argument("--memory-only", action="store_true",
                   help="keep the saved constants, re-run only bench_memory's same-block e2 (and re-read the files)")
    c.add_argument("--spin-only", action="store_true",
                   help="keep the saved constants, re-run only bench_idle's loop beside 1, 2, 4 idle compiled actors")
    c.add_argument("--spin-cross", action="store_true",
                   help="keep the saved constants, re-run bench_idle's loop beside 1, 2, 4 idle compiled actors on "
                        "another node of the rig (BENCH_IDLE_ADDRESS, BENCH_IDLE_RESOURCE=node_1), three times")
    c.add_argument("--hops-only", action="store_true",
                   help="keep the saved kernel/memory/idle constants, re-read the figures of the rig's "
                        "microbenchmarks only (hops, shell busy, scheduler gaps)")
    m = sub.add_parser("compare")
    m.add_argument("--points", type=Path, default=POINTS_JSONL)
    m.add_argument("--cores", type=int, default=2)
    m.add_argument("--speed-adjust", action="store_true",
                   help="the within-25 %% lines over only the points whose runs carry a kernel probe, their work "
                        "scaled by it (speed_of); the table stays as predicted")
    m.add_argument("--calibration", type=Path, default=CALIBRATION,
                   help="the constants to predict with (default results/cost_calibration.json; a same-hour "
                        "re-calibration: results/recal_1217/cost_calibration.json)")
    m.add_argument("--beside", action="store_true",
                   help="only the points whose runs carry a shell probe (bench_cluster.py points --shell-probe), "
                        "each predicted with its work term measured beside it (beside_cal)")
    k = sub.add_parser("cluster")
    r = sub.add_parser("report", help="compare + cluster, as the section of results/benchmarks.md")
    for q in (k, r):
        q.add_argument("--nodes", type=int, default=16)
        q.add_argument("--node-cores", type=int, default=8)
        q.add_argument("--wire-ms", type=float, default=WIRE_MS, help="network latency added to a cross-node stage")
        q.add_argument("--widths", default="1000,5000,20000,100000")
        q.add_argument("--alpha", type=float, default=1.0, help="spikes per hidden layer grow as width ** alpha")
        q.add_argument("--points", type=Path, default=POINTS_JSONL)
    r.add_argument("--cores", type=int, default=2)
    r.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "calibrate":
        if args.memory_only:
            cal = {**json.loads(CALIBRATION.read_text()), **e2_constants()}
        elif args.spin_only:
            cal = {**json.loads(CALIBRATION.read_text()), **spin_constants()}
            cal.pop("spin_slowdown_discarded", None)
        elif args.spin_cross:
            cal = {**json.loads(CALIBRATION.read_text()), **spin_cross_constants()}
        elif args.hops_only:
            cal = {**json.loads(CALIBRATION.read_text()), **hop_constants(json.loads(args.hops.read_text()))}
        else:
            cal = calibrate(args.hops, args.seconds)
        if SHELL_JSON.exists():
            cal.update(shell_constants(cal, json.loads(SHELL_JSON.read_text())))
        if ACTOR_JSON.exists():
            cal.update(actor_msg_constants(json.loads(ACTOR_JSON.read_text())))
        if GAPS_JSONL.exists():
            cal.update(sched_constants(cal, load_points(GAPS_JSONL)))
        CALIBRATION.write_text(json.dumps(cal, indent=1, sort_keys=True) + "\n")
        print(json.dumps(cal, indent=1, sort_keys=True))
        return
    cal = json.loads(getattr(args, "calibration", CALIBRATION).read_text())
    recs = load_points(args.points)
    if args.cmd == "compare":
        print(compare_text(cal, recs, args.cores, args.speed_adjust, args.beside))
        return
    table = "\n".join(cluster_table(cluster_cal(cal, args.wire_ms), spikes_by_rule(recs),
                                    [int(w) for w in args.widths.split(",")], args.nodes, args.node_cores, args.alpha))
    if args.cmd == "cluster":
        print(table)
        return
    text = report_text(cal, recs, args, table)
    print(text)
    if args.write:
        from report import write_section
        print(f"wrote section 'cluster_scaling' of {write_section('cluster_scaling', text)}")


if __name__ == "__main__":
    main()
