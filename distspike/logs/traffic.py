"""Per-actor spike traffic logs: one Parquet row per consumed message.

Every module shell (``distspike.runtime.shell.Shell``) owns a ``TrafficRecorder``
that buffers one row per message it consumes and writes its own files::

    RUN_DIR/traffic/actor=<name>/part-<seq:06d>.parquet

Rows are buffered in one preallocated numpy structured array of ``flush_rows``
rows; ``record`` packs a row into it with one ``struct.pack_into`` (well under a
microsecond). A full buffer, ``flush()`` and ``close()`` write one file (zstd
Parquet, one row group). A file is written under a temporary name starting with
``'.'`` in the same directory, fsync'ed and then renamed with ``os.replace``, so a
killed process leaves only complete part files (plus at most one hidden temporary
file, which readers skip and the next recorder of that actor deletes). Sequence
numbers continue after the parts already in the directory, so a resumed run
appends and never overwrites. No pickle is involved anywhere.

``read_traffic(run_dir)`` reads a whole run back as one ``pyarrow.Table``. The
schema and the relations between the logs and the runtime's spike counters are
documented in ``docs/traffic.md``.
"""
from __future__ import annotations

import os
import re
import struct
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

__all__ = ["SCHEMA", "DIRECTIONS", "QUANTITIES", "TrafficError", "TrafficRecorder", "read_traffic",
           "traffic_dir", "part_files", "layer_totals", "layer_totals_by"]

TRAFFIC_DIR = "traffic"
DIRECTIONS = ("forward", "backward")
_DIRECTION_CODE = {d: k for k, d in enumerate(DIRECTIONS)}
COMPRESSION = "zstd"
_PART = re.compile(r"^part-(\d{6,})\.parquet$")
_TEMP = re.compile(r"^\.part-\d{6,}\.parquet\.tmp$")

SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("actor", pa.string()),
    ("module", pa.string()),
    ("layer", pa.int16()),
    ("shard", pa.int16()),
    ("direction", pa.string()),
    ("epoch", pa.int32()),
    ("sample", pa.int64()),
    ("step", pa.int32()),
    ("events_in", pa.int32()),
    ("events_out_pos", pa.int32()),
    ("events_out_neg", pa.int32()),
    ("bytes_in", pa.int32()),
    ("bytes_out", pa.int32()),
    ("compute_s", pa.float64()),
    ("t_wall", pa.float64()),
])

# the per-message columns, in the order ``record`` receives them (``direction`` as a code):
# a packed little-endian record, filled by ``struct.pack_into`` and read back as numpy columns
_ROW = np.dtype([
    ("direction", "<i1"), ("epoch", "<i4"), ("sample", "<i8"), ("step", "<i4"),
    ("events_in", "<i4"), ("events_out_pos", "<i4"), ("events_out_neg", "<i4"),
    ("bytes_in", "<i4"), ("bytes_out", "<i4"), ("compute_s", "<f8"), ("t_wall", "<f8"),
])
_PACK = struct.Struct("<biqiiiiiidd")
_ITEM = _ROW.itemsize
assert _PACK.size == _ITEM


_now = time.time


class TrafficError(ValueError):
    """Traffic logs are missing, empty or unreadable; the message names the path."""


def traffic_dir(run_dir) -> Path:
    """``RUN_DIR/traffic``."""
    return Path(run_dir) / TRAFFIC_DIR


def _next_seq(directory: Path) -> int:
    """One past the highest part number in ``directory`` (0 for a new actor)."""
    seqs = [int(m.group(1)) for m in map(_PART.match, os.listdir(directory)) if m]
    return max(seqs) + 1 if seqs else 0


def _clamp(value, dtype: np.dtype):
    """``value`` clamped to the range of an integer ``dtype`` (floats pass through)."""
    if dtype.kind not in "iu":
        return float(value)
    info = np.iinfo(dtype)
    return min(max(int(value), int(info.min)), int(info.max))


def _native(column: np.ndarray) -> np.ndarray:
    """A contiguous, native-byte-order copy of a buffer column."""
    return column.astype(column.dtype.newbyteorder("="))


_STRINGS = ["run_id", "actor", "module", "direction"]  # dictionary-encoded in the files


def _strings(codes: np.ndarray, values) -> pa.Array:
    """A string column from small-integer codes into ``values`` (built in C++, not per row)."""
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(list(values), pa.string())).cast(pa.string())


