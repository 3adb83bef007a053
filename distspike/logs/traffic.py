"""Per-actor spike traffic logs: one Parquet row per consumed message.

Every module shell (``distspike.runtime.shell.Shell``) owns a ``TrafficRecorder``
that buffers one row per message it consumes and writes its own files::

    RUN_DIR/traffic/actor=<name>/part-<seq:06d>.parquet

Rows are buffered in preallocated numpy column buffers of ``flush_rows`` rows. The
shell hands over each consumed message: ``message`` stages a one-row message as a
tuple of integers (packed into the buffers ``STAGE`` at a time by one compiled call),
``segments`` packs a message of several segments (one row per segment) with one
compiled call (``distspike.kernels.traffic``). A full buffer, ``flush()`` and
``close()`` write one file (LZ4 Parquet, one row group, the schema version in its
key-value metadata). A file is written under a temporary name in the run directory,
outside ``traffic/`` (``RUN_DIR/.traffic.<name>.part-<seq>.parquet.tmp``), fsync'ed
and then renamed into place with ``os.replace``, so ``traffic/`` only ever holds
complete part files and any Parquet reader can read it, also during a run (a killed
process leaves at most one temporary file, which the next recorder of that actor
deletes). Sequence numbers continue after the parts already in the directory, so a
resumed run appends and never overwrites. No pickle is involved anywhere.

``read_traffic(run_dir)`` reads a whole run back as one ``pyarrow.Table`` (schema v0
directories too). The schema, its versions and the relations between the logs and the
runtime's spike counters are documented in ``docs/traffic.md``.
"""
from __future__ import annotations

import os
import re
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numba.core.errors import TypingError

from distspike.kernels.traffic import (EVENT_BYTES, FLOAT_COLUMNS, HEADER_BYTES, INT_COLUMNS, STAGED, put_row,
                                       put_segment_rows, put_staged_rows)

__all__ = ["SCHEMA", "FILE_SCHEMA", "V0_SCHEMA", "SCHEMA_VERSION", "VERSION_KEY", "DIRECTIONS", "QUANTITIES",
           "TrafficError", "TrafficRecorder", "read_traffic",
           "read_traffic_checked", "BadPart", "check_part", "part_version",
           "traffic_dir", "part_files", "v0_parts", "write_part_file", "UPGRADE_COMMAND", "layer_totals",
           "layer_totals_by"]

TRAFFIC_DIR = "traffic"
DIRECTIONS = ("forward", "backward")
_DIRECTION_CODE = {d: k for k, d in enumerate(DIRECTIONS)}
COMPRESSION = "lz4"  # vs zstd: 0.14 vs 0.21 us per row written, 9 vs 4.3 bytes per row (bench of 40k rows)
_PART = re.compile(r"^part-(\d{6,})\.parquet$")
#: schema v0 wrote a part's temporary file in the actor's directory, where polars and DuckDB read it too
_TEMP_V0 = re.compile(r"^\.part-\d{6,}\.parquet\.tmp$")

#: the version of the files' schema, in each part's Parquet key-value metadata under ``VERSION_KEY``
#: (files without the key are schema v0: ``V0_SCHEMA``)
SCHEMA_VERSION = 1
VERSION_KEY = "distspike.traffic.schema"
WALL_TYPE = pa.timestamp("us", tz="UTC")
#: rewrites a run's schema v0 parts as the current version (``distspike.logs.upgrade``)
UPGRADE_COMMAND = "distspike-traffic --upgrade {run}"


def _fields(pairs) -> list[pa.Field]:
    return [pa.field(name, type, nullable=False) for name, type in pairs]  # every row has every value


_ROW_FIELDS = [("module", pa.string()), ("layer", pa.int16()), ("shard", pa.int16()), ("direction", pa.string()),
               ("epoch", pa.int32()), ("sample", pa.int64()), ("step", pa.int32()), ("events_in", pa.int32()),
               ("events_out_pos", pa.int32()), ("events_out_neg", pa.int32()), ("bytes_in", pa.int32()),
               ("bytes_out", pa.int32()), ("compute_s", pa.float64())]
#: the run's tags (``config.RunTags``): columns, since directory reads (pandas, polars, DuckDB) show no file metadata
_RUN_FIELDS = [("run_id", pa.string()), ("routing", pa.string()), ("rule", pa.string()), ("job", pa.int32())]
#: what ``read_traffic`` returns: the files' columns and ``actor``, the hive key of the directories
SCHEMA = pa.schema(_fields(_RUN_FIELDS + [("actor", pa.string())] + _ROW_FIELDS + [("t_wall", WALL_TYPE)]))
#: the columns of a part file (``actor`` is only in the directory name: a file column too would clash with it)
FILE_SCHEMA = pa.schema([f for f in SCHEMA if f.name != "actor"], metadata={VERSION_KEY: str(SCHEMA_VERSION)})
#: the files of schema v0 (no version key): ``actor`` also a file column, ``t_wall`` float seconds, no run tags
#: but ``run_id`` (the run directory's name)
V0_SCHEMA = pa.schema(_fields([("run_id", pa.string()), ("actor", pa.string())] + _ROW_FIELDS
                              + [("t_wall", pa.float64())]))

