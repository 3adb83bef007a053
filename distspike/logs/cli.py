"""``distspike-traffic``: summarise (and compare, and plot) a run's per-actor spike traffic.

    distspike-traffic RUN_DIR [--compare RUN_DIR2] [--plot] [--by step|sample] [--skip-bad]
    distspike-traffic --upgrade RUN_DIR

``--upgrade`` rewrites a run's schema v0 parts (an older distspike's) as the current schema, so that
pandas, pyarrow, polars and DuckDB read the directory (``distspike.logs.upgrade``); reading a v0 run
prints one line on stderr saying so.

Prints plain aligned tables: per-actor and per-stage totals, per-layer events per
sample and per time step (or over the run's samples with ``--by sample``),
forward/backward ratios per layer, and the events delivered between stages. With
``--compare`` every table shows both runs and the ratio B/A. ``--plot`` writes PNGs
to ``RUN_DIR/plots/`` (beside the traffic dataset, not in it). Exit code 2 (one line on stderr) when a run has no
readable traffic logs, or when one of its part files is not a traffic part (a foreign
schema, corrupt bytes): the line names the file. ``--skip-bad`` reads the other parts
instead and says on stderr how many parts (and rows) it skipped.

Actor-to-actor traffic (``actor_matrix``) is derived from the per-actor rows: every
message is broadcast to all shards of its destination stage, so the events that
actor ``a`` delivers to actor ``b`` are the events ``a`` emitted on that edge:

- ``scheduler -> forward.1.k``: input spikes (``events_in`` of forward rows of ``forward.1.k``);
- ``forward.(l-1).j -> forward.l.k`` and ``-> backward.l.k`` (the backward replica counts
  them): ``events_out`` of the forward rows of ``forward.(l-1).j``;
- ``forward.L.k -> scheduler`` (error counter): ``events_out`` of its forward rows;
- ``scheduler -> forward.L.k`` (error roots): ``events_in`` of backward rows of ``forward.L.k``;
- ``forward.l.k -> backward.l.j`` (gated errors): ``events_out`` of backward rows of ``forward.l.k``;
- ``backward.l.j -> forward.(l-1).k``: ``events_out`` of the rows of ``backward.l.j``.

The column sums of the matrix are the receivers' ``events_in`` (checked in the tests).
Stage-level entries add up the shards, so a broadcast to ``n`` shards counts ``n`` times.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distspike.logs.traffic import (UPGRADE_COMMAND, TrafficError, layer_totals, layer_totals_by,
                                    read_traffic_checked, v0_parts)
from distspike.logs.upgrade import upgrade_run

PROG = "distspike-traffic"
SCHEDULER = "scheduler"
PLOTS_DIR = "plots"
QUANTITY_LABELS = {"fwd": "fwd out", "err_in": "err in", "err_passed": "err passed", "bwd_out": "bwd out"}
SAMPLE_BINS = 10
_TOTALS = ["messages", "events in", "events out", "out +", "out -", "bytes in", "bytes out", "compute s",
           "compute %"]
_BRIEF = ("messages", "events in", "events out", "compute s", "compute %")
_ACTOR_COLUMNS = ["events_in", "events_out_pos", "events_out_neg", "bytes_in", "bytes_out", "compute_s"]


# -- a run's traffic as numpy columns ---------------------------------------------------
def _actor_key(name: str) -> tuple:
    """Dataflow order: layer, then forward before backward, then shard."""
    if name == SCHEDULER:
        return (-1, 0, 0)
    kind, layer, shard = name.split(".")
    return (int(layer), 0 if kind == "forward" else 1, int(shard))


@dataclass
class Run:
    """One run's traffic table plus the per-row columns the summaries need."""

    path: Path
    table: pa.Table
    actors: list[str] = field(init=False)
    actor: np.ndarray = field(init=False)  # (rows,) index into ``actors``
    forward_dir: np.ndarray = field(init=False)  # (rows,) direction == "forward"

    def __post_init__(self) -> None:
        encoded = pc.dictionary_encode(self.table["actor"].combine_chunks())
        names = encoded.dictionary.to_pylist()
        self.actors = sorted(names, key=_actor_key)
        remap = np.array([self.actors.index(a) for a in names], np.int64)
        self.actor = remap[encoded.indices.to_numpy(zero_copy_only=False)]
        self.forward_dir = pc.equal(self.table["direction"], "forward").to_numpy(zero_copy_only=False)

    def col(self, name: str) -> np.ndarray:
        return self.table[name].to_numpy(zero_copy_only=False)

    @property
    def label(self) -> str:
        """The run directory's name (a sweep job's is its number)."""
        return self.path.resolve().name

    @property
    def run_id(self) -> str:
        ids = pc.unique(self.table["run_id"]).to_pylist()
        return ",".join(sorted(ids)) if ids else "-"

    @cached_property
    def title(self) -> str:
        """The run's settings for figure titles: the overrides it was started with, else its label.

        A sweep's job directories are named by job number ("0", "1", ...), which says nothing.
        """
        settings = run_overrides(self.path)
        import textwrap
        return textwrap.fill(" ".join(settings), 70) if settings else self.label

    @cached_property
    def n_samples(self) -> int:
        return len(np.unique(self.col("sample")))

    @cached_property
    def n_steps(self) -> int:
        return int(self.col("step").max()) + 1

    @cached_property
    def n_layers(self) -> int:
        return int(self.col("layer").max())

    def per_actor(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Sum of ``values`` per actor (optionally over the rows in ``mask``)."""
        m = np.ones(len(values), bool) if mask is None else mask
        return np.bincount(self.actor[m], values[m].astype(np.float64), len(self.actors))


def load_run(run_dir, skip_bad: bool = False) -> Run:
    """Read a run's logs; ``TrafficError`` (naming the path) when there are none or a part is bad.

    With ``skip_bad`` the bad parts are skipped, with one warning line on stderr saying how many.
    """
    table, bad = read_traffic_checked(run_dir, skip_bad=skip_bad)
    if bad:
        rows = sum(b.rows or 0 for b in bad)
        unknown = sum(b.rows is None for b in bad)
        extra = f" and {unknown} part(s) of unknown size" if unknown else ""
        print(f"{PROG}: warning: {run_dir}: skipped {len(bad)} bad part(s) ({rows} rows{extra}); "
              f"first: {bad[0].path}: {bad[0].reason}", file=sys.stderr)
    old = v0_parts(run_dir)
    if old:
        print(f"{PROG}: note: {run_dir}: {len(old)} traffic part(s) of schema v0 (an older distspike): "
              f"distspike reads them, pandas, pyarrow and polars do not; `{UPGRADE_COMMAND.format(run=run_dir)}` "
              f"rewrites them as v1", file=sys.stderr)
    return Run(Path(run_dir), table)


# -- tables -------------------------------------------------------------------------------
@dataclass
class Table:
    """``rows`` start with ``keys`` key columns.

    In a comparison, ``stack`` lays the two runs out row-wise (A, B, B/A rows) instead
    of side by side, and ``brief`` (value headers) keeps only those columns.
    """

    title: str
    headers: list[str]
    rows: list[list]
    keys: int = 1
    stack: bool = False
    brief: tuple[str, ...] | None = None
    groups: list[str] | None = None  # side-by-side comparison: one name per (A, B, B/A) triple

    def select(self, names) -> "Table":
        """This table with only the key columns and the value columns ``names``."""
        cols = list(range(self.keys)) + [self.headers.index(n) for n in names]
        return Table(self.title, [self.headers[c] for c in cols], [[r[c] for c in cols] for r in self.rows],
                     self.keys, self.stack)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if not np.isfinite(v):
        return "inf" if v > 0 else "-"
    if v == int(v) and abs(v) < 1e12:
        return str(int(v))
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"


def _group_line(table: Table, widths: list[int]) -> str:
    """The names of the (A, B, B/A) column triples, right-aligned over them (widens them if needed)."""
    k, parts = table.keys, []
    for g, name in enumerate(table.groups):
        cols = range(k + 3 * g, k + 3 * g + 3)
        span = sum(widths[c] for c in cols) + 4
        widths[cols[-1]] += max(0, len(name) - span)
        parts.append(name.rjust(max(span, len(name))))
    lead = "  ".join(" " * widths[c] for c in range(k))
    return "  ".join([lead] + parts)


def render(table: Table) -> str:
    """Plain aligned text: key columns left-aligned, values right-aligned."""
    cells = [table.headers] + [[_fmt(v) for v in row] for row in table.rows]
    widths = [max(len(r[c]) for r in cells) for c in range(len(table.headers))]
    head = [_group_line(table, widths)] if table.groups else []

    def line(row):
        return "  ".join(s.ljust(w) if c < table.keys else s.rjust(w)
                         for c, (s, w) in enumerate(zip(row, widths))).rstrip()

    head.append(line(table.headers))
    rule = "-" * max(len(h) for h in head)
    return "\n".join([table.title] + head + [rule] + [line(r) for r in cells[1:]])


def ratio(b, a):
    """``b / a``; None when both are 0 (printed '-'), inf when only ``a`` is."""
    if a is None or b is None:
        return None
    if a == 0:
        return None if b == 0 else float("inf")
    return float(b) / float(a)


def _share(values: np.ndarray) -> np.ndarray:
    total = values.sum()
    return 100.0 * values / total if total else np.zeros_like(values)


# -- single-run summaries --------------------------------------------------------------
def actor_table(run: Run) -> Table:
    v = {c: run.per_actor(run.col(c)) for c in _ACTOR_COLUMNS}
    msgs = run.per_actor(np.ones(run.table.num_rows))
    share = _share(v["compute_s"])
    out_pos, out_neg = v["events_out_pos"].astype(np.int64), v["events_out_neg"].astype(np.int64)
    rows = [[a, int(msgs[k]), int(v["events_in"][k]), int(out_pos[k] + out_neg[k]), int(out_pos[k]),
             int(out_neg[k]), int(v["bytes_in"][k]), int(v["bytes_out"][k]), v["compute_s"][k], share[k]]
            for k, a in enumerate(run.actors)]
    return Table("per-actor totals", ["actor"] + _TOTALS, rows, brief=_BRIEF)


def stage_table(run: Run) -> Table:
    """The per-actor totals added up over the shards of each stage (module, layer)."""
    per_actor = actor_table(run).rows
    stages: dict[str, list] = {}
    for row in per_actor:
        stage = row[0].rsplit(".", 1)[0]
        acc = stages.setdefault(stage, [stage, 0] + [0] * (len(row) - 1))
        acc[1] += 1
        acc[2:] = [x + y for x, y in zip(acc[2:], row[1:])]
    rows = sorted(stages.values(), key=lambda r: _actor_key(r[0] + ".0"))
    return Table("per-stage totals (shards added up)", ["stage", "shards"] + _TOTALS, rows,
                 brief=("shards",) + _BRIEF)


def _present(q: str, layer: int) -> bool:
    """Which (quantity, layer) pairs exist: layer 0 is the input, layer 1 has no backward herder."""
    return (q == "fwd") if layer == 0 else not (q == "bwd_out" and layer == 1)


def layer_table(run: Run) -> Table:
    totals, n = layer_totals(run.table), run.n_samples
    rows = [[str(l) if l else "0 (input)"] + [totals[q][l] / n if _present(q, l) else None
                                              for q in QUANTITY_LABELS]
            for l in range(run.n_layers + 1)]
    return Table(f"per-layer events per sample (mean over {n} samples; fwd = forward, err/bwd = backward)",
                 ["layer"] + list(QUANTITY_LABELS.values()), rows)


def _per_key_rows(run: Run, column: str, n_keys: int, scale) -> list[list]:
    """Rows ``[layer, quantity, v_0 .. v_{n-1}]`` of the per-layer sums split by ``column``."""
    keys, sums = layer_totals_by(run.table, column)
    rows = []
    for l in range(run.n_layers + 1):
        for q, label in QUANTITY_LABELS.items():
            if _present(q, l):
                rows.append([str(l), label] + list(scale(keys, sums[q][l], n_keys)))
    return rows


def step_table(run: Run) -> Table:
    n, T = run.n_samples, run.n_steps

    def by_step(keys, values, n_keys):
        out = np.zeros(n_keys)
        out[keys] = values
        return out / n

    rows = _per_key_rows(run, "step", T, by_step)
    return Table(f"per-layer events per time step (mean over {n} samples)",
                 ["layer", "quantity"] + [f"t={t}" for t in range(T)], rows, keys=2, stack=True)


def _sample_bins(samples: np.ndarray, bins: int) -> list[np.ndarray]:
    return [b for b in np.array_split(np.arange(len(samples)), min(bins, len(samples))) if len(b)]


def sample_table(run: Run, bins: int = SAMPLE_BINS) -> Table:
    """Per-layer events per sample along the run, averaged over ``bins`` consecutive groups."""
    samples = np.unique(run.col("sample"))
    groups = _sample_bins(samples, bins)

    def by_bin(keys, values, n_keys):
        return [values[g].mean() for g in groups]

    rows = _per_key_rows(run, "sample", len(groups), by_bin)
    headers = [f"{samples[g[0]]}-{samples[g[-1]]}" for g in groups]
    return Table("per-layer events per sample along the run (mean per group of samples)",
                 ["layer", "quantity"] + headers, rows, keys=2, stack=True)


def ratio_table(run: Run) -> Table:
    """Forward vs backward per layer: events (fwd out / err in), messages, compute."""
    totals = layer_totals(run.table)
    layer, fwd, cs = run.col("layer"), run.forward_dir, run.col("compute_s")
    rows = []
    for l in range(1, run.n_layers + 1):
        ev_f, ev_b = int(totals["fwd"][l]), int(totals["err_in"][l])
        at = layer == l
        m_f, m_b = int(np.count_nonzero(at & fwd)), int(np.count_nonzero(at & ~fwd))
        c_f, c_b = float(cs[at & fwd].sum()), float(cs[at & ~fwd].sum())
        rows.append([str(l), ev_f, ev_b, ratio(ev_f, ev_b), m_f, m_b, ratio(m_f, m_b), c_f, c_b, ratio(c_f, c_b)])
    return Table("forward/backward per layer (events: fwd out vs err in; messages and compute: by direction)",
                 ["layer", "fwd events", "bwd events", "events f/b", "fwd msgs", "bwd msgs", "msgs f/b",
                  "fwd compute s", "bwd compute s", "compute f/b"], rows,
                 brief=("events f/b", "msgs f/b", "compute f/b"))


# -- actor-to-actor traffic -------------------------------------------------------------
def _stages(actors: list[str]) -> dict[str, list[str]]:
    """``{"forward.2": ["forward.2.0", "forward.2.1"], ...}``."""
    stage: dict[str, list[str]] = {}
    for a in actors:
        stage.setdefault(a.rsplit(".", 1)[0], []).append(a)
    return stage


def actor_matrix(run: Run) -> tuple[list[str], np.ndarray]:
    """``(nodes, M)``: ``M[i, j]`` events delivered from node ``i`` to node ``j`` (see module doc)."""
    nodes = [SCHEDULER] + run.actors
    at = {a: k for k, a in enumerate(nodes)}
    ev_in, fwd = run.col("events_in"), run.forward_dir
    ev_out = run.col("events_out_pos").astype(np.int64) + run.col("events_out_neg")
    # per actor: events received / emitted in forward-direction and backward-direction rows
    fwd_in, bwd_in = run.per_actor(ev_in, fwd), run.per_actor(ev_in, ~fwd)
    fwd_out, bwd_out = run.per_actor(ev_out, fwd), run.per_actor(ev_out, ~fwd)
    stage = _stages(run.actors)
    L, M = run.n_layers, np.zeros((len(nodes), len(nodes)))

    def send(src, dst_stage, amount):
        for b in stage.get(dst_stage, ()):
            M[at[src], at[b]] += amount

    for k, a in enumerate(run.actors):
        kind, l = a.split(".")[0], int(a.split(".")[1])
        if kind == "backward":  # error spikes of layer l-1
            send(a, f"forward.{l - 1}", bwd_out[k])
            continue
        if l == 1:  # input spikes
            M[0, at[a]] += fwd_in[k]
        if l == L:  # output spikes to the error counter, error roots back
            M[at[a], 0] += fwd_out[k]
            M[0, at[a]] += bwd_in[k]
        send(a, f"forward.{l + 1}", fwd_out[k])
        send(a, f"backward.{l + 1}", fwd_out[k])  # counted by the backward replica
        send(a, f"backward.{l}", bwd_out[k])  # gated (passed) errors
    return nodes, M


def stage_matrix(nodes: list[str], M: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The actor matrix added up over shards: ``(stages, S)``."""
    names = [n if n == SCHEDULER else n.rsplit(".", 1)[0] for n in nodes]
    stages = list(dict.fromkeys(names))
    G = np.zeros((len(stages), len(nodes)))
    G[[stages.index(n) for n in names], np.arange(len(nodes))] = 1
    return stages, G @ M @ G.T


def matrix_table(run: Run) -> Table:
    stages, S = stage_matrix(*actor_matrix(run))
    rows = [[src] + [int(v) for v in S[i]] for i, src in enumerate(stages)]
    return Table("events delivered between stages (row = sender, column = receiver; one count per receiving shard)",
                 ["from \\ to"] + stages, rows, stack=True)


def summary_tables(run: Run, by: str = "step") -> list[Table]:
    per_key = step_table(run) if by == "step" else sample_table(run)
    return [actor_table(run), stage_table(run), layer_table(run), per_key, ratio_table(run), matrix_table(run)]


# -- comparison ------------------------------------------------------------------------------
def compare_tables(a: Table, b: Table, labels=("A", "B")) -> Table:
    """Both runs' rows joined on the key columns, with B/A: value columns side by side or stacked."""
    if a.brief:
        a, b = a.select(a.brief), b.select(a.brief)
    k = a.keys
    rows_a = {tuple(r[:k]): r[k:] for r in a.rows}
    rows_b = {tuple(r[:k]): r[k:] for r in b.rows}
    keys = list(rows_a) + [key for key in rows_b if key not in rows_a]
    empty = [None] * (len(a.headers) - k)
    headers = a.headers if len(a.headers) >= len(b.headers) else b.headers
    rows = []
    for key in keys:
        va, vb = rows_a.get(key, empty), rows_b.get(key, empty)
        if a.stack:
            rows += [[*key, labels[0]] + list(va), [*key, labels[1]] + list(vb),
                     [*key, "B/A"] + [ratio(y, x) for x, y in zip(va, vb)]]
        else:
            rows.append(list(key) + [v for x, y in zip(va, vb) for v in (x, y, ratio(y, x))])
    if a.stack:
        return Table(a.title, headers[:k] + ["run"] + headers[k:], rows, keys=k + 1, stack=True)
    value_headers = [s for _ in headers[k:] for s in (*labels, "B/A")]
    return Table(a.title, headers[:k] + value_headers, rows, keys=k, groups=headers[k:])


def _align_steps(a: Table, b: Table) -> tuple[Table, Table]:
    """Pad per-key tables of different widths (different T or sample groups) with None."""
    width = max(len(a.headers), len(b.headers))
    for t in (a, b):
        t.rows = [r + [None] * (width - len(r)) for r in t.rows]
    return a, b


def comparison(run_a: Run, run_b: Run, by: str = "step") -> list[Table]:
    pairs = zip(summary_tables(run_a, by), summary_tables(run_b, by))
    return [compare_tables(*_align_steps(ta, tb)) for ta, tb in pairs]


# -- plots ---------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def run_overrides(run_dir: Path) -> list[str]:
    """``RUN_DIR/.hydra/overrides.yaml`` without Hydra's own and ``resume`` keys (empty if none or unreadable)."""
    import yaml
    try:
        items = yaml.safe_load((Path(run_dir) / ".hydra" / "overrides.yaml").read_text()) or []
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(items, list):
        return []
    return [str(o) for o in items if not str(o).lstrip("+~").startswith(("hydra.", "resume="))]


def plot_events_per_step(run: Run, path: Path) -> Path:
    """Mean events per sample at each time step, per layer: forward spikes and error spikes."""
    plt = _pyplot()
    keys, sums = layer_totals_by(run.table, "step")
    n = run.n_samples
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for l in range(run.n_layers + 1):
        line, = ax.plot(keys, sums["fwd"][l] / n, marker="o", label=f"layer {l} fwd out" + (" (input)" if not l else ""))
        if l:
            ax.plot(keys, sums["err_in"][l] / n, ls="--", marker="x", color=line.get_color(), label=f"layer {l} err in")
    ax.set(xlabel="time step", ylabel="events per sample (mean)", title=f"{run.title}\nevents per layer per time step")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize="small", ncol=2)
    return _save(fig, path)


