"""Node-local storage of a Ray run (``runtime.storage=collect``): files moved in checked chunks.

On a cluster whose nodes do not share a filesystem, a shard actor cannot write into the
driver's run directory. With ``collect`` each actor writes its checkpoint parts and its
traffic parts into a directory of its own under its node's Ray temp dir::

    <node temp dir>/distspike-collect/<run key>/<actor>/
        traffic/actor=<actor>/part-<seq>.parquet   (its TrafficRecorder's run dir is this one)
        state/<stem>.parts/<actor>.npz             (a part it wrote, until the driver took it)
        incoming/<stem>.parts/<actor>.npz          (a part the driver sent it, until it is loaded)

and the driver moves the files through Ray, ``chunk`` bytes per call, one file at a time
(``ray_storage.py``): at every flush (checkpoints, epoch ends, recovery snapshots) and at
the end it takes the finished parts into the run directory, in the very layout the actors
write with ``shared`` (``resume=`` and ``runtime=local`` read it as they read any run), and
for a restore or a resume it sends each actor its part. Every file is checked against the
sha256 its writer reported (``pull``; the actor checks what it loads as ever, ``read_part``)
and lands under a temporary name that is renamed into place only once it matched, so a run
directory never holds a partial or mismatched file. The driver holds at most a chunk or two:
its memory does not grow with the layer width.

This module has no Ray: the driver's side takes the chunks as an iterator, the actor's side
reads and writes paths under its root.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from distspike.cli.errors import UserError

CHUNK = 8 << 20  # bytes per Ray call when a file is moved (two at most in the driver at a time)
ROOT = "distspike-collect"  # under a node's Ray temp dir
SHARED, COLLECT, PENDING = "shared", "collect", "pending"  # PENDING: auto, until the driver has probed
PROBE = ".storage-probe"  # runtime.storage=auto: the token file every actor looks for in the run dir
_PART = re.compile(r"^part-\d{6,}\.parquet$")


class CollectError(UserError):
    """A file taken from (or sent to) an actor does not match the sha256 its writer reported."""


@dataclass(frozen=True)
class NodeStore:
    """Where an actor writes its parts: ``mode`` shared (``run_dir``) or collect (its node's temp dir,
    ``<ROOT>/<key>/<actor>``); PENDING: not yet known (``auto`` before the probe), nothing is written."""

    mode: str
    run_dir: str | None
    key: str

    @property
    def collect(self) -> bool:
        return self.mode == COLLECT


def actor_root(temp_dir: str, key: str, actor: str) -> Path:
    """An actor's own directory on its node."""
    return Path(temp_dir) / ROOT / key / actor


def node_rel(kind: str, parts_file) -> str:
    """``state/<stem>.parts/<actor>.npz`` (``kind`` state or incoming) for the run-dir path ``parts_file``."""
    p = Path(parts_file)
    return f"{kind}/{p.parent.name}/{p.name}"


def traffic_rel(actor: str, part: str) -> str:
    return f"traffic/actor={actor}/{part}"


def is_traffic_rel(actor: str, rel: str) -> bool:
    """Whether ``rel`` (reported by actor ``actor``) names one of its own traffic parts."""
    head, _, name = rel.rpartition("/")
    return head == f"traffic/actor={actor}" and bool(_PART.match(name))


def next_seq(run_dir, actor: str) -> int:
    """One past the highest traffic part number of ``actor`` in ``run_dir`` (0 if none): where its
    node-local recorder starts, so collected parts never meet an older name."""
    if run_dir is None:
        return 0
    d = Path(run_dir) / "traffic" / f"actor={actor}"
    seqs = [int(n[5:-8]) for n in os.listdir(d) if _PART.match(n)] if d.is_dir() else []
    return max(seqs) + 1 if seqs else 0


def sha256_of(path: Path, chunk: int = CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# -- an actor's side: files under its root ----------------------------------------------
def under(root: Path, rel: str) -> Path:
    """``root/rel``; a ``rel`` that leaves ``root`` (absolute, ``..``) is refused."""
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"{rel!r} is not a path inside the actor's directory")
    return root / p


def read_chunk(root: Path, rel: str, offset: int, n: int) -> bytes:
    """Bytes ``[offset, offset + n)`` of ``root/rel`` (fewer at its end)."""
    with open(under(root, rel), "rb") as f:
        f.seek(offset)
        return f.read(n)


def write_chunk(root: Path, rel: str, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` of ``root/rel``: offset 0 starts the file afresh, others append."""
    path = under(root, rel)
    if offset == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    if path.stat().st_size != offset:
        raise ValueError(f"{rel}: chunk at byte {offset} but the file holds {path.stat().st_size}")
    with open(path, "ab") as f:
        f.write(data)


def traffic_files(root: Path, actor: str) -> list[tuple[str, str]]:
    """``(rel, sha256)`` of the complete traffic parts under ``root``, in order (after a flush)."""
    d = root / "traffic" / f"actor={actor}"
    names = sorted(n for n in os.listdir(d) if _PART.match(n)) if d.is_dir() else []
    return [(traffic_rel(actor, n), sha256_of(d / n)) for n in names]


def drop(root: Path, rel: str) -> None:
    """Remove ``root/rel`` once the driver has it; a state's directory too if that is now empty (a
    traffic directory stays: the recorder writes its next part there)."""
    path = under(root, rel)
    path.unlink(missing_ok=True)
    if path.parts[len(root.parts)] in ("state", "incoming"):
        try:
            path.parent.rmdir()
        except OSError:
            pass


def drop_root(root: Path) -> None:
    """Remove an actor's directory, and the run's and ``ROOT`` if they are empty then."""
    shutil.rmtree(root, ignore_errors=True)
    for d in (root.parent, root.parent.parent):
        try:
            d.rmdir()
        except OSError:
            break


# -- the driver's side: a file from chunks, checked -------------------------------------
def pull(chunks: Iterable[bytes], dest: Path, sha256: str, temp: Path, what: str) -> int:
    """Write ``chunks`` to ``temp``, check their sha256, rename to ``dest``; the bytes written.

    ``CollectError`` (one line, ``what`` names the file and its writer) if the hash is not
    the one reported, or ``dest`` exists already; nothing is left at ``temp`` or ``dest`` then.
    """
    if dest.exists():
        raise CollectError(f"collect: {what}: {dest} exists already; not overwritten")
    h, n = hashlib.sha256(), 0
    try:
        with open(temp, "wb") as f:
            for data in chunks:
                h.update(data)
                f.write(data)
                n += len(data)
            f.flush()
            os.fsync(f.fileno())
        if h.hexdigest() != sha256:
            raise CollectError(f"collect: {what}: the {n} bytes received do not match the sha256 its actor "
                               f"reported ({h.hexdigest()[:12]}... != {str(sha256)[:12]}...); nothing written")
        os.replace(temp, dest)
    finally:
        temp.unlink(missing_ok=True)
    return n


def file_chunks(path: Path, chunk: int = CHUNK) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)`` of ``path``, ``chunk`` at a time (one empty chunk for an empty file)."""
    at = 0
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk)
            if data or not at:
                yield at, data
            if len(data) < chunk:
                return
            at += len(data)


def stale_temps(run_dir) -> list[Path]:
    """Temporary files a collecting driver that was killed may have left in ``run_dir``."""
    if run_dir is None or not Path(run_dir).is_dir():
        return []
    pat = re.compile(r"^\.traffic\..+\.part-\d{6,}\.parquet\.tmp$")
    return [Path(run_dir) / n for n in os.listdir(run_dir) if pat.match(n)]