_INT_TYPES = {name: np.dtype(FILE_SCHEMA.field(name).type.to_pandas_dtype()) for name in INT_COLUMNS[1:]}
STAGE = 4096  # one-row messages staged before they are packed into the buffers

_now, _perf_ns = time.time, time.perf_counter_ns


def one_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


class TrafficError(ValueError):
    """Traffic logs are missing, empty or unreadable; the message names the path."""


def traffic_dir(run_dir) -> Path:
    """``RUN_DIR/traffic``."""
    return Path(run_dir) / TRAFFIC_DIR


def _next_seq(directory: Path) -> int:
    """One past the highest part number in ``directory`` (0 for a new actor)."""
    seqs = [int(m.group(1)) for m in map(_PART.match, os.listdir(directory)) if m]
    return max(seqs) + 1 if seqs else 0


_STRINGS = ["run_id", "routing", "rule", "module", "direction"]  # dictionary-encoded in the files
# Min/max statistics (for filters that skip whole files) only where they select: along the run. The
# files store no Arrow schema (the table's strings are dictionary-encoded in memory, Parquet's column
# types give FILE_SCHEMA back: a reader gets plain strings).
_STATISTICS = ["epoch", "sample", "step"]
# FILE_SCHEMA with the strings as codes into a dictionary (how ``table()`` builds them). Non-null columns need no
# definition levels in the file, a quarter of the writer's time.
_BUFFER_SCHEMA = pa.schema([f.with_type(pa.dictionary(pa.int8(), pa.string())) if f.name in _STRINGS else f
                            for f in FILE_SCHEMA], metadata=FILE_SCHEMA.metadata)


def _column(values: np.ndarray, type: pa.DataType) -> pa.Array:
    """A column without nulls of Arrow ``type`` on the memory of ``values`` (numpy, the same width; not copied).

    Not ``pa.array``: its first call imports pandas if it is installed (pyarrow checks every
    argument for pandas objects), 50 MiB in a training process that never uses pandas.
    """
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(type, len(values), [None, pa.py_buffer(values)])


def _strings(codes: np.ndarray, values) -> pa.Array:
    """A string column as small-integer codes into ``values``: the writer stores the codes as they are
    (no string is built or hashed per row); the file's column is a plain string column."""
    encoded = [v.encode() for v in values]
    offsets = np.cumsum([0] + [len(e) for e in encoded], dtype=np.int32)
    dictionary = pa.Array.from_buffers(pa.string(), len(encoded),
                                       [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])
    return pa.DictionaryArray.from_arrays(_column(codes.astype(np.int8, copy=False), pa.int8()), dictionary)


#: the writers' allocations go to malloc, not Arrow's default pool (mimalloc, which kept what each writer
#: thread had used: 45 MiB of a training run's peak RSS with its five recorders), and one part is written
#: at a time per process, its memory given back to the system after it (``release_unused``: malloc_trim):
#: the recorders' threads no longer hold the encoders of five parts at once at an epoch's end
_WRITE_POOL = pa.system_memory_pool()
_WRITE_LOCK = threading.Lock()
_WRITER: tuple[int, ThreadPoolExecutor] | None = None  # (pid, the process's writer thread)
_WRITER_GUARD = threading.Lock()


_SPARES: dict[tuple[int, int], list] = {}  # (pid, rows) -> written buffer pairs, free for the next rows
_SPARES_KEPT = 2


def _spare_pair(rows: int):
    """A written buffer pair of ``rows`` rows that a recorder of this process handed over, or None."""
    with _WRITER_GUARD:
        free = _SPARES.get((os.getpid(), rows))
        return free.pop() if free else None


def _give_back(rows: int, pair) -> None:
    """Keep a written pair for the next recorder that needs one (at most ``_SPARES_KEPT``; the rest is freed).

    Reused, not freed and made anew: fresh pairs, made while others were being written and freed,
    spread malloc's heap (some 10 MiB of a training run's peak RSS)."""
    with _WRITER_GUARD:
        free = _SPARES.setdefault((os.getpid(), rows), [])
        if len(free) < _SPARES_KEPT:
            free.append(pair)


def _writer_thread() -> ThreadPoolExecutor:
    """The one background thread that builds and writes every recorder's parts in this process.

    One thread, not one per recorder: the parts were written one at a time anyway
    (``_WRITE_LOCK``), and each thread that allocates gets a malloc arena of its own, which
    keeps what the thread freed: five recorders' threads held some 6 MiB more of a training
    run's peak RSS. Parts queue in the order they are handed over; a recorder waits only for
    its own (``TrafficRecorder._wait``). Made anew in a forked child.
    """
    global _WRITER
    with _WRITER_GUARD:
        if _WRITER is None or _WRITER[0] != os.getpid():
            _WRITER = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="traffic-writer"))
        return _WRITER[1]


