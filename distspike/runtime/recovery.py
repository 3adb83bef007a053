"""Snapshots of a training run, and recovery from lost actors.

A ``Snapshot`` is everything needed to continue training exactly from a point
between two samples:

- ``net.state_dict()``: weights, every quantizer's state (including the never-reset
  backward potentials and the reset RNGs), spike counters, samples seen;
- the data-order position: ``epoch`` completed epochs plus ``index`` samples of the
  next one (training is online in a fixed order, so this is all of it);
- the traffic-log position: the part files complete at that point, relative to the
  run directory (the recorders are flushed first). Rows written after the snapshot
  live only in later part files, which a rollback moves aside.

On the Ray runtimes a snapshot's state is on disk (``shard_state.SavedState``): every
shard actor writes and reads its own part, so neither the driver's memory nor a
restore point depends on the layer widths.

A ``Guard`` takes snapshots at the checkpoint cadence (``CheckpointConfig``) and at
every epoch end, hands them to a ``save`` hook (the disk checkpoints of
``cli.checkpoint``) and keeps the last one in memory. When the backend reports a
lost actor (one of ``backend.failures``; none in-process), ``recover`` revives the
dead actors, loads the last snapshot into every actor, rolls the traffic logs back
to it and returns it: the epoch loop then replays the samples after it, which gives
the same numbers as if nothing had happened. After ``max_restarts`` recoveries it
raises ``RecoveryError`` naming the actor and the last checkpoint.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from distspike.runtime import shard_state

log = logging.getLogger("distspike.recovery")

ROLLED_BACK = "traffic.rolled_back"  # RUN_DIR/traffic.rolled_back/<label>/actor=.../part-*.parquet


class RecoveryError(RuntimeError):
    """An actor was lost and the run could not be restored; names the actor and the last checkpoint."""


@dataclass
class Snapshot:
    """The state of a run between two samples: after ``epoch`` epochs and ``index`` samples of the next."""

    epoch: int
    index: int
    state: dict
    parts: list[str] = field(default_factory=list)  # complete traffic part files, relative to the run dir
    path: str | None = None  # the on-disk checkpoint, once saved

    def where(self) -> str:
        """``"epoch 2 + 150 samples (checkpoints/...)"``, for messages."""
        saved = self.path or "in memory only"
        return f"epoch {self.epoch} + {self.index} samples ({saved})"


def state_layout(cfg, shards: int) -> dict[str, tuple[tuple[int, ...] | None, np.dtype]]:
    """``name -> (shape, dtype)`` of every array of ``net.state_dict()`` for ``cfg`` on ``shards`` shards.

    What a checkpoint of this model must hold, computed without allocating the model
    (the modules' ``state()``: forward ``W`` and counters; backward ``WT``, ``phi``, the
    reset RNG as JSON bytes of free length (shape None), ``last_sample`` and counters).
    """
    from distspike.core.modules import Numerics
    from distspike.runtime.local import shard_plan
    num, i64 = Numerics.of(cfg), np.dtype(np.int64)
    sizes = cfg.model.sizes
    blank = [np.broadcast_to(np.zeros((), num.dtype), (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    out = {"net.samples_seen": ((), i64), "net.input_spikes": ((), i64)}
    for name, kind, spec, block in shard_plan(cfg, blank, shards):
        if kind == "forward":
            out[f"{name}.W"] = (block.shape, num.dtype)
        else:
            out.update({f"{name}.WT": ((spec.n_out, block.shape[0]), num.dtype),
                        f"{name}.phi": ((block.shape[0],), num.dtype), f"{name}.rng": (None, np.dtype(np.uint8)),
                        f"{name}.last_sample": ((), i64)})
        out[f"{name}.counters"] = ((4,), i64)
    return out


def traffic_parts(run_dir) -> list[str]:
    """The complete traffic part files of ``run_dir``, as sorted paths relative to it."""
    if run_dir is None:
        return []
    from distspike.logs.traffic import part_files
    root = Path(run_dir)
    return [p.relative_to(root).as_posix() for p in part_files(root)]


def rewind_traffic(run_dir, keep: list[str] | None, label: str) -> list[Path]:
    """Move the part files not in ``keep`` to ``RUN_DIR/traffic.rolled_back/<label>/``; the moved files.

    They hold rows of messages after the snapshot, which the run is about to replay:
    left in place they would be counted twice. ``keep=None`` (a checkpoint written
    before traffic positions were recorded) moves nothing.
    """
    if run_dir is None or keep is None:
        return []
    root, kept = Path(run_dir), set(keep)
    moved = []
    for rel in traffic_parts(root):
        if rel in kept:
            continue
        dest = root / ROLLED_BACK / label / Path(rel).relative_to("traffic")
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(root / rel, dest)
        moved.append(dest)
    if moved:
        log.warning("traffic logs rolled back to the checkpoint: %d part file(s) moved to %s",
                    len(moved), root / ROLLED_BACK / label)
    return moved


class Guard:
    """Snapshots at a cadence, saves them through ``save``, restores the last one after an actor loss.

    ``every``: a snapshot every that many samples within an epoch (0: epoch ends only).
    ``save(snapshot)``: writes it to disk and returns its path (or None).
    """

    def __init__(self, net, every: int = 0, save: Callable[[Snapshot], object] | None = None,
                 max_restarts: int = 3, run_dir=None, parts_dir: Callable[[int, int], Path] | None = None):
        self.net, self.every, self.save_hook, self.max_restarts = net, int(every), save, int(max_restarts)
        self.run_dir = run_dir
        # backends whose actors write their own parts (Ray): where a snapshot that ``save`` will
        # commit goes (a checkpoint's ``<stem>.parts``); other snapshots go to a scratch directory
        self.parts_dir = parts_dir
        self.initial = None  # the state training starts from, when it is on disk already (a resume)
        self.failures = tuple(getattr(net.backend, "failures", ()))
        self.last: Snapshot | None = None
        self.restarts: list[dict] = []  # one record per recovery (actor, revived, seconds)

    @property
    def active(self) -> bool:
        """Snapshots are needed: to save them, or to recover from lost actors."""
        return self.save_hook is not None or bool(self.failures)

    def due(self, index: int, n: int) -> bool:
        """A mid-epoch snapshot after ``index`` samples (never at 0 or the epoch end)."""
        return self.active and bool(self.every) and 0 < index < n and index % self.every == 0

    def take(self, epoch: int, index: int, keep: bool = True) -> Snapshot | None:
        """Flush the traffic logs and save the whole state; it becomes the restore point (None if not active).

        In-process the state is pulled into memory; where the actors write their own parts
        (``on_disk``) it goes to disk, never through the driver: into ``parts_dir(epoch,
        index)`` if ``keep`` (a checkpoint to commit), else into a scratch directory.
        """
        if not self.active:
            return None
        self.net.backend.flush()
        snap = Snapshot(epoch, index, self._state(epoch, index, keep), traffic_parts(self.run_dir))
        previous, self.last = self.last, snap
        if previous is not None and previous.state is not snap.state:
            shard_state.remove(previous.state if isinstance(previous.state, shard_state.SavedState) else None)
        return snap

    @property
    def on_disk(self) -> bool:
        """The backend's actors write and read their own parts of a state (Ray)."""
        return hasattr(self.net.backend, "load_parts")

    def _state(self, epoch: int, index: int, keep: bool):
        if not self.on_disk:
            return self.net.state_dict()
        if keep and self.parts_dir is not None:
            return shard_state.save_net(self.net, self.parts_dir(epoch, index))
        base = Path(self.run_dir) / "checkpoints" if self.run_dir is not None else None
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
        saved = shard_state.save_net(self.net, Path(tempfile.mkdtemp(prefix=".restore-", dir=base)), scratch=True)
        weakref.finalize(saved, shutil.rmtree, str(saved.dir), True)  # gone with the last reference to it
        return saved

    def load(self, state) -> None:
        """Load a snapshot's state into the net: a ``SavedState`` part by part, else the arrays."""
        if isinstance(state, shard_state.SavedState):
            shard_state.load_net(self.net, state)
        else:
            self.net.load_state_dict(state)

    def close(self) -> None:
        """Remove the last scratch restore point (checkpoints stay)."""
        if self.last is not None and isinstance(self.last.state, shard_state.SavedState):
            shard_state.remove(self.last.state)

    def start(self, epoch: int, index: int) -> None:
        """The restore point of a run's start (kept in memory only; only runtimes that can lose actors).

        An actor lost before it exists has nothing to be restored from: ``RecoveryError``.
        """
        if not self.failures:
            return
        if self.initial is not None:  # the resumed checkpoint is the restore point: nothing to write
            self.last = Snapshot(epoch, index, self.initial, traffic_parts(self.run_dir))
            return
        try:
            self.take(epoch, index, keep=False)
        except Exception as err:
            if not self.lost(err):
                raise
            self.recover(err)

    def commit(self, snap: Snapshot | None) -> None:
        """Save ``snap`` to disk through the hook (if any); remember its path for messages."""
        if snap is not None and self.save_hook is not None:
            path = self.save_hook(snap)
            snap.path = None if path is None else str(path)

    def lost(self, err: BaseException) -> bool:
        """Whether ``err`` means a lost actor: one of ``failures``, or an error the backend traces to one.

        (On Ray, a message whose input came from a lost actor never reaches its
        receiver, so the receiver's next message is rejected as out of order: that
        rejection is the echo of the loss.)
        """
        if isinstance(err, self.failures):
            return True
        explains = getattr(self.net.backend, "explains_loss", None)
        return bool(self.failures and explains is not None and explains(err))

    def retry(self, fn: Callable):
        """``fn()``, restoring the last snapshot and calling it again if an actor is lost.

        Only for work that does not change the state (evaluation, reading totals).
        """
        while True:
            try:
                return fn()
            except Exception as err:
                if not self.lost(err):
                    raise
                self.recover(err)

    def recover(self, err: BaseException) -> Snapshot:
        """Revive the lost actors and load the last snapshot into all of them; return it."""
        detected = time.time()
        while True:
            actor = self.net.backend.lost_actor(err)
            self._check_budget(actor, err)
            t0 = time.perf_counter()
            try:
                revived = self._restore()
            except RecoveryError as stuck:  # no node has room for the lost actors (node_loss.ReviveError)
                raise RecoveryError(f"{stuck}; last checkpoint: {self.last.where()}") from err
            except Exception as again:  # lost another actor while restoring
                if not self.lost(again):
                    raise
                err = again
                continue
            self._note(actor, err, revived, time.perf_counter() - t0, detected)
            return self.last

    def _check_budget(self, actor: str, err: BaseException) -> None:
        if self.last is not None and len(self.restarts) < self.max_restarts:
            return
        last = self.last.where() if self.last is not None else "none"
        raise RecoveryError(
            f"actor {actor} was lost ({type(err).__name__}: {_first_line(err)}) and the run cannot recover: "
            f"{len(self.restarts)} of checkpoint.max_restarts={self.max_restarts} restarts used; "
            f"last checkpoint: {last}") from err

    def _restore(self) -> list[str]:
        """Revive dead actors, drop unwritten log rows, load the snapshot, move later log parts aside."""
        backend = self.net.backend
        revived = backend.revive()
        backend.discard_logs()
        self.load(self.last.state)
        label = f"restart-{len(self.restarts) + 1}-{os.getpid()}-{int(time.time())}"
        rewind_traffic(self.run_dir, self.last.parts, label)
        return revived

    def _note(self, actor: str, err: BaseException, revived: list[str], seconds: float, detected: float) -> None:
        recovered = time.time() - detected  # from the error's arrival to training again
        self.restarts.append({"actor": actor, "error": type(err).__name__, "revived": revived,
                              "restored": self.last.where(), "seconds": seconds, "detected_at": detected,
                              "recovered_s": recovered})
        log.warning("actor %s lost (%s); revived %s and restored %s in %.2f s (restart %d of %d; detected at "
                    "unix time %.3f, training again %.2f s later)", actor, type(err).__name__, revived or "no actor",
                    self.last.where(), seconds, len(self.restarts), self.max_restarts, detected, recovered)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else ""
