"""``distspike-traffic --upgrade RUN_DIR``: rewrite a run's schema v0 traffic parts as the current schema.

Schema v0 (``traffic.V0_SCHEMA``, docs/traffic.md "Schema versions") reads with ``read_traffic`` but not
with pandas, ``pq.read_table``, ``pyarrow.dataset``, polars (``actor`` is a file column and the hive key;
``--plot`` wrote ``plots/`` inside ``traffic/``). The upgrade turns each v0 part into a v1 part with the same
rows, in the same order:

- ``actor`` leaves the file (it stays the directory's hive key; it must equal the directory's name);
- ``t_wall``: float seconds -> ``timestamp[us, UTC]`` (rounded to the microsecond, as ``read_traffic`` does);
- the run tags v0 lacks are filled as ``read_traffic`` fills them on reading v0: ``routing = rule = ""``,
  ``job = -1`` (unknown); ``run_id`` stays what v0 wrote (the run directory's name).

No data is lost if it is interrupted: every part is checked before anything changes (a part that is not
v0 or v1 stops it, nothing rewritten); each new part is written outside ``traffic/``
(``RUN_DIR/.traffic-upgrade.<actor>.part-<seq>.parquet.tmp``), fsync'ed, its row count checked, and only
then renamed over its v0 part (``os.replace``: atomic, per part). An interrupted upgrade leaves some parts
v1 and the others v0: ``read_traffic`` reads such a directory (it reads both), and running the upgrade
again finishes it (it first deletes its own leftover temporary files). The v0 writer's leftover hidden
temporary parts in the actor directories (never complete) are deleted, and a ``traffic/plots/`` of v0's
``--plot`` is moved to ``RUN_DIR/plots/`` (``RUN_DIR/plots-v0/`` if that exists). Run it when no run
writes to the directory.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distspike.logs.traffic import (_TEMP_V0, FILE_SCHEMA, WALL_TYPE, TrafficError, one_line, part_files,
                                    part_version, traffic_dir, write_part_file)

__all__ = ["Upgrade", "upgrade_run", "v1_table"]

_TEMP = re.compile(r"^\.traffic-upgrade\..+\.part-\d{6,}\.parquet\.tmp$")
PLOTS = "plots"


@dataclass(frozen=True)
class Upgrade:
    """What ``upgrade_run`` did: parts and rows rewritten, parts already v1, temporary files deleted, and
    where v0's ``traffic/plots`` went (None: there was none)."""

    parts: int
    rows: int
    current: int
    temps_removed: int
    plots: Path | None

    def line(self, run_dir) -> str:
        """One line saying so."""
        if not self.parts:
            head = f"{run_dir}: nothing to upgrade, its {self.current} traffic part(s) are schema v1"
        else:
            head = (f"{run_dir}: upgraded {self.parts} schema v0 traffic part(s) ({self.rows} rows) to v1"
                    f"{f', {self.current} already v1' if self.current else ''}")
        extra = [f"moved traffic/{PLOTS} to {self.plots}"] if self.plots else []
        extra += [f"deleted {self.temps_removed} stale temporary part(s)"] if self.temps_removed else []
        return "; ".join([head, *extra])


def v1_table(v0: pa.Table, actor: str) -> pa.Table:
    """The rows of a v0 part (``V0_SCHEMA``) of actor ``actor`` as ``FILE_SCHEMA``, same order."""
    if v0.num_rows and not pc.all(pc.equal(v0["actor"], actor)).as_py():
        raise TrafficError(f"its actor column does not match its directory actor={actor}")
    n, columns = v0.num_rows, []
    for field in FILE_SCHEMA:
        if field.name in ("routing", "rule"):
            columns.append(pa.repeat(pa.scalar("", pa.string()), n))
        elif field.name == "job":
            columns.append(pa.repeat(pa.scalar(-1, pa.int32()), n))
        elif field.name == "t_wall":
            micros = pc.cast(pc.round(pc.multiply(v0["t_wall"], 1e6)), pa.int64())
            columns.append(micros.cast(WALL_TYPE))
        else:
            columns.append(v0[field.name].cast(field.type))
    return pa.Table.from_arrays([pa.chunked_array(c) if isinstance(c, pa.Array) else c for c in columns],
                                schema=FILE_SCHEMA)