def write_part_file(table: pa.Table, path: Path) -> None:
    """``table`` (columns of ``FILE_SCHEMA``) as one part file at ``path``, fsync'ed: LZ4, one row group, the
    schema version in the key-value metadata, a CRC32 per page. The caller renames it into ``traffic/``."""
    with open(path, "wb") as f:  # created with the user's umask
        with _WRITE_LOCK:  # one encoder at a time (``_WRITE_POOL``)
            try:
                with pq.ParquetWriter(f, table.schema, use_dictionary=_STRINGS, compression=COMPRESSION,
                                      store_schema=False, write_statistics=_STATISTICS, memory_pool=_WRITE_POOL,
                                      write_page_checksum=True) as writer:  # CRC32 per page: altered bytes show
                    writer.write_table(table, row_group_size=max(table.num_rows, 1))
                    writer.add_key_value_metadata(FILE_SCHEMA.metadata)  # the schema version
            finally:
                _WRITE_POOL.release_unused()
        f.flush()
        os.fsync(f.fileno())


class TrafficRecorder:
    """Buffers the traffic rows of one actor and writes them as Parquet parts.

    ``name`` is the actor, e.g. ``"forward.2.0"``; ``kind``/``layer``/``shard`` its
    parts; ``logging`` a ``LoggingConfig`` (only ``every`` and ``flush_rows`` are read).
    Only rows of samples with ``sample % every == 0`` are kept. Constructed from
    plain arguments, so it is built inside each Ray actor and writes only there.

    Hot path: ``message(...)`` stages a one-row message as a tuple of integers (its
    figures, no arrays); every ``STAGE`` messages, and before anything else is
    buffered or flushed, ``pack()`` turns them into rows with one compiled call. A
    message of several segments (``segments(...)``) is packed at once, one compiled
    call per message. When the row buffer is full its rows go to the process's writer thread (``_writer_thread``)
    that builds and writes the part file while training goes on (one part in flight at a time;
    the next full buffer waits for it). ``flush()``, ``close()`` and ``discard()`` wait
    for that write first, so after them every row handed off is in a complete file (a
    checkpoint's list of parts, or a rollback's, is never overtaken by a late write).
    A failed background write raises at the next write, flush, close or discard.
    """

    def __init__(self, run_dir, name: str, kind: str, layer: int, shard: int, logging,
                 run_id: str | None = None):
        self.run_dir = Path(run_dir)
        self.name, self.kind, self.layer, self.shard = name, kind, int(layer), int(shard)
        self.tags = logging.tags if run_id is None else replace(logging.tags, run_id=run_id)
        self.every = int(logging.every)
        self.capacity = int(logging.flush_rows)
        self.directory = traffic_dir(self.run_dir) / f"actor={name}"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._drop_stale_temps()
        self.seq = _next_seq(self.directory)
        if self.seq:
            _warn_if_v0(self.directory)
        self._ints, self._floats = self._buffers()
        self._n = 0
        self._staged: list[tuple] = []  # one-row messages not yet in the buffers (fields STAGED)
        self.sample_rows: SampleRows | None = None  # holds this actor's rows of fused samples not yet taken
        self.rows_written = 0
        self.saturated = 0  # rows whose integers were clamped to their column type
        self.files_written: list[Path] = []
        self._pending: Future | None = None  # the part file being written in the background

    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """A pair of row buffers, written once now: fresh memory page-faults on its first write (every 4 KB,
        0.5-7 us each on the development VM, some 2 ms per 1 000 rows), better paid at once than row by row.
        A pair takes ``88 * flush_rows`` bytes (1.4 MB at the default)."""
        ints = np.empty((len(INT_COLUMNS), self.capacity), np.int64)
        floats = np.empty((len(FLOAT_COLUMNS), self.capacity), np.float64)
        ints.fill(0)
        floats.fill(0)
        return ints, floats

    def _temp_path(self, seq: int) -> Path:
        """Where part ``seq`` is written before it is renamed into place: in the run directory, outside the
        dataset (pandas and pyarrow skip hidden files in it, polars and DuckDB do not)."""
        return self.run_dir / f".traffic.{self.name}.part-{seq:06d}.parquet.tmp"

    def _drop_stale_temps(self) -> None:
        """Remove this actor's temporary files left by a killed writer (never complete), schema v0's too."""
        mine = re.compile(rf"^\.traffic\.{re.escape(self.name)}\.part-\d{{6,}}\.parquet\.tmp$")
        stale = [self.run_dir / e for e in os.listdir(self.run_dir) if mine.match(e)]
        stale += [self.directory / e for e in os.listdir(self.directory) if _TEMP_V0.match(e)]
        for path in stale:
            path.unlink(missing_ok=True)

    def keeps(self, sample: int) -> bool:
        """Whether rows of ``sample`` are kept (``sample % every == 0``): callers may skip work."""
        return not sample % self.every

    # -- hot path: consumed messages -----------------------------------------------------
    def message(self, t0_ns: int, form: int, position: tuple, events_in: int, pos: int, n_out: int) -> None:
        """One consumed message that makes one row (hot path: a tuple append).

        ``t0_ns``: ``perf_counter_ns()`` when the module started on it (it ends now);
        ``form``: direction | what was sent (``distspike.kernels.traffic``); ``position``:
        ``(epoch, sample, step)``; ``n_out`` events sent on, ``pos`` of them with sign +1.
        Staged messages become rows ``STAGE`` at a time (``pack``), and before any flush.
        """
        if position[1] % self.every:
            return
        staged = self._staged
        staged.append((form, *position, events_in, pos, n_out, t0_ns, _perf_ns()))
        if len(staged) >= STAGE:
            self.pack()

    def segments(self, t0_ns: int, form: int, position: tuple, steps: np.ndarray, in_bounds: np.ndarray,
                 vals: np.ndarray, mask: np.ndarray, out_bounds: np.ndarray) -> None:
        """One consumed message of several segments: one row per segment (one compiled call).

        Segment ``p`` brought ``in_bounds[p+1] - in_bounds[p]`` events; its step is
        ``steps[p]`` (``steps`` empty: the message's). What it sent: with ``SENT_BATCH``
        the signs ``vals[out_bounds[p]:out_bounds[p+1]]``, with ``SENT_MASK`` (a gate) the
        input events (signs ``vals``) whose ``mask`` is set. Unused arrays are empty.
        """
        if position[1] % self.every:
            return
        t1 = _perf_ns()
        self.pack()  # rows stay in message order
        self._room()
        epoch, sample, step = position
        p, n_parts = 0, in_bounds.shape[0] - 1
        while p < n_parts:
            self._n, p = put_segment_rows(self._ints, self._floats, self._n, form, epoch, sample, step, steps,
                                          in_bounds, vals, mask, out_bounds, p, t0_ns, t1, _wall_ns(),
                                          HEADER_BYTES, EVENT_BYTES)
            if self._n == self.capacity:
                self._write_buffer()
                if p < n_parts:
                    self._room()

    def take(self, ints: np.ndarray, floats: np.ndarray) -> None:
        """Rows already in the buffers' layout (columns ``INT_COLUMNS``, ``FLOAT_COLUMNS``), appended in order.

        ``SampleRows.spill`` hands over each actor's rows of fused samples this way (only
        kept samples); full buffers are written as usual.
        """
        k, m = 0, ints.shape[1]
        while k < m:
            j = min(m - k, self.capacity - self._n)
            self._room()
            self._ints[:, self._n:self._n + j] = ints[:, k:k + j]
            self._floats[:, self._n:self._n + j] = floats[:, k:k + j]
            self._n += j
            k += j
            if self._n == self.capacity:
                self._write_buffer()

    def pack(self) -> None:
        """Take this process's rows of fused samples (``SampleRows``), then turn the staged messages into rows
        of the buffer (one compiled call), writing full buffers."""
        if self.sample_rows is not None:
            self.sample_rows.spill()
        staged = self._staged
        if not staged:
            return
        self._staged = []
        rows = np.fromiter(chain.from_iterable(staged), np.int64, len(STAGED) * len(staged)).reshape(-1, len(STAGED))
        m, wall = 0, _wall_ns()
        while m < rows.shape[0]:
            self._room()
            self._n, m = put_staged_rows(self._ints, self._floats, self._n, rows, m, wall, HEADER_BYTES, EVENT_BYTES)
            if self._n == self.capacity:
                self._write_buffer()

    # -- one row at a time (tests, tools) --------------------------------------------------
    def _code(self, direction: str) -> int:
        try:
            return _DIRECTION_CODE[direction]
        except KeyError:
            raise TrafficError(f"actor {self.name}: direction={direction!r} is not one of {list(DIRECTIONS)}") from None

    def record(self, direction: str, epoch: int, sample: int, step: int, events_in: int,
               events_out_pos: int, events_out_neg: int, bytes_in: int, bytes_out: int,
               compute_s: float) -> None:
        """Buffer one row given by its figures (after the rows of the held messages)."""
        if sample % self.every:
            return
        self.pack()
        row = (epoch, sample, step, events_in, events_out_pos, events_out_neg, bytes_in, bytes_out, compute_s)
        self._room()
        try:
            put_row(self._ints, self._floats, self._n, self._code(direction), *row, _now())
        except (TypingError, TypeError, OverflowError) as err:
            raise self._bad_row(row, err) from None
        self._n += 1
        if self._n == self.capacity:
            self._write_buffer()

    def _bad_row(self, row: tuple, err: Exception) -> TrafficError:
        """The error for a row that does not fit the buffers, naming the first bad field."""
        names = ("epoch", "sample", "step", "events_in", "events_out_pos", "events_out_neg", "bytes_in",
                 "bytes_out", "compute_s")
        for name, value in zip(names, row):
            ok = isinstance(value, (int, np.integer)) and -2 ** 63 <= int(value) < 2 ** 63
            if name == "compute_s":
                ok = isinstance(value, (int, float, np.integer, np.floating))
            if not ok:
                return TrafficError(f"actor {self.name}: cannot log field {name}={value!r}")
        return TrafficError(f"actor {self.name}: cannot log row {dict(zip(names, row))}: {one_line(err)}")

    # -- writing ---------------------------------------------------------------------------
    @property
    def buffered(self) -> int:
        """Rows recorded but not yet written (rows of fused samples are handed over first)."""
        if self.sample_rows is not None:
            self.sample_rows.spill()
        return self._n + len(self._staged)

    def table(self) -> pa.Table:
        """The buffered rows as a table of ``SCHEMA`` (column by column, no per-row work)."""
        self._room()
        return self._table(self._ints, self._floats, self._n)

    def _table(self, ints: np.ndarray, floats: np.ndarray, n: int) -> pa.Table:
        """Rows ``[:n]`` of a buffer pair as a table (strings dictionary-encoded; integers clamped, counted)."""
        zeros, tags = np.zeros(n, np.int8), self.tags
        ints = ints[:, :n]
        columns = {
            "run_id": _strings(zeros, [tags.run_id]),
            "routing": _strings(zeros, [tags.routing]),
            "rule": _strings(zeros, [tags.rule]),
            "job": _column(np.full(n, tags.job, np.int32), pa.int32()),
            "module": _strings(zeros, [self.kind]),
            "layer": _column(np.full(n, self.layer, np.int16), pa.int16()),
            "shard": _column(np.full(n, self.shard, np.int16), pa.int16()),
            "direction": _strings(ints[0].astype(np.int8), DIRECTIONS),
        }
        clamped = np.zeros(n, bool)
        for k, name in enumerate(INT_COLUMNS[1:], start=1):
            columns[name] = _column(_fit(ints[k], _INT_TYPES[name], clamped), _BUFFER_SCHEMA.field(name).type)
        columns["compute_s"] = _column(floats[0, :n], pa.float64())
        columns["t_wall"] = _column(np.rint(floats[1, :n] * 1e6).astype(np.int64), WALL_TYPE)  # float seconds
        self._warn_saturated(int(clamped.sum()))
        return pa.Table.from_pydict(columns, schema=_BUFFER_SCHEMA)

    def _warn_saturated(self, rows: int) -> None:
        """A diverging layer can emit more events in one message than ``int32`` holds: keep the
        rows with their values saturated, and warn once per actor."""
        if not rows:
            return
        if not self.saturated:
            warnings.warn(f"traffic log of actor {self.name}: {rows} row(s) have counts that do not fit the "
                          f"log's integer columns; saturated (counted in .saturated)", RuntimeWarning, stacklevel=4)
        self.saturated += rows

    def flush(self, wait: bool = True) -> Path | None:
        """Write the staged and buffered rows as the next part file; its path, or None if nothing was buffered.

        Waits for a background write first: afterwards every recorded row is in a complete file.
        ``wait=False`` hands the part to the writer thread instead (returns None; the next
        flush, close or discard waits for it): the recorders of one process write their
        parts side by side (``LocalBackend.flush``).
        """
        self.pack()
        if not wait:
            self._write_buffer()
            return None
        self._wait()
        return self._write_buffer(background=False)

    def _room(self) -> None:
        """Buffers for the next rows: after a part went to the writer thread, a pair (a written one of this
        process, or a new one) is taken only when rows come, not when the part is handed over: a flush at
        an epoch's end leaves none held."""
        if self._ints is None:
            self._ints, self._floats = _spare_pair(self.capacity) or self._buffers()

    def _write_buffer(self, background: bool = True) -> Path | None:
        """Hand the buffered rows to the writer thread (``background``) or write them here; the buffers restart."""
        if not self._n:
            return None
        self._wait()
        n, buffers = self._n, (self._ints, self._floats)
        self.rows_written += n
        self._n = 0
        if not background:
            return self._write(self._table(*buffers, n))
        # The thread builds the table from these buffers and writes it (the table shares memory with them),
        # then gives them back for the next rows of any recorder of this process (``_give_back``). The next
        # rows go to such a pair, taken when they come (``_room``). Only rows [:n] are ever read: no zeroing.
        self._ints = self._floats = None
        self._pending = _writer_thread().submit(self._write_part, buffers, n)
        return None

    def _write_part(self, buffers: tuple, n: int) -> Path:
        """The writer thread's work: rows ``[:n]`` of ``buffers`` as the next part file; the pair is free after."""
        try:
            return self._write(self._table(*buffers, n))
        finally:  # the table, which shares the buffers' memory, is gone by now
            _give_back(self.capacity, buffers)

    def _wait(self) -> None:
        """Finish the background write in flight, if any (raising its error)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _write(self, table: pa.Table) -> Path:
        """Temporary file outside the dataset, fsync, atomic rename: readers never see a partial part."""
        final = self.directory / f"part-{self.seq:06d}.parquet"
        temp = self._temp_path(self.seq)
        try:
            write_part_file(table, temp)
            os.replace(temp, final)
        except OSError as err:  # a full disk: no partial temp file is left; the error names the part
            temp.unlink(missing_ok=True)
            raise OSError(err.errno, err.strerror or str(err), str(final)) from err
        self.seq += 1
        self.files_written.append(final)
        return final

    def close(self) -> None:
        """Write what is staged and buffered; the recorder stays usable (a later message starts a new part)."""
        try:
            self.flush()
        finally:  # also after a failed write (the process's writer thread stays, idle, for other recorders)
            if self.sample_rows is not None:
                self.sample_rows.close()

    def discard(self) -> int:
        """Drop the staged and buffered rows unwritten (a rollback to a checkpoint replays them); how many.

        A part already handed to the writer thread is finished first, so the rollback that
        follows sees it (and moves it aside if it is newer than the checkpoint).
        """
        if self.sample_rows is not None:
            self.sample_rows.spill()  # rows of earlier fused samples: as if each had been handed over at once
        self._wait()  # after the spill: it may have handed a full buffer to the writer thread
        n = self._n + len(self._staged)
        self._n, self._staged = 0, []
        return n

    def __repr__(self) -> str:
        return f"TrafficRecorder({self.name!r}, dir={str(self.directory)!r}, buffered={self.buffered})"


class SampleRows:
    """The traffic rows of fused in-process samples, for all actors, until the recorders take them.

    A fused sample (``LocalBackend.train_fused``) tables its messages in its one compiled
    call, appending them to one table for all actors (``log``, from row ``n`` on; the
    kernel grows it if needed); ``added`` notes the sample, with no per-actor work.
    Once ``capacity`` rows are tabled, the table goes to a background thread, and the
    next samples fill a second table meanwhile. The thread turns the noted samples into each
    actor's rows in one compiled call (``kernels/fused.py``: ``rows_by_actor``, which, like
    the fused kernel, runs without the GIL) and hands them over (``TrafficRecorder.take``):
    the training thread only tables rows. Every recorder calls ``spill()`` before it
    buffers, writes or discards anything else (``pack``): it hands over what is tabled and
    waits until the thread is done, so every actor's rows stay in order and
    ``flush()``/``close()`` write them all. While a table is in the thread, the recorders
    are the thread's: the training thread touches them only through ``spill()`` (and reads
    ``keeps``/``_staged``, which the thread does not change). A failure in the thread is
    raised by the next ``added`` or ``spill``. ``recorders[a]`` is the kernel's actor ``a``.
    The table is small (4 096 rows, some 40 samples of 784-300-300-10) so that it is still
    in the CPU's caches when it is spilled: reading a cold table of 50 000 rows took
    5-10 ms against 2 ms warm.
    """

    def __init__(self, recorders: list, capacity: int = 4096):
        self.recorders = list(recorders)
        self.capacity = capacity
        # kernels/fused.py: LOG_COLUMNS; int32 (counts of one message segment) halves the memory the kernel writes
        self.log = np.empty((capacity + 1024, 7), np.int32)
        self._free = np.empty_like(self.log)  # the other table: free once the thread is done with it
        self.n = 0  # rows tabled
        self._samples: list[tuple] = []  # kernels/fused.py: SAMPLE_COLUMNS
        self._out: tuple | None = None  # rows_by_actor's output and scratch arrays, reused (by the thread only)
        self._thread: ThreadPoolExecutor | None = None  # started on the first hand-over
        self._pending: Future | None = None  # the table being turned into rows
        for rec in self.recorders:
            rec.sample_rows = self

    def begin(self) -> tuple[np.ndarray, int]:
        """``(log, n)``: where the next sample's rows go. Per-message rows staged before it are packed first."""
        for rec in self.recorders:
            if rec._staged:
                rec.pack()
        return self.log, self.n

    def added(self, log: np.ndarray, end: int, position: tuple, sample_wide: bool, compute_ns: int) -> None:
        """The kernel tabled a sample at ``position``: rows ``n..end-1`` of ``log`` (the table, maybe grown).

        Its ``compute_ns`` will be split evenly over its logged rows; it ended now (``t_wall``).
        """
        self.log = log
        self._samples.append((position[0], position[1], self.n, end, sample_wide, compute_ns, time.time_ns()))
        self.n = end
        if end >= self.capacity:
            self._hand_over()

    def spill(self) -> None:
        """Hand every recorder its rows of the noted samples (in order) and wait until they have them."""
        self._hand_over()
        self._wait()

    def _hand_over(self) -> None:
        """Give the table and its samples to the thread; the next samples go to the other table."""
        if not self._samples:
            return
        samples = np.array(self._samples, np.int64)
        self._samples, self.n = [], 0
        self._wait()  # the thread is done with the other table (and the recorders)
        table, self.log = self.log, self._free
        self._free = table
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="traffic-rows")
        self._pending = self._thread.submit(self._to_recorders, table, samples)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _to_recorders(self, log: np.ndarray, samples: np.ndarray) -> None:
        """(In the thread.) Each recorder's rows of ``samples``, tabled in ``log``, handed over in order."""
        from distspike.kernels.fused import rows_by_actor
        if self._out is None or self._out[0].shape[1] < log.shape[0]:  # reused: fresh memory page-faults
            rows = log.shape[0]
            self._out = (np.empty((len(INT_COLUMNS), rows), np.int64), np.empty((len(FLOAT_COLUMNS), rows)),
                         np.empty((3, rows), np.int64))
        ints, floats, scratch = self._out
        cuts = rows_by_actor(log, samples, len(self.recorders), ints, floats, scratch, HEADER_BYTES, EVENT_BYTES)
        for a, rec in enumerate(self.recorders):
            if cuts[a + 1] > cuts[a]:
                rec.take(ints[:, cuts[a]:cuts[a + 1]], floats[:, cuts[a]:cuts[a + 1]])

    def close(self) -> None:
        """Spill, then stop the thread (a later sample starts it again)."""
        self.spill()
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None