class TrafficRecorder:
    """Buffers the traffic rows of one actor and writes them as Parquet parts.

    ``name`` is the actor, e.g. ``"forward.2.0"``; ``kind``/``layer``/``shard`` its
    parts; ``logging`` a ``LoggingConfig`` (only ``every`` and ``flush_rows`` are read).
    Only rows of samples with ``sample % every == 0`` are kept. Constructed from
    plain arguments, so it is built inside each Ray actor and writes only there.
    Writes happen in the calling thread when the buffer is full and on ``flush()`` /
    ``close()``.
    """

    def __init__(self, run_dir, name: str, kind: str, layer: int, shard: int, logging,
                 run_id: str | None = None):
        self.run_dir = Path(run_dir)
        self.name, self.kind, self.layer, self.shard = name, kind, int(layer), int(shard)
        self.run_id = run_id if run_id is not None else self.run_dir.resolve().name
        self.every = int(logging.every)
        self.capacity = int(logging.flush_rows)
        self.directory = traffic_dir(self.run_dir) / f"actor={name}"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._drop_stale_temps()
        self.seq = _next_seq(self.directory)
        self._rows = np.zeros(self.capacity, _ROW)
        self._buffer = memoryview(self._rows).cast("B")  # the same memory, as bytes
        self._n = 0
        self.rows_written = 0
        self.saturated = 0  # rows whose integers were clamped to their column type
        self.files_written: list[Path] = []

    def _drop_stale_temps(self) -> None:
        """Remove this actor's temporary files left by a killed writer (never complete)."""
        for entry in os.listdir(self.directory):
            if _TEMP.match(entry):
                try:
                    os.remove(self.directory / entry)
                except FileNotFoundError:
                    pass

    def keeps(self, sample: int) -> bool:
        """Whether rows of ``sample`` are kept (``sample % every == 0``): callers may skip work."""
        return not sample % self.every

    def record(self, direction: str, epoch: int, sample: int, step: int, events_in: int,
               events_out_pos: int, events_out_neg: int, bytes_in: int, bytes_out: int,
               compute_s: float) -> None:
        """Buffer one message row (hot path: one ``struct.pack_into`` into the buffer)."""
        if sample % self.every:
            return
        n = self._n
        try:
            _PACK.pack_into(self._buffer, n * _ITEM, _DIRECTION_CODE[direction], epoch, sample, step,
                            events_in, events_out_pos, events_out_neg, bytes_in, bytes_out, compute_s, _now())
        except (KeyError, struct.error, TypeError) as err:
            self._retry(n, err, direction, epoch, sample, step, events_in, events_out_pos, events_out_neg,
                        bytes_in, bytes_out, compute_s)
        self._n = n + 1
        if self._n == self.capacity:
            self.flush()

    def _retry(self, n: int, err: Exception, direction: str, *values) -> None:
        """Off the hot path: saturate integers beyond their column type, else raise ``TrafficError``.

        A diverging layer can emit more events in one message than ``int32`` holds; the
        row is kept with the values clamped (and one warning), rather than failing the run.
        """
        if direction not in _DIRECTION_CODE:
            raise TrafficError(f"actor {self.name}: direction={direction!r} is not one of {list(DIRECTIONS)}")
        fields = dict(zip(_ROW.names[1:], values))
        try:
            clamped = [_clamp(v, _ROW[name]) for name, v in fields.items()]
            _PACK.pack_into(self._buffer, n * _ITEM, _DIRECTION_CODE[direction], *clamped, _now())
        except (struct.error, TypeError, ValueError):
            raise TrafficError(f"actor {self.name}: cannot log row {fields}: {err}") from None
        self.saturated += 1
        if self.saturated == 1:
            warnings.warn(f"traffic log of actor {self.name}: {fields} do not fit the log's integer columns; "
                          f"saturated (further rows like this are counted in .saturated)", RuntimeWarning,
                          stacklevel=3)

    @property
    def buffered(self) -> int:
        """Rows recorded but not yet written."""
        return self._n

    def table(self) -> pa.Table:
        """The buffered rows as a table of ``SCHEMA``."""
        rows, n = self._rows, self._n
        zeros = np.zeros(n, np.int8)
        columns = {
            "run_id": _strings(zeros, [self.run_id]),
            "actor": _strings(zeros, [self.name]),
            "module": _strings(zeros, [self.kind]),
            "layer": pa.array(np.full(n, self.layer, np.int16)),
            "shard": pa.array(np.full(n, self.shard, np.int16)),
            "direction": _strings(_native(rows["direction"][:n]), DIRECTIONS),
        }
        for field in _ROW.names[1:]:
            columns[field] = pa.array(_native(rows[field][:n]))
        return pa.Table.from_pydict(columns, schema=SCHEMA)

    def flush(self) -> Path | None:
        """Write the buffered rows as the next part file; its path, or None if nothing was buffered."""
        if not self._n:
            return None
        path = self._write(self.table())
        self.rows_written += self._n
        self._n = 0
        return path

    def _write(self, table: pa.Table) -> Path:
        """Temporary hidden file, fsync, atomic rename: readers never see a partial part."""
        final = self.directory / f"part-{self.seq:06d}.parquet"
        temp = self.directory / f".{final.name}.tmp"
        with open(temp, "wb") as f:  # created with the user's umask
            pq.write_table(table, f, row_group_size=max(table.num_rows, 1), use_dictionary=_STRINGS,
                           compression=COMPRESSION)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)
        self.seq += 1
        self.files_written.append(final)
        return final

    def close(self) -> None:
        """Write what is buffered; the recorder stays usable (a later record starts a new part)."""
        self.flush()

    def __repr__(self) -> str:
        return f"TrafficRecorder({self.name!r}, dir={str(self.directory)!r}, buffered={self._n})"