def _checked_parts(run_dir: Path) -> list[tuple[Path, int]]:
    """Every part with its version; TrafficError (nothing changed yet) at the first that is neither."""
    root = traffic_dir(run_dir)
    if not run_dir.is_dir():
        raise TrafficError(f"run directory {str(run_dir)!r} does not exist")
    if not root.is_dir():
        raise TrafficError(f"no traffic logs: {str(root)!r} does not exist")
    parts = []
    for path in part_files(run_dir):
        version, why = part_version(path)
        if why:
            raise TrafficError(f"traffic part {str(path)!r}: {why}; nothing was upgraded")
        parts.append((path, version))
    if not parts:
        raise TrafficError(f"no traffic logs: {str(root)!r} holds no actor=*/part-*.parquet file")
    return parts


def _drop_temps(run_dir: Path) -> int:
    """Delete an interrupted upgrade's temporary files and the v0 writer's hidden temporary parts."""
    stale = [run_dir / e for e in os.listdir(run_dir) if _TEMP.match(e)]
    stale += [p for p in traffic_dir(run_dir).glob("actor=*/.part-*") if _TEMP_V0.match(p.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _upgrade_part(run_dir: Path, path: Path) -> int:
    """Rewrite one v0 part as v1 (temp outside ``traffic/``, fsync, rows checked, atomic rename); its rows."""
    actor = path.parent.name.removeprefix("actor=")
    try:
        v1 = v1_table(pq.ParquetFile(path).read(), actor)
    except (pa.ArrowException, OSError, ValueError) as err:  # TrafficError too: the actor column differs
        raise TrafficError(f"traffic part {str(path)!r}: not upgraded ({one_line(err)}); the parts before it "
                           f"are v1 now, it and those after it unchanged") from None
    temp = run_dir / f".traffic-upgrade.{actor}.{path.name}.tmp"
    try:
        write_part_file(v1, temp)
        if pq.read_metadata(temp).num_rows != pq.read_metadata(path).num_rows:
            raise TrafficError(f"traffic part {str(path)!r}: its rewritten part has other rows; it is unchanged")
        os.replace(temp, path)
    except OSError as err:  # a full disk: the v0 part stays
        raise TrafficError(f"traffic part {str(path)!r}: cannot write its v1 part ({one_line(err)}); it is "
                           f"unchanged") from None
    finally:
        temp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return v1.num_rows


def _move_plots(run_dir: Path) -> Path | None:
    """v0's ``--plot`` wrote ``traffic/plots/``, which pyarrow.dataset and polars read as data: move it out."""
    old = traffic_dir(run_dir) / PLOTS
    if not old.is_dir():
        return None
    new = run_dir / PLOTS if not (run_dir / PLOTS).exists() else run_dir / f"{PLOTS}-v0"
    if new.exists():
        raise TrafficError(f"{str(old)!r} cannot be moved out of the dataset: {str(new)!r} exists")
    os.replace(old, new)
    return new


def upgrade_run(run_dir) -> Upgrade:
    """Rewrite the schema v0 parts of ``run_dir`` as v1 (see the module docstring); ``Upgrade`` says what."""
    run_dir = Path(run_dir)
    parts = _checked_parts(run_dir)
    removed = _drop_temps(run_dir)
    old = [p for p, v in parts if v == 0]
    rows = sum(_upgrade_part(run_dir, p) for p in old)
    return Upgrade(len(old), rows, len(parts) - len(old), removed, _move_plots(run_dir))

