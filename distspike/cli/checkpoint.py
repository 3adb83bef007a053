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
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distspike.cli.errors import UserError

CKPT_DIR = "checkpoints"
_NAME = re.compile(r"^epoch_(\d+)(?:_plus_(\d+))?\.json$")


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint: after ``epoch`` epochs and ``index`` samples of the next."""

    epoch: int
    state_path: Path
    meta: dict
    index: int = 0

    def load_state(self) -> dict[str, np.ndarray]:
        """The saved ``state_dict`` (no pickles: object arrays are refused)."""
        with np.load(self.state_path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def _paths(ckpt_dir: Path, epoch: int, index: int = 0) -> tuple[Path, Path]:
    stem = f"epoch_{epoch:04d}" + (f"_plus_{index:09d}" if index else "")
    return ckpt_dir / f"{stem}.npz", ckpt_dir / f"{stem}.json"


def _replace_atomically(path: Path, write) -> None:
    """Call ``write(file)`` on a temp file beside ``path``, fsync, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save(run_dir: Path, epoch: int, state: dict[str, np.ndarray], meta: dict, keep: int = 0,
         index: int = 0) -> Path:
    """Write the checkpoint after ``epoch`` epochs and ``index`` samples; keep the newest ``keep`` (0 = all)."""
    ckpt_dir = Path(run_dir) / CKPT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    npz, js = _paths(ckpt_dir, epoch, index)
    _replace_atomically(npz, lambda f: np.savez(f, **_plain(state)))
    text = json.dumps({**meta, "epoch": epoch, "index": index, "state": npz.name}, indent=1).encode()
    _replace_atomically(js, lambda f: f.write(text))
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
    return sorted(pos for pos in found if _paths(ckpt_dir, *pos)[0].exists())


def prune(ckpt_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (JSON first, so none looks complete)."""
    for pos in complete_positions(ckpt_dir)[:-keep]:
        npz, js = _paths(ckpt_dir, *pos)
        js.unlink(missing_ok=True)
        npz.unlink(missing_ok=True)


def latest(run_dir: Path) -> Checkpoint | None:
    """The newest complete checkpoint of ``run_dir`` whose JSON reads, or None."""
    ckpt_dir = Path(run_dir) / CKPT_DIR
    for epoch, index in reversed(complete_positions(ckpt_dir)):
        npz, js = _paths(ckpt_dir, epoch, index)
        try:
            meta = json.loads(js.read_text())
        except (OSError, ValueError):
            continue
        return Checkpoint(epoch, npz, meta, index)
    return None


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) and v else {key: v})
    return out


def check_compatible(saved: dict, current: dict, run_dir: Path) -> None:
    """Raise ``UserError`` listing every key where the checkpoint and this run differ."""
    a, b = _flatten(json.loads(json.dumps(saved))), _flatten(json.loads(json.dumps(current)))
    diffs = [f"{k}={b.get(k)!r} (checkpoint: {a.get(k)!r})" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if diffs:
        raise UserError(f"resume={str(run_dir)!r} is incompatible with this config: " + "; ".join(diffs)
                        + " (training.epochs, data.root, logging and the runtime kind/placement may differ)")
