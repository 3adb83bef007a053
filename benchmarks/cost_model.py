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
  Each stage costs the latency of a chain stage of echo actors with the same fan-out
  and payload (``bench_cluster.py hops``: same node, or across emulated nodes), which
  includes Ray's (de)serialization of the payload;
- **kernel work** of the busiest shard of each stage: every shard of forward layer
  ``l`` adds one row of its ``n_l / k`` columns per incoming spike; a passed error
  adds one column of ``n_{l-1}`` (backward replica, a row of ``W^T``) and updates
  the weights of both copies (the forward copy's column is strided). Nanoseconds per
  element from ``bench_kernels.py`` (rows, by block width; strided columns), slowed
  by the memory-bandwidth share when ``m`` shards of one machine stream at once
  (``bench_memory.py --shards``: two processes ran ``r2`` times as fast as one,
  efficiency ``e2 = r2 / 2``; ``e(m) = e2 ** log2(m)`` beyond two is an assumption);
- **per-message cost**: handling a message in a shell (``bench_kernels.message_overhead_us``:
  CPU per message of an in-process net too narrow for its kernels to cost anything)
  counts as work of its stage; Ray's own CPU per call (the echo actors' CPU per call
  in the hops benchmark) as CPU of the actor;
- **CPU contention** when runnable actors outnumber a machine's cores: plain calls,
  the shards of a stage (``m`` per machine) share its ``c`` cores (work x ``m / c``);
  compiled graphs, every actor of the graph spins on its channel (``bench_idle.py``:
  about one core each, yielding to other threads), so with ``A`` actors (and the
  driver's read) on ``c`` cores work and hops slow by the factor ``bench_idle.py
  --beside`` measured for a loop beside ``(A + 1) / c - 1`` idle compiled actors.

``calibrate`` runs ``bench_kernels`` and ``bench_memory`` functions here and reads
the hop figures (measured on the rig); ``compare`` predicts every measured scaling
point (``bench_cluster.py points``) and prints predicted against measured; ``cluster``
prints the prediction for a real cluster. The model functions are pure (no Ray).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION = ROOT / "results" / "cost_calibration.json"
HOPS_JSON = ROOT / "results" / "cluster_hops.json"
POINTS_JSONL = ROOT / "results" / "scaling_points.jsonl"
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


def spin_factor(cal: dict, p: Point) -> float:
    """Compiled graphs: slow-down of the working actor beside the spinning ones of its machine
    (``bench_idle.py --beside``: a loop beside ``m`` idle compiled actors on its core), with
    ``m`` = the other runnable actors (and the driver's read) per core; 1 without oversubscription."""
    extra = (actors_per_machine(p) + 1) / p.cores - 1
    if extra <= 0:
        return 1.0
    if not cal.get("spin_slowdown"):  # not measured: fair shares of the cores
        return contention(p)
    table = {0.0: 1.0, **{float(m): f for m, f in cal["spin_slowdown"].items()}}
    return interp(table, extra)


def hop_ms(cal: dict, p: Point) -> float:
    """ms per critical-path stage: the calibrated chain stage (plain: by payload) for this fan-out."""
    where = "cross" if p.nodes > 1 else "same"
    if p.compiled:  # calibrated with one actor per stage (more would already contend): linear in fan-out
        return cal["compiled_ms"][where]["1"] * p.shards
    by_fan = {float(k): interp({float(kb): ms for kb, ms in v.items()}, payload_kb(p))
              for k, v in cal["plain_ms"][where].items()}
    return interp(by_fan, p.shards)


def predict(cal: dict, p: Point) -> dict:
    """Predicted seconds per sample: ``wall``, ``crit`` (sum of the busiest shards' work), ``actor_cpu``
    (the busiest actor's CPU) and ``total_cpu`` (all actors)."""
    e2 = cal["bw_e2"]
    m = min(shards_per_machine(p), p.cores)
    squeeze = spin_factor(cal, p) if p.compiled else contention(p)
    slow = squeeze / bw_efficiency(m, e2)
    rows = {float(k): v for k, v in cal["row_ns"].items()}  # by block width, held at the widest measured
    ns_row = interp(rows, min(max(p.sizes[1:-1]) / p.shards, max(rows)))
    ns_col = cal["col_ns"]
    per_layer = stages(p) / max(len(p.sizes) - 1, 1)  # critical-path messages per layer per sample, about
    shell = cal.get("message_us", {}).get(p.rule, 0.0) * 1e-6 * per_layer
    work = [(r * ns_row + c * ns_col) * 1e-9 + shell for r, c in stage_work_elements(p)]
    crit = sum(work) * slow
    hops = stages(p) * hop_ms(cal, p) * 1e-3 * (squeeze if p.compiled else 1.0)
    wall = hops + crit
    msgs = stages(p) / max(len(p.sizes) - 1, 1)  # messages per actor per sample, about
    call_cpu = interp({float(k): v for k, v in cal["call_cpu_ms"].items()}, p.shards) * 1e-3
    actors = (2 * (len(p.sizes) - 1) - 1) * p.shards
    if p.compiled:  # every actor spins on its channel: the machine's cores are all busy
        per = min(1.0, p.cores * p.machines / (actors + 1)) * wall * cal["spin_cores"]  # + the driver's read
        return {"wall": wall, "crit": crit, "actor_cpu": max(per, max(work) * slow), "total_cpu": per * actors}
    cpu = [w * slow + msgs * call_cpu for w in work]
    total = sum(w * p.shards for w in work) / bw_efficiency(m, e2) + actors * msgs * call_cpu
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


def calibrate(hops_path: Path, seconds: float) -> dict:
    """Constants from ``bench_kernels``, ``bench_memory``, ``bench_idle`` (run here) and the rig's hop figures."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import numpy as np
    from bench_kernels import column_ns_per_element, message_overhead_us, ns_per_element
    from bench_memory import shard_rates
    from bench_idle import idle_cpu_per_actor, slowdown_beside
    row = {str(n): round(ns_per_element(n, np.float32, seconds)[0], 4) for n in (300, 1250, 2500, 5000, 20000)}
    col = column_ns_per_element(5000, np.float32, seconds)
    r1, r2 = shard_rates(5000, seconds)
    import time
    micro = {"row_ns": row, "col_ns": round(col, 4), "bw_e2": round(r2 / r1 / 2, 4),
             "message_us": {r: round(message_overhead_us(r), 2) for r in ("sgd", "fsgd")},
             "spin_cores": round(idle_cpu_per_actor(), 3),
             "spin_slowdown": _spin_slowdown(slowdown_beside), "micro_measured": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                          time.gmtime())}
    return {**micro, **hop_constants(json.loads(hops_path.read_text()))}


# -- comparison and the cluster table ---------------------------------------------------------------
def point_of(rec: dict, cores: int) -> Point:
    m = rec["median"]
    return Point(tuple(rec["sizes"]), rec["rule"], rec["shards"], rec["nodes"], rec["mode"] == "compiled",
                 cores, 1, tuple(m["fwd"]), tuple(m["passed"]))


def measured(rec: dict) -> dict:
    m = rec["median"]
    crit = m.get("timeline_union") or m["crit_busy"]
    return {"wall": m["wall"], "crit": m["crit_busy"], "timeline": crit, "actor_cpu": max(m["cpu"].values()),
            "total_cpu": sum(m["cpu"].values())}


GRID = [(rule, k, n, mode) for rule in ("sgd", "fsgd") for n in (1, 2, 4) for k in (1, 2, 4, 8)
        for mode in ("plain", "compiled")]


def latest(recs: list[dict]) -> dict[tuple, dict]:
    """The last record of each (rule, shards, nodes, mode)."""
    return {(r["rule"], r["shards"], r["nodes"], r["mode"]): r for r in recs}


def spikes_by_rule(recs: list[dict]) -> dict[str, tuple]:
    """Spikes per sample of each rule from its measured points (every runtime and sharding trains the
    same spikes, bit for bit: the median over the points' own medians)."""
    import numpy as np
    out = {}
    for rule in ("sgd", "fsgd"):
        ms = [r["median"] for r in recs if r["rule"] == rule and "median" in r]
        if ms:
            out[rule] = (tuple(np.median([m["fwd"] for m in ms], axis=0)),
                         tuple(np.median([m["passed"] for m in ms], axis=0)), recs[0]["sizes"])
    return out


def compare_table(cal: dict, recs: list[dict], cores: int) -> list[str]:
    """Markdown rows for the whole grid: predicted / measured ms per sample and how far off, with when
    each point was measured (predictions alone where a point is not measured yet)."""
    lines = ["| rule | shards | nodes | mode | runnable / cores | measured (UTC) | wall pred / meas | off | "
             "critical path pred / meas (busy; timeline) | off | busiest actor CPU pred / meas | off | "
             "all actors' CPU pred / meas | off |", "|---|---:|---:|---|---|---|---|---:|---|---:|---|---:|---|---:|"]
    got, spikes = latest(recs), spikes_by_rule(recs)
    for rule, k, n, mode in GRID:
        if rule not in spikes:
            continue
        fwd, passed, sizes = spikes[rule]
        p = Point(tuple(sizes), rule, k, n, mode == "compiled", cores, 1, fwd, passed)
        pr = predict(cal, p)
        runnable = actors_per_machine(p) if p.compiled else shards_per_machine(p)
        head = f"| {rule} | {k} | {n} | {mode} | {runnable} / {cores}{' (over)' if runnable > cores else ''} |"
        rec = got.get((rule, k, n, mode))
        if rec is None or "median" not in rec:
            why = f"did not finish in {rec['timed_out']} s ({rec['measured'][5:]})" if rec else "not measured yet"
            lines.append(f"{head} {why} | " + " | ".join(f"{pr[q] * 1e3:.1f} / - | -"
                                                         for q in ("wall", "crit", "actor_cpu", "total_cpu")) + " |")
            continue
        me = measured(rec)
        tl = rec["median"].get("timeline_union")
        cells = []
        for q in ("wall", "crit", "actor_cpu", "total_cpu"):
            extra = f"; {tl * 1e3:.1f}" if q == "crit" and tl else ""
            cells.append(f"{pr[q] * 1e3:.1f} / {me[q] * 1e3:.1f}{extra} | {off(pr[q], me[q]):+.0%}")
        lines.append(f"{head} {rec['measured'][5:]} | " + " | ".join(cells) + " |")
    return lines


def scaled_spikes(fwd: tuple, passed: tuple, w0: int, w: int, alpha: float) -> tuple[tuple, tuple]:
    """Spike counts of a 784-w-w-10 net from those measured at width ``w0``: hidden layers' counts
    scale as ``(w / w0) ** alpha`` (input and output layers unchanged)."""
    s = (w / w0) ** alpha
    f = tuple(v * s if 0 < l < len(fwd) - 1 else v for l, v in enumerate(fwd))
    p = tuple(v * s if 0 < l < len(passed) - 1 else v for l, v in enumerate(passed))
    return f, p


def cluster_cal(cal: dict, wire_ms: float) -> dict:
    """The calibration for a real cluster: every cross-node stage of the rig plus ``wire_ms`` of network."""
    plain = {k: {kb: v + wire_ms for kb, v in by.items()} for k, by in cal["plain_ms"]["cross"].items()}
    compiled = {k: v + wire_ms for k, v in cal["compiled_ms"]["cross"].items()}
    return dict(cal, plain_ms=dict(cal["plain_ms"], cross=plain), compiled_ms=dict(cal["compiled_ms"], cross=compiled))


def cluster_table(cal: dict, spikes: dict, widths: list[int], nodes: int, cores: int, alpha: float) -> list[str]:
    """Predicted ms per sample on ``nodes`` machines of ``cores`` cores, shards ``k`` <= ``nodes`` on ``k``
    nodes (one shard of every layer per node; 1 shard: all on one node), plain and compiled."""
    counts = [k for k in (1, 2, 4, 8, 16) if k <= nodes]
    lines = ["| width | rule | " + " | ".join(f"{k} shard(s): plain / compiled" for k in counts) + " | best |",
             "|---:|---|" + "---|" * len(counts) + "---|"]
    for rule in ("sgd", "fsgd"):
        if rule not in spikes:
            continue
        fwd0, passed0, sizes0 = spikes[rule]
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


def within(cal: dict, recs: list[dict], cores: int, tol: float = 0.25) -> tuple[int, int, list[str]]:
    """(points within ``tol`` on wall time, points compared, one line per point) over measured points
    where runnable actors <= cores."""
    got, spikes = latest(recs), spikes_by_rule(recs)
    ok, n, notes = 0, 0, []
    for key, rec in sorted(got.items()):
        if "median" not in rec:
            continue
        fwd, passed, sizes = spikes[rec["rule"]]
        p = Point(tuple(sizes), rec["rule"], rec["shards"], rec["nodes"], rec["mode"] == "compiled", cores, 1,
                  fwd, passed)
        runnable = actors_per_machine(p) if p.compiled else shards_per_machine(p)
        if runnable > cores:
            continue
        e = off(predict(cal, p)["wall"], rec["median"]["wall"])
        n += 1
        ok += abs(e) <= tol
        notes.append(f"{rec['rule']}:{rec['shards']}:{rec['mode']} on {rec['nodes']} node(s): {e:+.0%}")
    return ok, n, notes


def calibration_lines(cal: dict) -> list[str]:
    """The calibrated constants, one bullet each, with the benchmark they come from."""
    rows = ", ".join(f"{k} units {v:.2f}" for k, v in sorted(cal["row_ns"].items(), key=lambda kv: int(kv[0])))
    plain = cal["plain_ms"]
    lines = [f"- kernel rows, float32 ns per element by block width (`bench_kernels.ns_per_element`): {rows}",
             f"- strided column update, float32, 784 x 5000 (`bench_kernels.column_ns_per_element`): "
             f"{cal['col_ns']:.2f} ns per element",
             f"- memory bandwidth: 2 shards streaming at once each run at e2 = {cal['bw_e2']:.2f} of one alone "
             f"(`bench_memory.shard_rates(5000)`)",
             f"- an idle compiled-graph actor burns {cal['spin_cores']:.2f} cores (`bench_idle.py`); a loop beside "
             f"m idle compiled actors on its core runs " + (", ".join(f"{f:.2f}x as slow (m={m})" for m, f in
                                                                  sorted(cal.get("spin_slowdown", {}).items()))
                                                        or "(not measured)") + " (`bench_idle.py --beside`)"]
    for where in ("same", "cross"):
        cells = "; ".join(f"fan {k}: " + ", ".join(f"{kb} KB {ms:.2f}" for kb, ms in sorted(by.items(), key=lambda x: int(x[0])))
                          for k, by in sorted(plain[where].items(), key=lambda x: int(x[0])))
        comp = ", ".join(f"fan {k}: {v:.2f}" for k, v in sorted(cal["compiled_ms"][where].items()))
        lines.append(f"- {where}-node chain stage, ms (`bench_cluster.py hops`): plain {cells}; compiled {comp}")
    lines.append("- actor CPU per plain call (echo actors), ms by fan-out: " +
                 ", ".join(f"{k}: {v:.2f}" for k, v in sorted(cal["call_cpu_ms"].items())))
    return lines


def compare_text(cal: dict, recs: list[dict], cores: int) -> str:
    ok, n, notes = within(cal, recs, cores)
    return ("\n".join(calibration_lines(cal)) + "\n\n" + "\n".join(compare_table(cal, recs, cores)) +
            f"\n\nWall time within +-25 % at {ok} of {n} measured points with runnable actors <= {cores} cores: "
            + "; ".join(notes) + ".")


def report_text(cal: dict, recs: list[dict], args, table: str) -> str:
    """The results/benchmarks.md section: commands, calibration, predicted vs measured, the cluster table."""
    return "\n".join([
        "## Sharded scaling on the emulated cluster, against the cost model", "",
        f"Calibration {cal.get('micro_measured', '?')} (microbenchmarks) and hops "
        f"{', '.join(f'{k} {v}' for k, v in cal['sources']['hops'].items())}; the machine (2 cores, 24 GiB) was "
        "shared: other helpers' tests and benchmarks queued on the same CPU lock between these commands, and a "
        "nice-19 paper training ran on core 1 throughout. Rig processes ran on both cores (not pinned).", "",
        "Commands (the rig: `PYTHON=.venv/bin/python launch/emulated_cluster.sh --dir /tmp/dsrs start N --mem-mb "
        "8192|4096|2560 --object-store-mb 300`, N = 1|2|4):", "",
        "- `launch/emulated_cluster.sh --dir /tmp/dsrs run -- .venv/bin/python benchmarks/bench_cluster.py hops "
        "--nodes N` (fans 1,2[,4]): `results/cluster_hops.json`",
        "- `launch/emulated_cluster.sh --dir /tmp/dsrs run -- .venv/bin/python benchmarks/bench_cluster.py points "
        "--nodes N --points rule:shards:mode,... --samples 20|10 --repeats 3`: `results/scaling_points.jsonl` "
        "(784-5000-5000-10 float32: the 20000-wide net did not fit this shared machine's time and memory, see below)",
        "- `python benchmarks/cost_model.py calibrate`: `results/cost_calibration.json`",
        f"- `python benchmarks/cost_model.py report --write` (this section)", "",
        "Calibrated constants:", "", compare_text(cal, recs, args.cores), "",
        "Columns: *runnable / cores*: actors wanting a core at once (plain: the shards of a stage; compiled: every "
        "actor, they spin) against this machine's 2 cores, (over) = oversubscribed; *critical path*: predicted "
        "kernel work of the busiest shard per stage, measured as the sum over (kind, layer) of the busiest "
        "shard's busy seconds (and, plain calls, `ray.timeline()`'s union of actor task intervals); CPU from "
        "`/proc` of each actor process. ms per sample, medians of 3 windows.", "",
        "**Verdict.** The target (wall time within +-25 % wherever runnable actors <= cores) is *not* met: "
        "the model, calibrated from the microbenchmarks alone, predicts too little everywhere. Its largest miss is "
        "the work on the critical path: the actors' measured busy time is 2-5x the kernels' hot-loop cost plus "
        "the per-message shell cost that `bench_kernels.py` measures in-process (memory an actor left idle "
        "between messages is slow to touch again on this VM, `bench_memory.py`'s gap table; no microbenchmark here "
        "prices that per message). The gaps between stages (wall - timeline union) are also larger than the "
        "echo chains' stage latency, more so with 2 shards, whose 2 busy actors, the driver and Ray's daemons "
        "share 2 cores with the other helpers' jobs. Oversubscribed points (compiled graphs: every actor spins) "
        "land closer, partly by compensating errors. Compiled graphs across emulated nodes were slower than plain "
        "calls (cross-node channel stage ~5 ms against ~1.5 ms plain).", "",
        f"### Predicted: a real cluster of {args.nodes} nodes x {args.node_cores} cores", "",
        f"Cross-node stage = the rig's cross-node stage (Ray's own cost over a veth, measured above) + "
        f"{args.wire_ms} ms of network latency (an assumption: a datacenter round trip within a rack is tens of "
        f"microseconds on 10-25 GbE; not measured here, `tc netem` is missing on this kernel). k shards on k "
        f"nodes (one shard of every layer per node, so 5 actors per node: compiled graphs never oversubscribe "
        f"8 cores); spikes per hidden layer scale with width (alpha = {args.alpha}, from the 5000-wide runs). "
        f"Memory bandwidth per node beyond 2 streams, NUMA and network bandwidth are not modelled. Predicted ms "
        f"per sample:", "", table, ""])


def load_points(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calibrate")
    c.add_argument("--hops", type=Path, default=HOPS_JSON)
    c.add_argument("--seconds", type=float, default=1.0)
    c.add_argument("--hops-only", action="store_true",
                   help="keep the saved kernel/memory/idle constants, re-read the hop figures only")
    m = sub.add_parser("compare")
    m.add_argument("--points", type=Path, default=POINTS_JSONL)
    m.add_argument("--cores", type=int, default=2)
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
        if args.hops_only:
            cal = {**json.loads(CALIBRATION.read_text()), **hop_constants(json.loads(args.hops.read_text()))}
        else:
            cal = calibrate(args.hops, args.seconds)
        CALIBRATION.write_text(json.dumps(cal, indent=1, sort_keys=True) + "\n")
        print(json.dumps(cal, indent=1, sort_keys=True))
        return
    cal = json.loads(CALIBRATION.read_text())
    recs = load_points(args.points)
    if args.cmd == "compare":
        print(compare_text(cal, recs, args.cores))
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
