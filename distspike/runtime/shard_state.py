"""A shard's state on disk: every shard actor writes and reads its own part of a state.

So no process ever holds the whole model: a state (a checkpoint, or the restore
point of actor recovery) is a directory ``<stem>.parts/`` holding one ``<actor>.npz``
per shard actor, written and read by that actor, and ``net.npz`` (the driver's two
counters). Each part is a plain ``.npz`` (no pickles) of the arrays of
``Shell.state()``, keys without the actor prefix, written to a temporary name and
moved into place, its sha256 returned to the driver, which records it.

Reading a part checks what ``cli.checkpoint`` checks for a whole state (a regular file
no larger than the part can be, the sha256, every array's name, shape and dtype,
finite values, RNG states) and streams the weight block straight into the module's
own array: a shard restores with no second copy of its block.

Storage (``runtime.storage``): with ``shared`` the actors write into the run directory
as the driver names it, so it must be on a filesystem that every node mounts at the
same path (``docs/cluster.md``). Each state directory holds a token the driver writes
first; an actor that does not see it refuses with one line naming its node
(``StorageError``) before writing anything. With ``collect`` each actor writes its part
on its own node and the driver takes it into the state directory (``ray_storage.py``).
"""
from __future__ import annotations

import hashlib
import secrets
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distspike.cli.errors import UserError

TOKEN = ".driver-token"  # written by the driver into each state directory before the actors write
NET_PART = "net"  # the driver's counters (``net.samples_seen``, ``net.input_spikes``)
_CHUNK = 16 << 20  # bytes read or checked at a time
_BIG = ("W", "WT")  # a module's weight arrays: streamed into place


class StorageError(UserError):
    """An actor cannot reach the state directory the driver named (nodes do not share the run dir)."""


@dataclass
class SavedState:
    """A state on disk: ``dir/<actor>.npz`` per shard actor and ``dir/net.npz``; ``sha256`` per part."""

    dir: Path
    sha256: dict[str, str]
    net: dict[str, np.ndarray] = field(default_factory=dict)  # the counters, also in net.npz
    scratch: bool = False  # a restore point only (not a checkpoint): removed when replaced

    def part(self, name: str) -> Path:
        return self.dir / f"{name}.npz"