def plot_actor_traffic(run: Run, path: Path) -> Path:
    """Heat map of events delivered between actors (log colour scale)."""
    plt = _pyplot()
    from matplotlib.colors import LogNorm
    nodes, M = actor_matrix(run)
    size = max(5.0, 0.45 * len(nodes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    data = np.ma.masked_equal(M, 0)
    image = ax.imshow(data, cmap="viridis", norm=LogNorm(vmin=max(1, M[M > 0].min()) if (M > 0).any() else 1,
                                                          vmax=max(M.max(), 1)))
    ax.set_xticks(range(len(nodes)), nodes, rotation=60, ha="right", fontsize="small")
    ax.set_yticks(range(len(nodes)), nodes, fontsize="small")
    ax.set(xlabel="receiver", ylabel="sender", title=f"{run.title}\nevents delivered between actors")
    fig.colorbar(image, ax=ax, label="events")
    return _save(fig, path)


def plot_events_per_sample(run: Run, path: Path) -> Path:
    plt = _pyplot()
    keys, sums = layer_totals_by(run.table, "sample")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for l in range(1, run.n_layers + 1):
        line, = ax.plot(keys, sums["fwd"][l], lw=0.8, label=f"layer {l} fwd out")
        ax.plot(keys, sums["err_in"][l], lw=0.8, ls="--", color=line.get_color(), label=f"layer {l} err in")
    ax.set(xlabel="sample", ylabel="events", title=f"{run.title}\nevents per sample")
    ax.legend(fontsize="small", ncol=2)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def write_plots(run: Run, by: str = "step") -> list[Path]:
    plots = Path(run.path) / PLOTS_DIR  # outside traffic/: readers of the dataset dir see Parquet files only
    paths = [plot_events_per_step(run, plots / "events_per_step.png"),
             plot_actor_traffic(run, plots / "actor_traffic.png")]
    if by == "sample":
        paths.append(plot_events_per_sample(run, plots / "events_per_sample.png"))
    return paths


# -- entry point -------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Summarise a run's per-actor spike traffic logs.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory holding traffic/")
    parser.add_argument("--compare", metavar="RUN_DIR2", help="a second run to show side by side (B/A ratios)")
    parser.add_argument("--plot", action="store_true", help="write PNGs to RUN_DIR/plots/")
    parser.add_argument("--by", choices=("step", "sample"), default="step",
                        help="break per-layer events down by time step (default) or along the run's samples")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip part files that are not readable traffic parts (reports how many) instead of "
                             "stopping at the first")
    parser.add_argument("--upgrade", action="store_true",
                        help="rewrite RUN_DIR's schema v0 traffic parts (an older distspike's) as the current "
                             "schema, part by part (atomic renames), and print what it did; nothing else")
    args = parser.parse_args(argv)
    if args.upgrade and (args.compare or args.plot or args.skip_bad):
        parser.error("--upgrade takes only RUN_DIR (not --compare, --plot, --skip-bad)")
    return args


def _header(run: Run, tag: str | None = None) -> str:
    lead = f"{tag} = " if tag else "run "
    return (f"{lead}{run.path} (run_id {run.run_id}): {run.table.num_rows} rows, {len(run.actors)} actors, "
            f"{run.n_layers} layers, {run.n_samples} samples, T={run.n_steps}")


def report(args: argparse.Namespace) -> str:
    if args.upgrade:
        return upgrade_run(args.run_dir).line(args.run_dir)
    run = load_run(args.run_dir, args.skip_bad)
    if args.compare:
        other = load_run(args.compare, args.skip_bad)
        head = [_header(run, "A"), _header(other, "B")]
        tables = comparison(run, other, args.by)
    else:
        head, tables = [_header(run)], summary_tables(run, args.by)
    text = "\n\n".join(["\n".join(head)] + [render(t) for t in tables])
    if args.plot:
        text += "\n\n" + "\n".join(f"wrote {p}" for r in ([run, other] if args.compare else [run])
                                   for p in write_plots(r, args.by))
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        print(report(args))
    except TrafficError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