def _wall_ns() -> int:
    """``time_ns() - perf_counter_ns()``: turns a ``perf_counter_ns`` reading into wall-clock ns."""
    return time.time_ns() - time.perf_counter_ns()


def _fit(col: np.ndarray, dtype: np.dtype, clamped: np.ndarray) -> np.ndarray:
    """``col`` in ``dtype``, saturating out-of-range values (marked in ``clamped``)."""
    info = np.iinfo(dtype)
    if col.min(initial=0) < info.min or col.max(initial=0) > info.max:
        out = (col < info.min) | (col > info.max)
        clamped |= out
        col = np.clip(col, info.min, info.max)
    return col.astype(dtype)


def part_files(run_dir) -> list[Path]:
    """The complete part files of a run (hidden temporary files excluded), sorted."""
    root = traffic_dir(run_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("actor=*/part-*.parquet") if _PART.match(p.name))


@dataclass(frozen=True)
class BadPart:
    """A part file that cannot be read as traffic: its path, why, and its rows if its footer says."""

    path: Path
    reason: str
    rows: int | None = None


_ACTOR_DIR = re.compile(r"^actor=(forward|backward)\.\d+\.\d+$")


def part_version(path: Path) -> tuple[int | None, str | None]:
    """``(schema version, None)`` of a traffic part (v0 or v1), or ``(None, why it is not one)``: its directory
    name, footer, version key (``VERSION_KEY``) and columns."""
    if not _ACTOR_DIR.match(path.parent.name):
        return None, f"its directory {path.parent.name!r} is not actor=<forward|backward>.<layer>.<shard>"
    try:
        meta = pq.read_metadata(path)  # the file's own key-value metadata (a stored Arrow schema may hide it)
        schema = meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError, ValueError) as err:
        return None, f"not a readable Parquet file ({one_line(err)})"
    key = (meta.metadata or {}).get(VERSION_KEY.encode())
    if key is not None and key != str(SCHEMA_VERSION).encode():
        return None, (f"schema version {key.decode(errors='replace')!r} in its metadata ({VERSION_KEY}): this "
                      f"distspike reads versions 0 to {SCHEMA_VERSION}")
    version, expected = (0, V0_SCHEMA) if key is None else (SCHEMA_VERSION, FILE_SCHEMA)
    why = _mismatch(schema, expected)
    return (None, why) if why else (version, None)


