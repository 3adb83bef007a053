"""``runtime.storage`` on Ray: the actors' side and the driver's side of ``storage.py``.

``StoreActor`` is mixed into ``ShardActor``: where its traffic recorder writes and
where it saves and loads its checkpoint parts (the run directory with ``shared``, its
node's temp dir with ``collect``), and the chunk calls through which the driver moves
those files. ``Collecting`` is mixed into ``RayBackend``: with ``collect`` it takes each
finished part into the run directory (``save_parts``, ``collect_traffic`` at every flush
and at the end) and sends each actor its part before it loads a state (``load_parts``:
a resume, or the restore after a lost actor or node), one file and at most two chunks
at a time. ``settle`` decides ``auto`` once the actors run: ``shared`` if every actor
sees a token the driver writes into the run directory, else ``collect``.
"""
from __future__ import annotations

import dataclasses
import logging
import secrets
import shutil
import tempfile
from pathlib import Path

import ray

from distspike.runtime import shard_state, storage
from distspike.runtime.local import make_recorder
from distspike.runtime.storage import COLLECT, PENDING, SHARED, CollectError, NodeStore, node_rel

log = logging.getLogger(__name__)


class StoreActor:
    """A shard actor's storage (mixed into ``ShardActor``: ``name``, ``shell``, ``logging``)."""

    store: NodeStore | None = None
    root: Path | None = None  # collect: this actor's directory on its node

    def use_storage(self, store: NodeStore | None, first_seq: int = 0) -> None:
        """Start writing where ``store`` says (the traffic recorder is made here); PENDING: nowhere yet.

        ``first_seq``: the first traffic part number (collect: one past the run dir's parts of this actor).
        """
        self.store = store
        if store is None or store.mode == PENDING:
            return
        run_dir = store.run_dir
        if store.collect:
            self.root = storage.actor_root(ray.get_runtime_context().get_temp_dir(), store.key, self.name)
            shutil.rmtree(self.root, ignore_errors=True)  # a former incarnation's files (after the last flush)
            self.root.mkdir(parents=True)
            run_dir = str(self.root) if store.run_dir is not None else None
        self.shell.recorder = make_recorder(self.logging, run_dir, self.name)
        if self.shell.recorder is not None:
            self.shell.recorder.seq = max(self.shell.recorder.seq, int(first_seq))

    def sees(self, path: str, token: str) -> tuple[bool, str]:
        """Whether this actor reads ``token`` at ``path`` (``auto``'s probe); and its node's address."""
        try:
            seen = Path(path).read_text() == token
        except OSError:
            seen = False
        return seen, ray.util.get_node_ip_address()

    def _collecting(self) -> bool:
        return self.store is not None and self.store.collect

    def save_part(self, path: str, token: str) -> str:
        """Write this shard's state as the part ``path`` of a state directory (collect: its copy on this
        node, ``state/<stem>.parts/<actor>.npz``, for the driver to take); its sha256."""
        if not self._collecting():
            return shard_state.save_shell(self.shell, path, token)
        local = storage.under(self.root, node_rel("state", path))
        local.parent.mkdir(parents=True, exist_ok=True)
        return shard_state.write_part(local, self.shell.state())

    def load_part(self, path: str, sha256: str, next_seq: int):
        """Check and load this shard's part ``path`` (collect: the copy the driver sent, then removed);
        the next message is number ``next_seq``."""
        if not self._collecting():
            shard_state.load_shell(self.shell, path, sha256)
        else:
            rel = node_rel("incoming", path)
            try:
                shard_state.load_shell(self.shell, str(storage.under(self.root, rel)), sha256)
            finally:
                storage.drop(self.root, rel)
        self.next_seq, self.rejected = int(next_seq), None

    def read_chunk(self, rel: str, offset: int, n: int) -> bytes:
        return storage.read_chunk(self.root, rel, offset, n)

    def write_chunk(self, rel: str, offset: int, data: bytes) -> None:
        storage.write_chunk(self.root, rel, offset, data)

    def traffic_files(self) -> list[tuple[str, str]]:
        """``(rel, sha256)`` of the traffic parts on this node not yet taken (collect)."""
        return storage.traffic_files(self.root, self.name) if self._collecting() else []

    def drop_file(self, rel: str) -> None:
        storage.drop(self.root, rel)

    def drop_local(self) -> None:
        """Remove this actor's directory on its node (the run's end: everything was taken)."""
        if self.root is not None:
            storage.drop_root(self.root)


# -- the driver ------------------------------------------------------------------------
def first_store(setting, kind, run_dir: str | None) -> NodeStore:
    """The store the actors start with: the setting, or PENDING for ``auto`` on a cluster (probed once they
    run); on ``ray_local`` every actor is on this machine, so ``auto`` is ``shared``."""
    mode = str(setting)
    if mode == "auto":
        mode = SHARED if str(kind) == "ray_local" else PENDING
    return NodeStore(mode, run_dir, secrets.token_hex(8))


