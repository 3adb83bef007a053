"""Per-message cost of the real ``ShardActor`` beyond its shell's work, by spikes per message.

Not a test: measures and writes ``results/actor_messages.json`` (the cost model's
per-message term, ``benchmarks/cost_model.py``).

    taskset -c 0 python benchmarks/bench_actor.py [--width 5000] [--rules sgd,fsgd] [--shards 1,2]
        [--samples 6] [--rounds 2] [--no-ray]

``bench_shell.py`` times the ``Shell`` methods only; an actor's busy time
(``ShardActor.busy``, what the scaling points measure) also holds what the actor does
per message around them: the header and position checks (``_accept``), assembling the
batch from its parts (``ray_refs.assemble``: the k-way merge of the shard outputs of
the layer before, then ``plain()``), the batch's validation, and ``plain()`` of its own
output when it is the only shard of its layer.

Recording: the in-process runtime (``runtime=local``, unfused, ``k`` shards per layer)
trains ``--samples`` MNIST samples after 3 warm-up ones; every forward message of
every forward shard is kept with its input and its output (as it would be sent:
``plain()`` when alone). The forward messages of ``forward.l.0`` (``l >= 2``) are
rebuilt as the Ray backend sends them: kind ``("shards",)`` and the ``k`` outputs of
layer ``l - 1``'s shards at the same position as parts (layer 1: ``("value",)``, the
input batch).

Replay: a ``ShardActor`` of that shard (its own seeded block, as on the rig) consumes
the recorded messages in order, with their positions and numbers, twice (the first
pass warms the process: numba's cached kernels load on a fresh worker's first
message; only the second pass is kept), in each of two modes per round: driven in-process (plain method calls), and (unless ``--no-ray``) as a Ray actor
of an embedded instance (own temp dir, no dashboard) whose parts are ``ray.put``
refs that Ray resolves before the call, as on the rig. Per message: the actor's busy
time and the thread's CPU time around the call, and the CPU time of the ``Shell``
method inside it; the actor's own cost is the difference. The figure per
(mode, rule, shards): the line ``overhead_us = a + b * events`` over the messages of
every round (``events``: spikes in the parts; Theil-Sen, robust to a message the
machine's scheduler delayed), and the median per message.
"""
from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("BENCH_ACTOR_OUT", ROOT / "results" / "actor_messages.json"))
WARMUP = 3


def _events(batch) -> int:
    return len(batch.batch) if hasattr(batch, "bounds") else len(batch)


def record(width: int, rule: str, shards: int, samples: int, data: str) -> tuple[list, dict]:
    """``record_messages`` of a 784-width-width-10 float32 net on the first MNIST samples."""
    from distspike.config import ModelConfig, NetConfig, TrainingConfig
    from distspike.data import load_dataset
    ds = load_dataset("mnist", data)
    n = WARMUP + samples
    X, y = np.asarray(ds.x_train[:n], np.float64), np.asarray(ds.y_train[:n])
    cfg = NetConfig(ModelConfig((784, width, width, 10), 0.01, "float32"), TrainingConfig(rule=rule))
    return record_messages(cfg, shards, X, y, WARMUP)