def _mismatch(schema: pa.Schema, expected: pa.Schema) -> str | None:
    """How a file's columns differ from ``expected`` (None: they do not)."""
    names, got = expected.names, {f.name: f.type for f in schema}
    missing = [n for n in names if n not in got]
    wrong = [f"{n}: {got[n]}" for n in names if n in got and got[n] != expected.field(n).type]
    extra = [n for n in got if n not in names]
    if not (missing or wrong or extra):
        return None
    parts = [f"missing {missing}" if missing else "", f"wrong types {wrong}" if wrong else "",
             f"unknown columns {extra}" if extra else ""]
    return "a foreign schema (" + "; ".join(p for p in parts if p) + ")"


def check_part(path: Path) -> str | None:
    """Why ``path`` is not a traffic part (of any schema version this reads), or None."""
    return part_version(path)[1]


def _warn_if_v0(directory: Path) -> None:
    """A resumed run whose actor directory holds schema v0 parts: its new parts are of another version."""
    last = max((p for p in directory.glob("part-*.parquet") if _PART.match(p.name)), default=None)
    if last is not None and part_version(last)[0] == 0:
        warnings.warn(f"traffic logs in {str(directory)!r} are of schema v0 (an older distspike); the parts "
                      f"added now are of v{SCHEMA_VERSION}: read_traffic reads both, pandas, pyarrow, polars and "
                      f"DuckDB only after `{UPGRADE_COMMAND.format(run=directory.parent.parent)}`",
                      RuntimeWarning, stacklevel=3)