def part_files(run_dir) -> list[Path]:
    """The complete part files of a run (hidden temporary files excluded), sorted."""
    root = traffic_dir(run_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("actor=*/part-*.parquet") if _PART.match(p.name))


def read_traffic(run_dir, columns: list[str] | None = None) -> pa.Table:
    """All traffic rows of a run as one table (``SCHEMA``), hive-partitioned by ``actor``.

    ``columns`` reads only those columns. Raises ``TrafficError`` naming the directory when ``run_dir`` or its ``traffic/``
    is missing, or holds no part file.
    """
    run_dir = Path(run_dir)
    root = traffic_dir(run_dir)
    if not run_dir.is_dir():
        raise TrafficError(f"run directory {str(run_dir)!r} does not exist")
    if not root.is_dir():
        raise TrafficError(f"no traffic logs: {str(root)!r} does not exist (was logging.traffic off?)")
    files = part_files(run_dir)
    if not files:
        raise TrafficError(f"no traffic logs: {str(root)!r} holds no actor=*/part-*.parquet file")
    partitioning = ds.partitioning(pa.schema([("actor", pa.string())]), flavor="hive")
    try:
        dataset = ds.dataset([str(p) for p in files], schema=SCHEMA, format="parquet",
                             partitioning=partitioning, partition_base_dir=str(root))
        return dataset.to_table(columns=columns)
    except (pa.ArrowInvalid, OSError) as err:
        raise TrafficError(f"cannot read traffic logs in {str(root)!r}: {err}") from None


# -- per-layer totals, as the runtime counts them ------------------------------------
#: the ``SpikeStats`` fields, in order
QUANTITIES = ("fwd", "err_in", "err_passed", "bwd_out")
_STAT_COLUMNS = ["module", "direction", "layer", "shard", "events_in", "events_out_pos", "events_out_neg"]


def _is(table: pa.Table, column: str, value: str) -> np.ndarray:
    return pc.equal(table[column], value).to_numpy(zero_copy_only=False)


def _stage_sums(table: pa.Table, key: np.ndarray, n_keys: int) -> dict[str, np.ndarray]:
    """The four ``SpikeStats`` quantities summed per ``(layer, key)``, shape ``(L+1, n_keys)``.

    - ``fwd[l]``: ``events_out`` of forward-direction rows of ``forward.l.*``;
      ``fwd[0]`` (input spikes): their ``events_in`` at layer 1, shard 0 only;
    - ``err_in[l]``: ``events_in`` of backward-direction rows of ``forward.l.0``
      (every forward shard of a layer receives the whole error batch);
    - ``err_passed[l]``: ``events_out`` of backward-direction rows of ``forward.l.*``;
    - ``bwd_out[l]``: ``events_out`` of the rows of ``backward.l.*`` (backward direction;
      their forward-direction rows only count layer ``l-1``'s spikes and emit nothing).
    """
    layer = table["layer"].to_numpy().astype(np.int64)
    shard = table["shard"].to_numpy()
    n_in = table["events_in"].to_numpy().astype(np.int64)
    n_out = table["events_out_pos"].to_numpy().astype(np.int64) + table["events_out_neg"].to_numpy()
    fwd_mod, fwd_dir = _is(table, "module", "forward"), _is(table, "direction", "forward")
    n_layers = int(layer.max()) + 1 if len(layer) else 1
    cell = layer * n_keys + key

    def total(mask, weights):
        return np.bincount(cell[mask], weights[mask], n_layers * n_keys).reshape(n_layers, n_keys).astype(np.int64)

    fwd = total(fwd_mod & fwd_dir, n_out)
    fwd[0] = total(fwd_mod & fwd_dir & (layer == 1) & (shard == 0), n_in)[1]
    return {"fwd": fwd, "err_in": total(fwd_mod & ~fwd_dir & (shard == 0), n_in),
            "err_passed": total(fwd_mod & ~fwd_dir, n_out), "bwd_out": total(~fwd_mod & ~fwd_dir, n_out)}


def layer_totals(table: pa.Table) -> dict[str, np.ndarray]:
    """Per-layer spike totals ``{fwd, err_in, err_passed, bwd_out}`` (index = layer, 0 = input).

    With ``logging.every == 1`` these equal the runtime's ``SpikingNet.stats``
    (``SpikeStats``) field by field; see ``_stage_sums`` and ``docs/traffic.md``.
    """
    sums = _stage_sums(table, np.zeros(table.num_rows, np.int64), 1)
    return {k: v[:, 0] for k, v in sums.items()}


def layer_totals_by(table: pa.Table, column: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(keys, totals)``: the per-layer totals split by ``column`` (e.g. ``"step"``, ``"sample"``).

    ``keys`` are the distinct values of ``column`` (sorted); each total has shape
    ``(L+1, len(keys))``.
    """
    keys, inverse = np.unique(table[column].to_numpy(), return_inverse=True)
    return keys, _stage_sums(table, inverse.astype(np.int64).reshape(-1), len(keys))
