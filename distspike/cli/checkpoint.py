"""Checkpoints: ``checkpoints/<stem>.npz`` (state) + ``<stem>.json`` (meta).

``<stem>`` names the position: ``epoch_0002`` after two whole epochs, and
``epoch_0002_plus_000000150`` after two epochs and 150 samples of the third (written
every ``checkpoint.every_samples`` samples). The ``.npz`` holds ``net.state_dict()``
(plain numpy arrays, read back with ``allow_pickle=False``); the JSON holds the
position, the learning curve so far, running totals, the traffic part files complete
at that point and the run's identity (``convert.identity``). Both are written to a
temporary name and moved into place with ``os.replace``, the JSON last: a checkpoint
is complete when its JSON exists, so a crash mid-write never leaves a checkpoint that
looks whole. Files are created with the user's umask.

On the Ray runtimes (format 4) the state is not one file but a directory
``<stem>.parts/`` with one ``<actor>.npz`` per shard actor, each written by that actor
(``runtime/shard_state.py``), and ``net.npz``; the JSON records each part's sha256
(``parts_sha256``) and is written by the driver once every part is in place. Both
layouts resume on every runtime: ``runtime=local`` reads a format-4 checkpoint whole;
a Ray run reads a format-4 one part by part in its actors (the driver checks the
hashes, names, shapes and dtypes first, reading no data), and a single ``.npz``
(``runtime=local``'s) through the driver.

The JSON also records the ``sha256`` of the ``.npz`` (``state_sha256``, format 3).
A run directory read back is data: ``newest_valid`` checks a checkpoint's JSON
(keys, types, ranges), the hash, and every array's name, shape and dtype against the
model being resumed (values finite), never unpickles, and falls back to the newest
checkpoint that passes, with a warning naming what was wrong with each one skipped.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import stat
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np

from distspike.cli.errors import UserError, one_line, write_failed
from distspike.runtime.loop import EpochRecord
from distspike.runtime.shard_state import SavedState

log = logging.getLogger("distspike.checkpoint")

CKPT_DIR = "checkpoints"
FORMAT = 3  # 3: the JSON records the .npz's sha256 (2: it does not)
PARTS_FORMAT = 4  # a directory of parts, one per shard actor, each with its sha256
_NAME = re.compile(r"^epoch_(\d+)(?:_plus_(\d+))?\.json$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: ``name -> (shape, dtype)`` of every array a checkpoint must hold; shape None: any 1-D length
Layout = dict[str, tuple[tuple[int, ...] | None, np.dtype]]
_FREE_LENGTH_MAX = 1 << 16  # bytes of a 1-D array of free length (an RNG state as JSON text)
_JSON_BYTES_MAX = 64 << 20


class CheckpointError(ValueError):
    """Why a checkpoint cannot be resumed from (one line)."""


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint: after ``epoch`` epochs and ``index`` samples of the next."""

    epoch: int
    state_path: Path
    meta: dict
    index: int = 0
    state: dict | None = None  # the validated arrays (``newest_valid``)

    def load_state(self) -> dict[str, np.ndarray]:
        """The saved ``state_dict`` (no pickles: object arrays are refused); a format-4 checkpoint
        is read whole, part by part."""
        if self.state_path.is_dir():
            out = {}
            for name in self.meta["parts_sha256"]:
                with np.load(self.state_path / f"{name}.npz", allow_pickle=False) as z:
                    out.update({f"{name}.{k}": z[k] for k in z.files})
            return out
        with np.load(self.state_path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def _paths(ckpt_dir: Path, epoch: int, index: int = 0) -> tuple[Path, Path]:
    stem = f"epoch_{epoch:04d}" + (f"_plus_{index:09d}" if index else "")
    return ckpt_dir / f"{stem}.npz", ckpt_dir / f"{stem}.json"


def parts_path(run_dir: Path, epoch: int, index: int = 0) -> Path:
    """Where the actors write the parts of the checkpoint at ``(epoch, index)`` (format 4)."""
    npz = _paths(Path(run_dir) / CKPT_DIR, epoch, index)[0]
    return npz.with_name(f"{npz.stem}.parts")


def _state_exists(ckpt_dir: Path, epoch: int, index: int) -> bool:
    npz = _paths(ckpt_dir, epoch, index)[0]
    return npz.exists() or npz.with_name(f"{npz.stem}.parts").is_dir()


def _replace_atomically(path: Path, write) -> None:
    """Call ``write(file)`` on a temp file beside ``path``, fsync, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as ex:
        tmp.unlink(missing_ok=True)
        if isinstance(ex, OSError):
            raise write_failed(ex, path) from ex
        raise


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save(run_dir: Path, epoch: int, state: dict[str, np.ndarray], meta: dict, keep: int = 0,
         index: int = 0) -> Path:
    """Write the checkpoint after ``epoch`` epochs and ``index`` samples; keep the newest ``keep`` (0 = all)."""
    ckpt_dir = Path(run_dir) / CKPT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    npz, js = _paths(ckpt_dir, epoch, index)
    if isinstance(state, SavedState):  # the actors wrote their parts already: the JSON completes it
        meta = {**meta, "format": PARTS_FORMAT, "epoch": epoch, "index": index, "state": state.dir.name,
                "parts_sha256": dict(state.sha256)}
    else:
        _replace_atomically(npz, lambda f: np.savez(f, **_plain(state)))
        meta = {**meta, "format": FORMAT, "epoch": epoch, "index": index, "state": npz.name,
                "state_sha256": sha256_file(npz)}
    text = json.dumps(meta, indent=1).encode()
    try:
        _replace_atomically(js, lambda f: f.write(text))
    except BaseException:
        _remove_state(ckpt_dir, epoch, index)  # no JSON: not a checkpoint; give its space back
        raise
    if keep:
        prune(ckpt_dir, keep)
    return npz


def _plain(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The state as plain numeric arrays; an object array (it would need pickle) is refused."""
    out = {k: np.asarray(v) for k, v in state.items()}
    bad = [k for k, v in out.items() if v.dtype.hasobject]
    if bad:
        raise TypeError(f"checkpoint state {bad} holds Python objects; only plain arrays are saved (no pickle)")
    return out


def complete_positions(ckpt_dir: Path) -> list[tuple[int, int]]:
    """``(epoch, index)`` of every complete checkpoint (JSON and state present), ascending."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), int(m.group(2) or 0)) for p in ckpt_dir.iterdir() if (m := _NAME.match(p.name))]
    return sorted(pos for pos in found if _state_exists(ckpt_dir, *pos))


def prune(ckpt_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (JSON first, so none looks complete)."""
    for pos in complete_positions(ckpt_dir)[:-keep]:
        _paths(ckpt_dir, *pos)[1].unlink(missing_ok=True)
        _remove_state(ckpt_dir, *pos)


def _remove_state(ckpt_dir: Path, epoch: int, index: int) -> None:
    """The state of checkpoint ``(epoch, index)``: its ``.npz`` and its parts directory, if any."""
    npz = _paths(ckpt_dir, epoch, index)[0]
    npz.unlink(missing_ok=True)
    parts = npz.with_name(f"{npz.stem}.parts")
    if parts.is_dir() and not parts.is_symlink():
        shutil.rmtree(parts, ignore_errors=True)


def latest(run_dir: Path) -> Checkpoint | None:
    """The newest complete checkpoint of ``run_dir`` whose JSON reads, or None."""
    ckpt_dir = Path(run_dir) / CKPT_DIR
    for epoch, index in reversed(complete_positions(ckpt_dir)):
        npz, js = _paths(ckpt_dir, epoch, index)
        try:
            meta = json.loads(js.read_text())
        except (OSError, ValueError):
            continue
        state_path = parts_path(run_dir, epoch, index) if meta.get("format") == PARTS_FORMAT else npz
        return Checkpoint(epoch, state_path, meta, index)
    return None


def _stem(epoch: int, index: int) -> str:
    return _paths(Path(), epoch, index)[0].stem


def json_positions(ckpt_dir: Path) -> list[tuple[int, int]]:
    """``(epoch, index)`` of every checkpoint JSON (complete or not), ascending."""
    if not ckpt_dir.is_dir():
        return []
    return sorted((int(m.group(1)), int(m.group(2) or 0)) for p in ckpt_dir.iterdir() if (m := _NAME.match(p.name)))


def newest_valid(run_dir: Path, layout: Layout, accept: Callable[[dict], None] = lambda meta: None,
                 what: str = "resume", whole: bool = True) -> Checkpoint | None:
    """The newest checkpoint of ``run_dir`` that validates, with its state; None if there is none at all.

    ``accept(meta)`` runs on a checkpoint's validated JSON and raises ``UserError`` when this
    run may not continue it (another config or data): that is the user's to fix, no fallback.
    Each newer checkpoint skipped is logged as one warning naming what is wrong with it; if
    none validates, ``UserError`` names the newest one's fault. ``whole=False`` (the Ray
    runtimes): a format-4 checkpoint's state is a ``SavedState`` for the actors to read,
    its parts checked here without reading their data.
    """
    ckpt_dir = Path(run_dir) / CKPT_DIR
    skipped: list[str] = []
    for epoch, index in reversed(json_positions(ckpt_dir)):
        try:
            ck = load(ckpt_dir, epoch, index, layout, accept, whole)
        except CheckpointError as ex:
            skipped.append(f"{_stem(epoch, index)}: {ex}")
            continue
        for why in skipped:
            log.warning("skipping checkpoint %s (falling back to %s)", why, ck.state_path.stem)
        return ck
    if not skipped:
        return None
    raise UserError(f"{what}: none of the {len(skipped)} checkpoint(s) in {str(ckpt_dir)!r} validates; "
                    f"the newest, {skipped[0]}")


def load(ckpt_dir: Path, epoch: int, index: int, layout: Layout,
         accept: Callable[[dict], None] = lambda meta: None, whole: bool = True) -> Checkpoint:
    """Read and validate one checkpoint (JSON, hash, arrays); ``CheckpointError`` says what is wrong."""
    npz, js = _paths(ckpt_dir, epoch, index)
    _check_file(js, _JSON_BYTES_MAX)
    try:
        meta = json.loads(js.read_bytes())
    except (OSError, ValueError) as ex:
        raise CheckpointError(f"{js.name} does not read as JSON ({one_line(str(ex))})") from None
    check_meta(meta, epoch, index, npz.name)
    accept(meta)
    if meta["format"] == PARTS_FORMAT:
        npz = ckpt_dir / meta["state"]
        state = read_parts(npz, meta["parts_sha256"], layout, whole)
    else:
        state = read_state(npz, meta.get("state_sha256"), layout)
    seen = int((state.net if isinstance(state, SavedState) else state)["net.samples_seen"])
    if seen != meta["samples_seen"]:
        raise CheckpointError(f"net.samples_seen={seen} in {npz.name} but "
                              f"samples_seen={meta['samples_seen']} in {js.name}")
    return Checkpoint(epoch, npz, meta, index, state)


def part_layouts(layout: Layout) -> dict[str, Layout]:
    """``layout`` split by actor (``forward.1.0``, ...; ``net`` for the driver's counters), keys without it."""
    out: dict[str, Layout] = {}
    for key, spec in layout.items():
        actor, field = key.rsplit(".", 1)
        out.setdefault(actor, {})[field] = spec
    return out


def read_parts(parts_dir: Path, hashes: dict, layout: Layout, whole: bool = True):
    """A format-4 state: every part checked (hash, names, shapes, dtypes; values too if ``whole``).

    ``whole``: the arrays, keys as in ``net.state_dict()``; else a ``SavedState`` for the
    actors to read (only ``net.npz`` is read here).
    """
    from distspike.runtime.shard_state import read_part
    st = parts_dir.lstat() if parts_dir.exists() or parts_dir.is_symlink() else None
    if st is None or not stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{parts_dir.name} is not a directory of parts (missing, or a link)")
    layouts = part_layouts(layout)
    if set(hashes) != set(layouts):
        raise CheckpointError(f"{parts_dir.name} has the parts of another model: "
                              f"{sorted(set(layouts) ^ set(hashes))[:4]} differ")
    state: dict[str, np.ndarray] = {}
    for name, sub in layouts.items():
        full = whole or name == "net"
        got = read_part(parts_dir / f"{name}.npz", hashes[name], sub, headers_only=not full)
        state.update({f"{name}.{k}": v for k, v in got.items()})
    return state if whole else SavedState(parts_dir, dict(hashes), state)


def read_state(npz: Path, sha256: str | None, layout: Layout) -> dict[str, np.ndarray]:
    """The arrays of ``npz`` after checking its hash and every name, shape, dtype and value (no pickles)."""
    _check_file(npz, sum(_member_bytes(shape, dtype) for shape, dtype in layout.values()) + 4096)
    try:
        data = npz.read_bytes()
    except OSError as ex:
        raise CheckpointError(f"{npz.name} cannot be read ({one_line(str(ex))})") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise CheckpointError(f"{npz.name} does not match its recorded sha256 (altered or damaged since it was saved)")
    try:
        z = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as ex:  # the bytes are data from disk: any failure to parse them is a bad checkpoint
        raise _unreadable(npz, ex) from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{npz.name} is a single array, not an .npz archive")
    with z:
        check_names(npz.name, z.files, layout)
        _check_sizes(npz.name, z, layout)
        try:
            state = {k: z[k] for k in z.files}
        except Exception as ex:
            raise _unreadable(npz, ex) from None
    for name, a in state.items():
        check_array(npz.name, name, a, layout[name])
    return state


def _check_file(path: Path, max_bytes: int) -> None:
    """A plain file (no link, device or FIFO: read only what a checkpoint can be) of at most ``max_bytes``."""
    try:
        st = path.lstat()
    except OSError as ex:
        raise CheckpointError(f"{path.name} cannot be read ({one_line(str(ex))})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path.name} is not a regular file (a link, directory or device)")
    if st.st_size > max_bytes:
        raise CheckpointError(f"{path.name} has {st.st_size} bytes, more than a checkpoint of this model "
                              f"({max_bytes} at most)")


def _member_bytes(shape, dtype: np.dtype) -> int:
    """The most bytes the ``.npy`` member of one array may take (data plus header and zip entries)."""
    return (_FREE_LENGTH_MAX if shape is None else math.prod(shape) * dtype.itemsize) + 4096


def _unreadable(npz: Path, ex: Exception) -> CheckpointError:
    return CheckpointError(f"{npz.name} does not read as an .npz of plain arrays ({type(ex).__name__}: "
                           f"{one_line(str(ex))})")


def check_names(file: str, names: list[str], layout: Layout) -> None:
    """The archive holds exactly the arrays of ``layout``."""
    missing, extra = sorted(set(layout) - set(names)), sorted(set(names) - set(layout))
    if missing or extra:
        parts = ([f"missing {missing[:4]}" + (" ..." if len(missing) > 4 else "")] if missing else []) + \
                ([f"unexpected {extra[:4]}" + (" ..." if len(extra) > 4 else "")] if extra else [])
        raise CheckpointError(f"{file} does not hold the arrays of this model: " + ", ".join(parts))


def _check_sizes(file: str, z, layout: Layout) -> None:
    """No member is larger than its array can be (before anything is decompressed)."""
    for name in z.files:
        limit = _member_bytes(*layout[name])
        if z.zip.getinfo(f"{name}.npy").file_size > limit:
            raise CheckpointError(f"{file}: array {name!r} is larger than this model's ({limit} bytes at most)")


def check_array(file: str, name: str, a: np.ndarray, expected: tuple[tuple[int, ...] | None, np.dtype]) -> None:
    """``a`` has the expected dtype and shape (any length where the shape is None) and finite values."""
    shape, dtype = expected
    if a.dtype != dtype:
        raise CheckpointError(f"{file}: array {name!r} has dtype {a.dtype.str} but this model needs {dtype.str}")
    if (shape is None and a.ndim != 1) or (shape is not None and a.shape != tuple(shape)):
        want = "1-D" if shape is None else str(tuple(shape))
        raise CheckpointError(f"{file}: array {name!r} has shape {a.shape} but this model needs {want}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise CheckpointError(f"{file}: array {name!r} holds {int((~np.isfinite(a)).sum())} non-finite value(s)")
    if name.endswith(".rng"):
        _check_rng(file, name, a)


def _check_rng(file: str, name: str, a: np.ndarray) -> None:
    """An RNG state: the JSON text of a PCG64 bit generator's state, as numpy accepts it."""
    try:
        st = json.loads(bytes(a).decode())
        if not isinstance(st, dict) or st.get("bit_generator") != "PCG64":
            raise ValueError("not a PCG64 state")
        np.random.PCG64().state = st
    except (ValueError, TypeError, KeyError, OverflowError) as ex:
        raise CheckpointError(f"{file}: array {name!r} is not an RNG state ({one_line(str(ex))})") from None


_META_KEYS = {"format", "config", "data_sha256", "curve", "samples_seen", "traffic_parts", "ray_calls",
              "train_seconds", "wall_time_s", "epoch", "index", "state", "state_sha256"}
_CURVE_KEYS = [f.name for f in fields(EpochRecord)]


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _seconds(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def check_meta(meta, epoch: int, index: int, npz_name: str) -> None:
    """The JSON of checkpoint ``(epoch, index)``: its keys, their types and ranges, its position and state file."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"the JSON is a {type(meta).__name__}, not an object")
    fmt = meta.get("format")
    allowed = _META_KEYS - {"state_sha256"} | {"parts_sha256"} if fmt == PARTS_FORMAT else _META_KEYS
    need = allowed - ({"state_sha256"} if fmt == 2 else set())
    missing, extra = sorted(need - set(meta)), sorted(set(meta) - allowed)
    if fmt not in (2, FORMAT, PARTS_FORMAT) or missing or extra:
        raise CheckpointError(f"the JSON is not a checkpoint of format 2, {FORMAT} or {PARTS_FORMAT} (format={fmt!r}"
                              + (f", missing keys {missing}" if missing else "")
                              + (f", unexpected keys {extra}" if extra else "") + ")")
    bad = _bad_meta_values(meta, epoch, index, npz_name)
    if bad:
        raise CheckpointError(f"the JSON has bad values: {'; '.join(bad)}")


def _bad_meta_values(meta: dict, epoch: int, index: int, npz_name: str) -> list[str]:
    checks = {
        "epoch": _count(meta["epoch"]) and meta["epoch"] == epoch,
        "index": _count(meta["index"]) and meta["index"] == index,
        "state": meta["state"] == (npz_name[:-4] + ".parts" if meta["format"] == PARTS_FORMAT else npz_name),
        "config": isinstance(meta["config"], dict),
        "data_sha256": isinstance(meta["data_sha256"], str) and bool(_HEX64.match(meta["data_sha256"])),
        "state_sha256": isinstance(meta.get("state_sha256", "0" * 64), str)
        and bool(_HEX64.match(meta.get("state_sha256", "0" * 64))),
        "parts_sha256": _good_hashes(meta.get("parts_sha256", {})),
        "samples_seen": _count(meta["samples_seen"]), "ray_calls": _count(meta["ray_calls"]),
        "train_seconds": _seconds(meta["train_seconds"]), "wall_time_s": _seconds(meta["wall_time_s"]),
        "traffic_parts": _good_parts(meta["traffic_parts"]), "curve": _good_curve(meta["curve"], epoch),
    }
    return [f"{k}={_short(meta.get(k))}" for k, ok in checks.items() if not ok]


def _good_hashes(hashes) -> bool:
    """Part name -> hex sha256; names are actor names (``forward.1.0``) or ``net``, never paths."""
    return isinstance(hashes, dict) and all(
        isinstance(k, str) and re.fullmatch(r"net|(forward|backward)\.\d+\.\d+", k) and isinstance(v, str)
        and bool(_HEX64.match(v)) for k, v in hashes.items())


def _short(v) -> str:
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _good_parts(parts) -> bool:
    """None (not recorded) or relative ``traffic/...`` paths that stay inside the run directory."""
    if parts is None:
        return True
    return isinstance(parts, list) and all(
        isinstance(p, str) and p.startswith("traffic/") and ".." not in p.split("/") and "\0" not in p
        for p in parts)


def _good_curve(curve, epoch: int) -> bool:
    """One learning-curve row per completed epoch, numbered 1..epoch, finite non-negative values."""
    if not isinstance(curve, list) or len(curve) != epoch:
        return False
    return all(isinstance(row, dict) and list(row) == _CURVE_KEYS and _count(row["epoch"]) and row["epoch"] == k + 1
               and all(_seconds(row[key]) for key in _CURVE_KEYS) for k, row in enumerate(curve))


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) and v else {key: v})
    return out


def identity(net, data: dict, shards: int) -> dict:
    """What a checkpoint must share with a run that continues it (JSON-ready): its ``config``.

    Everything that changes the numbers: the ``NetConfig`` ``net`` (model, training rule
    without the epoch count, routing, seed), the data samples (``data``: the data spec's
    identity) and the sharding (module state is per shard).
    """
    net_d = asdict(net)
    net_d["training"].pop("epochs")
    net_d["model"]["sizes"] = list(net_d["model"]["sizes"])
    return {**net_d, "data": data, "runtime": {"shards": shards}}


def check_compatible(saved: dict, current: dict, run_dir: Path) -> None:
    """Raise ``UserError`` listing every key where the checkpoint and this run differ."""
    a, b = _flatten(json.loads(json.dumps(saved))), _flatten(json.loads(json.dumps(current)))
    diffs = [f"{k}={b.get(k)!r} (checkpoint: {a.get(k)!r})" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if diffs:
        raise UserError(f"resume={str(run_dir)!r} is incompatible with this config: " + "; ".join(diffs)
                        + " (training.epochs, data.root, logging and the runtime kind/placement may differ)")