def v0_parts(run_dir) -> list[Path]:
    """The run's part files of schema v0 (readable by ``read_traffic``; not by pandas, pyarrow, polars)."""
    return [p for p in part_files(run_dir) if part_version(p)[0] == 0]


def _footer_rows(path: Path) -> int | None:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError, ValueError):
        return None


def _dataset(files: list[Path], root: Path, schema: pa.Schema) -> ds.Dataset:
    import pyarrow.dataset as ds  # here, not at the top: it imports pandas (+53 MiB in a training process)
    partitioning = ds.partitioning(pa.schema([("actor", pa.string())]), flavor="hive")
    fmt = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(
        page_checksum_verification=True))
    return ds.dataset([str(p) for p in files], schema=schema, format=fmt, partitioning=partitioning,
                      partition_base_dir=str(root))


def _from_v0(table: pa.Table, columns: list[str]) -> pa.Table:
    """Rows of schema v0 as ``SCHEMA``: ``t_wall`` (float seconds) a timestamp; the tags v0 lacks "" (job -1)."""
    import pyarrow.compute as pc
    n, out = table.num_rows, []
    for name in columns:
        if name in ("routing", "rule"):
            out.append(pa.repeat(pa.scalar("", pa.string()), n))
        elif name == "job":
            out.append(pa.repeat(pa.scalar(-1, pa.int32()), n))
        elif name == "t_wall":
            out.append(pc.cast(pc.round(pc.multiply(table["t_wall"], 1e6)), pa.int64()).cast(WALL_TYPE))
        else:
            out.append(table[name])
    return pa.Table.from_arrays(out, schema=pa.schema([SCHEMA.field(c) for c in columns]))