# -- one part: write, read (pure numpy; no Ray) -------------------------------------
def write_part(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """Write ``arrays`` as an ``.npz`` at ``path`` (temp name, fsync, ``os.replace``); its sha256."""
    from distspike.cli.checkpoint import _plain, _replace_atomically, sha256_file
    _replace_atomically(Path(path), lambda f: np.savez(f, **_plain(arrays)))
    return sha256_file(Path(path))


def expected_layout(state: dict[str, np.ndarray]) -> dict[str, tuple]:
    """``key -> (shape, dtype)`` of a live shard state; an RNG state's length is free (None)."""
    return {k: (None if k == "rng" else tuple(np.shape(v)), np.asarray(v).dtype) for k, v in state.items()}


def read_part(path: Path, sha256: str, layout: dict[str, tuple], into: dict[str, np.ndarray] | None = None,
              headers_only: bool = False) -> dict[str, np.ndarray]:
    """The arrays of part ``path`` after checking its hash and every name, shape, dtype and value.

    Arrays named in ``into`` are read straight into those arrays (no second copy: a part
    found bad after that leaves them overwritten, and the run stops); the others are returned. ``headers_only``: check the file, hash, names, shapes and dtypes
    without reading any data (what the driver checks before it chooses a checkpoint).
    Raises ``CheckpointError`` naming the file and what is wrong.
    """
    from distspike.cli.checkpoint import CheckpointError, _check_file, _member_bytes, check_names
    path, into = Path(path), into or {}
    _check_file(path, sum(_member_bytes(s, d) for s, d in layout.values()) + 4096)
    if _sha256(path) != sha256:
        raise CheckpointError(f"{_label(path)} does not match its recorded sha256 (altered or damaged since it was saved)")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as ex:
        raise CheckpointError(f"{_label(path)} does not read as an .npz ({type(ex).__name__}: {ex})") from None
    with zf:
        members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
        if len(members) != len(zf.namelist()):
            raise CheckpointError(f"{_label(path)} holds members that are not arrays")
        check_names(_label(path), list(members), layout)
        return {name: a for name in sorted(members)
                if (a := _read_member(zf, members[name], _label(path), name, layout[name], into.get(name),
                                      headers_only)) is not None}


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _read_member(zf, member: str, file: str, name: str, expected: tuple, target, headers_only: bool):
    """One array of a part: header checked against ``expected``; data into ``target`` or returned."""
    from distspike.cli.checkpoint import CheckpointError, _check_rng, _member_bytes, check_array
    if zf.getinfo(member).file_size > _member_bytes(*expected):
        raise CheckpointError(f"{file}: array {name!r} is larger than this model's")
    try:
        with zf.open(member) as f:
            shape, dtype = _header(f, file, name)
            _check_header(file, name, shape, dtype, expected)
            if headers_only:
                return None
            if target is not None:
                _read_into(f, target, file, name)
                _check_finite(file, name, target)
                return None
            n = int(np.prod(shape)) * dtype.itemsize
            data = f.read(n)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as ex:
        raise CheckpointError(f"{file}: array {name!r} does not read ({type(ex).__name__}: {ex})") from None
    if len(data) != n:
        raise CheckpointError(f"{file}: array {name!r} is shorter than its header says")
    a = np.frombuffer(data, dtype).reshape(shape).copy()
    check_array(file, name, a, expected)
    if name == "rng":  # (``check_array`` recognises an RNG state by its prefixed name)
        _check_rng(file, name, a)
    return a


def _header(f, file: str, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an ``.npy`` stream (C order, plain dtype only)."""
    from distspike.cli.checkpoint import CheckpointError
    fmt = np.lib.format
    version = fmt.read_magic(f)
    shape, fortran, dtype = fmt.read_array_header_1_0(f) if version == (1, 0) else fmt.read_array_header_2_0(f)
    if fortran or dtype.hasobject:
        raise CheckpointError(f"{file}: array {name!r} is {'Fortran-ordered' if fortran else 'of Python objects'}")
    return tuple(shape), dtype


def _check_header(file: str, name: str, shape, dtype, expected: tuple) -> None:
    from distspike.cli.checkpoint import CheckpointError
    want_shape, want_dtype = expected
    if dtype != want_dtype:
        raise CheckpointError(f"{file}: array {name!r} has dtype {dtype.str} but this model needs {want_dtype.str}")
    if (want_shape is None and len(shape) != 1) or (want_shape is not None and shape != tuple(want_shape)):
        raise CheckpointError(f"{file}: array {name!r} has shape {shape} but this model needs "
                              f"{'1-D' if want_shape is None else tuple(want_shape)}")


def _read_into(f, target: np.ndarray, file: str, name: str) -> None:
    """Fill ``target`` (C-ordered) from the rest of the stream, ``_CHUNK`` bytes at a time."""
    from distspike.cli.checkpoint import CheckpointError
    view = memoryview(target.reshape(-1).view(np.uint8))
    at = 0
    while at < len(view):
        n = f.readinto(view[at:at + _CHUNK])
        if not n:
            raise CheckpointError(f"{file}: array {name!r} is shorter than its header says")
        at += n


def _check_finite(file: str, name: str, a: np.ndarray) -> None:
    """Finite values, checked a chunk of elements at a time (no temporary the size of the block)."""
    from distspike.cli.checkpoint import CheckpointError
    if a.dtype.kind != "f":
        return
    flat, step = a.reshape(-1), max(1, _CHUNK // a.dtype.itemsize)
    bad = sum(int((~np.isfinite(flat[k:k + step])).sum()) for k in range(0, flat.size, step))
    if bad:
        raise CheckpointError(f"{file}: array {name!r} holds {bad} non-finite value(s)")


# -- a shard actor's side ------------------------------------------------------------
@dataclass(frozen=True)
class SeededInit:
    """How a shard actor makes its own weight block: ``init_weights(sizes, w_init, seed)``'s, sliced."""

    sizes: tuple[int, ...]
    w_init: float
    seed: int


def shard_module(kind: str, spec, num, weights):
    """The module of one shard actor from ``weights``: its block (an array, copied), a ``SeededInit``
    (the actor draws its own block, bit-identical to the in-process init), or the block's shape
    (zeros: a revived actor, into which a state is loaded next)."""
    from distspike.core.network import init_block
    from distspike.runtime.shell import make_module
    if isinstance(weights, np.ndarray):
        return make_module(kind, spec, num, weights)
    fwd = kind == "forward"
    rows, cols = ((0, spec.n_in), (spec.lo, spec.hi)) if fwd else ((spec.lo, spec.hi), (0, spec.n_out))
    if isinstance(weights, SeededInit):
        block = init_block(weights.sizes, weights.w_init, weights.seed, spec.layer, rows, cols, num.encode,
                           num.dtype, transposed=not fwd)
    else:  # (n_in, nb) forward, (n_out, nb) backward: the module's own layout
        block = np.zeros((rows[1] - rows[0], cols[1] - cols[0]) if fwd else (cols[1] - cols[0], rows[1] - rows[0]),
                         num.dtype)
    return make_module(kind, spec, num, block, own=True)


def save_shell(shell, path: str, token: str) -> str:
    """Write ``shell``'s state as the part ``path``; its sha256. ``StorageError`` if this node
    does not see the driver's state directory (its token)."""
    _check_token(Path(path).parent, token)
    return write_part(Path(path), shell.state())


def load_shell(shell, path: str, sha256: str) -> None:
    """Check part ``path`` against ``shell``'s own layout and load it, the weights in place."""
    state = shell.state()
    layout = expected_layout(state)
    targets = {k: state[k] for k in _BIG if k in state}
    loaded = read_part(Path(path), sha256, layout, into=targets)
    shell.load_state({**loaded, **targets})


def process_memory() -> dict:
    """``{"rss": ..., "peak": ...}``: this process's ``VmRSS`` and ``VmHWM`` in bytes (Linux)."""
    with open("/proc/self/status") as f:
        kb = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f) if k in ("VmRSS", "VmHWM")}
    return {"rss": kb["VmRSS"] << 10, "peak": kb["VmHWM"] << 10}