def record_messages(cfg, shards: int, X: np.ndarray, y: np.ndarray, warmup: int) -> tuple[list, dict]:
    """The forward messages of ``forward.l.0`` for every layer ``l`` of one in-process run (training
    ``X``, ``y``; the first ``warmup`` samples not kept), as ``(layer, pos, train, kind, parts, out)``
    (``out``: what the shard sent), and the config bits the replaying actors need."""
    from distspike.config import RuntimeConfig
    from distspike.runtime import local, make_net
    from distspike.runtime import shell as sh
    n = len(X)
    calls = []  # (name, pos, train, input, sent output) of every forward call, in order
    keep = [False]
    f0 = sh.Shell.forward

    def forward(self, batch, train=True):
        out = f0(self, batch, train)
        if keep[0]:
            alone = self.module.spec.hi - self.module.spec.lo == self.module.spec.n_out
            calls.append((self.name, (*self.position, self.training), train, copy.deepcopy(batch),
                          copy.deepcopy(out.plain() if alone else out)))
        return out

    fuse = local.LocalBackend.can_fuse
    local.LocalBackend.can_fuse = lambda self: False  # one Shell call per message, as the actors get
    sh.Shell.forward = forward
    try:
        with make_net(cfg, RuntimeConfig("local", shards)) as net:
            for k in range(n):
                keep[0] = k >= warmup
                net.train_sample(X[k], y[k])
            specs = {name: shell.module.spec for name, shell in net.backend.shells()}
            num = net.backend.fq[1][0].module.num
    finally:
        sh.Shell.forward = f0
        local.LocalBackend.can_fuse = fuse
    # outputs of layer l's shards by (position, n-th call of that shard at that position)
    outs, seen, msgs = collections.defaultdict(dict), collections.Counter(), []
    for name, pos, train, inp, out in calls:
        _, layer, shard = name.split(".")
        key = (int(layer), pos, seen[(name, pos)])
        seen[(name, pos)] += 1
        outs[key][int(shard)] = out
        if shard != "0":
            continue
        if layer == "1":
            msgs.append((1, pos, train, ("value",), [inp], out))
        else:
            prev = outs[(int(layer) - 1, pos, key[2])]
            msgs.append((int(layer), pos, train, ("shards",), [prev[j] for j in sorted(prev)], out))
    info = {"sizes": cfg.model.sizes, "w_init": cfg.model.w_init, "seed": cfg.seed, "num": num,
            "specs": {l: specs[f"forward.{l}.0"] for l in range(1, len(cfg.model.sizes))}}
    return msgs, info


class _Timed:
    """Mixed into ``ShardActor``: per ``forward`` message, (busy s, thread CPU s of the whole call,
    thread CPU s of the ``Shell.forward`` inside it)."""

    def start_timing(self):
        from distspike.runtime import shell as sh
        self.rows, self._shell_cpu = [], 0.0
        f0 = self._f0 = sh.Shell.forward
        me = self

        def forward(shell, batch, train=True):
            c0 = time.thread_time()
            try:
                return f0(shell, batch, train)
            finally:
                me._shell_cpu += time.thread_time() - c0
        sh.Shell.forward = forward

    def timed_forward(self, head, pos, train, kind, *parts):
        """``forward``, timed; returns what it sends."""
        b0, c0, s0 = self.busy_s, time.thread_time(), self._shell_cpu
        out = self.forward(head, pos, train, kind, *parts)
        self.rows.append((self.busy_s - b0, time.thread_time() - c0, self._shell_cpu - s0))
        return out

    def stop_timing(self):
        from distspike.runtime import shell as sh
        sh.Shell.forward = self._f0

    def timings(self):
        return self.rows


def _actor_class():
    from distspike.runtime.ray_actor import ShardActor
    return type("TimedShardActor", (_Timed, ShardActor), {})


def _make(cls, info: dict, layer: int):
    from distspike.runtime.shard_state import SeededInit
    spec = info["specs"][layer]
    return cls(f"forward.{layer}.0", "forward", spec, info["num"],
               SeededInit(tuple(info["sizes"]), info["w_init"], info["seed"]), None, None)


def replay_inprocess(msgs: list, info: dict) -> list[dict]:
    """Every message to a fresh in-process ``ShardActor`` per layer; one row per message."""
    cls, rows = _actor_class(), []
    for layer in sorted({m[0] for m in msgs}):
        actor = _make(cls, info, layer)
        actor.start_timing()
        mine = [m for m in msgs if m[0] == layer]
        try:
            for seq, (_, pos, train, kind, parts, _) in enumerate(mine * 2):
                actor.timed_forward((seq, layer), pos, train, kind, *parts)
        finally:
            actor.stop_timing()
        rows += [_row(layer, m, t) for m, t in zip(mine, actor.timings()[len(mine):])]
    return rows