def _read_version(version: int, files: list[Path], root: Path, columns: list[str]) -> pa.Table:
    if version == SCHEMA_VERSION:
        return _dataset(files, root, SCHEMA).to_table(columns=columns)
    table = _dataset(files, root, V0_SCHEMA).to_table(columns=[c for c in columns if c in V0_SCHEMA.names])
    return _from_v0(table, columns)


def _read(parts: list[tuple[Path, int]], root: Path, columns) -> pa.Table:
    """The rows of ``parts`` (``(path, schema version)``) as one table of ``SCHEMA`` (or its ``columns``)."""
    columns = SCHEMA.names if columns is None else list(columns)
    versions = sorted({v for _, v in parts})
    tables = [_read_version(v, [p for p, w in parts if w == v], root, columns) for v in versions]
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    if "direction" in columns:  # a value no recorder writes: the bytes were altered
        import pyarrow.compute as pc
        bad = pc.invert(pc.is_in(table["direction"], pa.array(DIRECTIONS)))
        if pc.any(bad).as_py():
            raise pa.ArrowInvalid("a direction value that is not forward/backward")
    return table


def _unreadable(parts: list[tuple[Path, int]], root: Path, columns) -> list[BadPart]:
    """The parts that fail to read on their own (after the dataset as a whole failed)."""
    bad = []
    for path, version in parts:
        try:
            _read([(path, version)], root, columns)
        except (pa.ArrowException, OSError, ValueError) as err:
            bad.append(BadPart(path, f"corrupt data ({one_line(err)})", _footer_rows(path)))
    return bad