def settle(actors: dict, store: NodeStore, setting, kind) -> NodeStore:
    """Decide ``auto`` (the probe) and tell the actors; one log line says where the parts go and why."""
    if store.mode == PENDING:
        unseen = probe(actors, store.run_dir)
        store = dataclasses.replace(store, mode=COLLECT if unseen else SHARED)
        ray.get([a.use_storage.remote(store, storage.next_seq(store.run_dir, n) if store.collect else 0)
                 for n, a in actors.items()])
        why = (f"node {unseen[0]} does not see the run directory" if unseen else
               "every node sees the run directory")
    elif str(setting) == "auto":
        why = f"every actor runs on this machine (runtime={kind})"
    else:
        why = "as configured"
    where = ("each node's actors write into their node's temp dir; the driver collects the parts into the "
             "run directory" if store.collect else "the actors write into the run directory")
    log.info("runtime.storage=%s: %s (%s): %s", setting, store.mode, why, where)
    return store


def probe(actors: dict, run_dir: str | None) -> list[str]:
    """Addresses of the nodes whose actors do not see a token file the driver writes into ``run_dir``."""
    base = Path(run_dir) if run_dir is not None else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    path = base / f"{storage.PROBE}-{token[:12]}"
    path.write_text(token)
    try:
        seen = ray.get([a.sees.remote(str(path), token) for a in actors.values()])
    finally:
        path.unlink(missing_ok=True)
    return sorted({ip for ok, ip in seen if not ok})


def chunks(actor, rel: str, size: int):
    """The bytes of ``rel`` on ``actor``'s node, ``size`` per call, the next call in flight while one is used."""
    at, ref = 0, actor.read_chunk.remote(rel, 0, size)
    while True:
        data = ray.get(ref)
        at += len(data)
        ref = actor.read_chunk.remote(rel, at, size) if len(data) == size else None
        yield data
        del data
        if ref is None:
            return


def send(actor, src: Path, rel: str, size: int) -> None:
    """``src`` to ``rel`` on ``actor``'s node, ``size`` bytes per call, at most two calls in flight."""
    prev = None
    for at, data in storage.file_chunks(src, size):
        ref = actor.write_chunk.remote(rel, at, data)
        del data
        if prev is not None:
            ray.get(prev)
        prev = ref
    ray.get(prev)


class Collecting:
    """The driver's side of ``runtime.storage`` (mixed into ``RayBackend``: ``actors``, ``store``,
    ``nodes``, ``seq``, ``tail``, ``deferred``, ``stranded``, ``failures``)."""

    chunk = storage.CHUNK  # bytes per Ray call when a file is moved

    def _pull(self, name: str, rel: str, dest: Path, sha256: str, temp: Path) -> None:
        """Take ``rel`` from actor ``name`` into ``dest`` (checked), then remove it on the node."""
        what = f"{dest.parent.name}/{dest.name} from actor {name} (node {self.nodes.get(name, '?')})"
        storage.pull(chunks(self.actors[name], rel, self.chunk), dest, sha256, temp, what)
        ray.get(self.actors[name].drop_file.remote(rel))

    def save_parts(self, parts_dir: Path, token: str) -> dict[str, str]:
        """Every actor writes its part of a state at once; with collect the driver then takes them one by one."""
        hashes = shard_state.save_actors(self.actors, parts_dir, token)
        if not self.store.collect:
            return hashes
        todo = list(hashes)
        try:
            while todo:
                name = todo[0]
                dest = Path(parts_dir) / f"{name}.npz"
                self._pull(name, node_rel("state", dest), dest, hashes[name], dest.with_name(f".{name}.npz.collect"))
                todo.pop(0)
        except BaseException:
            for name in todo:  # the parts not taken: their nodes' copies go too (best effort)
                self.actors[name].drop_file.remote(node_rel("state", Path(parts_dir) / f"{name}.npz"))
            raise
        return hashes

    def load_parts(self, saved) -> None:
        """Every actor reads its own part of a state on disk (with collect: sent to it first)."""
        def ship(name, actor, path):
            send(actor, path, node_rel("incoming", path), self.chunk)
        shard_state.load_actors(self.actors, saved, self.seq, ship if self.store.collect else None)
        self.tail.clear()  # calls before the restore: their results and errors are void
        self.deferred.clear()  # counts of the rolled-back sample

    def collect_traffic(self, skip=()) -> int:
        """Take every actor's finished traffic parts into the run directory (collect, after a flush); how many."""
        if not self.store.collect or self.store.run_dir is None:
            return 0
        run_dir = Path(self.store.run_dir)
        names = [n for n in self.actors if n not in skip]
        listing = ray.get([self.actors[n].traffic_files.remote() for n in names])
        moved = 0
        for name, files in zip(names, listing):
            for rel, sha256 in files:
                if not storage.is_traffic_rel(name, rel):
                    raise CollectError(f"collect: actor {name} reports a traffic part {rel!r} outside its own logs")
                dest = run_dir / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                self._pull(name, rel, dest, sha256, run_dir / f".traffic.{name}.{dest.name}.tmp")
                moved += 1
        return moved

    def finish_storage(self) -> None:
        """The run's end (actors closed, logs flushed): take what is left, then clear the nodes' directories."""
        if not self.store.collect:
            return
        alive = [n for n in self.actors if n not in self.stranded]
        for name in alive:
            try:
                self.collect_traffic(skip=set(self.actors) - {name})
                ray.get(self.actors[name].drop_local.remote())
            except self.failures:  # a lost actor's files went with its node
                pass