def replay_ray(msgs: list, info: dict) -> list[dict]:
    """The same, each layer's shard a Ray actor of an embedded instance, its parts ``ray.put`` refs."""
    import ray
    from distspike.config import RuntimeConfig
    from distspike.runtime.ray_backend import start_ray
    owns = start_ray(RuntimeConfig("ray_local", 1, temp_dir=tempfile.mkdtemp(prefix="dsr-actor-", dir="/tmp")), 1)
    rows = []
    try:
        remote = ray.remote(num_cpus=0)(_actor_class())
        for layer in sorted({m[0] for m in msgs}):
            actor = _make(remote.remote, info, layer)
            ray.get(actor.start_timing.remote())
            mine = [m for m in msgs if m[0] == layer]
            for seq, (_, pos, train, kind, parts, _) in enumerate(mine * 2):  # one at a time, as a stage of the chain
                ray.get(actor.timed_forward.remote((seq, layer), pos, train, kind, *[ray.put(p) for p in parts]))
            rows += [_row(layer, m, t) for m, t in zip(mine, ray.get(actor.timings.remote())[len(mine):])]
            ray.kill(actor)
    finally:
        if owns:
            ray.shutdown()
    return rows


def _row(layer: int, msg: tuple, t: tuple) -> dict:
    busy, cpu, shell = t
    return {"layer": layer, "events": int(sum(_events(p) for p in msg[4])), "parts": len(msg[4]),
            "busy_us": busy * 1e6, "cpu_us": cpu * 1e6, "shell_us": shell * 1e6, "overhead_us": (cpu - shell) * 1e6}


def line_fit(rows: list[dict]) -> dict:
    """``overhead_us = a + b * events`` (Theil-Sen: the median of the pairwise slopes, then the median
    intercept, so that a message the scheduler of the machine delayed does not tilt the line) and the
    median overhead per message."""
    x = np.array([r["events"] for r in rows], float)
    z = np.array([r["overhead_us"] for r in rows], float)
    i, j = np.triu_indices(len(x), 1)
    keep = x[j] != x[i]
    b = float(np.median((z[j] - z[i])[keep] / (x[j] - x[i])[keep])) if keep.any() else 0.0
    a = float(np.median(z - b * x))
    return {"a_us": round(float(a), 3), "b_us_per_event": round(float(b), 6), "median_us": round(float(np.median(z)), 2),
            "messages": len(rows), "events_range": [int(x.min()), int(x.max())],
            "median_events": float(np.median(x))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=5000)
    ap.add_argument("--rules", default="sgd,fsgd")
    ap.add_argument("--shards", default="1,2")
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2, help="in-process / Ray rounds (A B A B)")
    ap.add_argument("--no-ray", action="store_true", help="in-process only")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args(argv)
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    for rule in args.rules.split(","):
        for k in map(int, args.shards.split(",")):
            stamp = {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_start": os.getloadavg()[0],
                     "cpus": sorted(os.sched_getaffinity(0)), "samples": args.samples}
            msgs, info = record(args.width, rule, k, args.samples, args.data)
            rows = {"inprocess": [], "ray": []}
            for _ in range(args.rounds):
                rows["inprocess"] += replay_inprocess(msgs, info)
                if not args.no_ray:
                    rows["ray"] += replay_ray(msgs, info)
            rec = {**stamp, **{mode: line_fit(r) for mode, r in rows.items() if r},
                   "rows": {mode: r for mode, r in rows.items() if r}}
            old[f"{rule}:{k}:{args.width}"] = rec
            OUT.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")
            print(f"{rule} k={k} width {args.width}: " + "; ".join(
                f"{mode} {rec[mode]['a_us']:.1f} us + {rec[mode]['b_us_per_event'] * 1e3:.2f} ns/event "
                f"(median {rec[mode]['median_us']:.1f} us/message over {rec[mode]['messages']}, "
                f"events {rec[mode]['events_range']})" for mode in ("inprocess", "ray") if mode in rec), flush=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