def _check_token(parts_dir: Path, token: str) -> None:
    try:
        seen = (parts_dir / TOKEN).read_text()
    except OSError:
        seen = None
    if seen != token:
        import socket
        raise StorageError(f"node {socket.gethostname()} ({_node_ip()}) does not see the state directory "
                           f"{str(parts_dir)!r} the driver wrote: the run directory must be on a filesystem "
                           f"every node mounts at the same path (docs/cluster.md)")


def _node_ip() -> str:
    try:
        import ray
        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - only for the message
        return "unknown address"


# -- the driver's side ---------------------------------------------------------------
def new_state_dir(parts_dir: Path) -> str:
    """Create ``parts_dir`` afresh with a new token in it; the token."""
    parts_dir = Path(parts_dir)
    if parts_dir.with_suffix(".json").exists():  # a complete checkpoint: never written over
        raise FileExistsError(f"{parts_dir} belongs to the complete checkpoint {parts_dir.with_suffix('.json').name}")
    if parts_dir.exists():  # the parts of a checkpoint that never completed
        shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True)
    token = secrets.token_hex(16)
    (parts_dir / TOKEN).write_text(token)
    return token


def write_net_part(saved: SavedState) -> None:
    """The driver's counters as ``net.npz``; its hash joins the others."""
    saved.sha256[NET_PART] = write_part(saved.part(NET_PART), {k.split(".", 1)[1]: v for k, v in saved.net.items()})


def read_net_part(saved: SavedState) -> dict[str, np.ndarray]:
    """``net.samples_seen`` and ``net.input_spikes`` from ``net.npz`` (checked)."""
    i64 = np.dtype(np.int64)
    got = read_part(saved.part(NET_PART), saved.sha256[NET_PART], {"samples_seen": ((), i64), "input_spikes": ((), i64)})
    return {f"net.{k}": v for k, v in got.items()}


def remove(saved: SavedState | None) -> None:
    """Delete a scratch restore point (a checkpoint's parts are pruned with their JSON)."""
    if saved is not None and saved.scratch:
        shutil.rmtree(saved.dir, ignore_errors=True)



# -- Ray: every actor writes / reads its own part ------------------------------------
def save_actors(actors: dict, parts_dir: Path, token: str) -> dict[str, str]:
    """Each actor writes its part into ``parts_dir`` at once; ``actor -> sha256``."""
    import ray
    refs = {n: a.save_part.remote(str(Path(parts_dir) / f"{n}.npz"), token) for n, a in actors.items()}
    return dict(zip(refs, _get(list(refs.values()))))


def load_actors(actors: dict, saved: SavedState, next_seq: dict[str, int], ship=None) -> None:
    """Each actor checks and loads its part of ``saved``; numbering restarts at ``next_seq``.

    ``ship(name, actor, path)`` (``runtime.storage=collect``): sends an actor its part before it loads it.
    """
    missing = sorted(set(actors) - set(saved.sha256))
    if missing:
        from distspike.cli.checkpoint import CheckpointError
        raise CheckpointError(f"{saved.dir.name} has no part for actor(s) {missing[:4]}")
    refs = []
    for n, a in actors.items():
        if ship is not None:
            ship(n, a, saved.part(n))
        refs.append(a.load_part.remote(str(saved.part(n)), saved.sha256[n], next_seq[n]))
    _get(refs)


def _get(refs: list) -> list:
    """``ray.get``; a part an actor found bad, or a directory it cannot see, re-raised as itself."""
    import ray
    from distspike.cli.checkpoint import CheckpointError
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, (CheckpointError, StorageError)):
            raise cause from None
        raise


# -- a whole net ---------------------------------------------------------------------
def save_net(net, parts_dir: Path, scratch: bool = False) -> SavedState:
    """``net``'s state written by its actors into ``parts_dir`` (made afresh), plus ``net.npz``."""
    token = new_state_dir(parts_dir)
    try:
        net.backend.send_counts()
        saved = SavedState(Path(parts_dir), net.backend.save_parts(Path(parts_dir), token),
                           {"net.samples_seen": np.array(net.samples_seen, np.int64),
                            "net.input_spikes": np.array(net.scheduler.input_spikes, np.int64)}, scratch)
        write_net_part(saved)
    except BaseException:
        shutil.rmtree(parts_dir, ignore_errors=True)  # not a state: give its space back
        raise
    return saved


def load_net(net, saved: SavedState) -> None:
    """Load ``saved`` into ``net``'s actors (each reads its own part) and its counters."""
    net.backend.load_parts(saved)
    counters = saved.net or read_net_part(saved)
    net.samples_seen = int(counters["net.samples_seen"])
    net.scheduler.input_spikes = int(counters["net.input_spikes"])