def read_traffic_checked(run_dir, columns: list[str] | None = None,
                         skip_bad: bool = False) -> tuple[pa.Table, list[BadPart]]:
    """``read_traffic``, and the bad parts it skipped (only with ``skip_bad``; else the first one raises).

    Every part is checked before it is read: its directory name, its footer and its
    schema (``check_part``); the pages' checksums are verified while reading (parts
    written without checksums are read as they are), and a part that still fails to
    read is found by reading the parts one by one. So one bad part is named, and with
    ``skip_bad`` the others are read.
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
    checked = [(p, *part_version(p)) for p in files]
    bad = [BadPart(p, why, _footer_rows(p)) for p, _, why in checked if why]
    good = [(p, v) for p, v, why in checked if not why]
    try:
        table = _read(good, root, columns) if good else None
    except (pa.ArrowException, OSError, ValueError):
        bad += _unreadable(good, root, columns)
        good = [(p, v) for p, v in good if p not in {b.path for b in bad}]
        table = _read(good, root, columns) if good else None
    if bad and not skip_bad:
        more = f" (and {len(bad) - 1} more bad part(s))" if len(bad) > 1 else ""
        raise TrafficError(f"traffic part {str(bad[0].path)!r}: {bad[0].reason}{more}; "
                           f"distspike-traffic --skip-bad reads the other parts")
    if table is None:
        raise TrafficError(f"no readable traffic logs in {str(root)!r}: all {len(files)} part(s) are bad")
    return table, bad


def read_traffic(run_dir, columns: list[str] | None = None, skip_bad: bool = False) -> pa.Table:
    """All traffic rows of a run as one table (``SCHEMA``), hive-partitioned by ``actor``.

    ``columns`` reads only those columns. Raises ``TrafficError`` naming the directory when ``run_dir`` or its
    ``traffic/`` is missing, or holds no part file, and naming the part when one is not a traffic part or is
    corrupt; ``skip_bad`` reads the other parts instead (``read_traffic_checked`` says which were skipped).
    """
    return read_traffic_checked(run_dir, columns, skip_bad)[0]


# -- per-layer totals, as the runtime counts them ------------------------------------
#: the ``SpikeStats`` fields, in order
QUANTITIES = ("fwd", "err_in", "err_passed", "bwd_out")
_STAT_COLUMNS = ["module", "direction", "layer", "shard", "events_in", "events_out_pos", "events_out_neg"]


def _is(table: pa.Table, column: str, value: str) -> np.ndarray:
    import pyarrow.compute as pc
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
