"""Epoch-end checkpoints: ``checkpoints/epoch_NNNN.npz`` (state) + ``epoch_NNNN.json`` (meta).

The ``.npz`` holds ``net.state_dict()`` (plain numpy arrays, read back with
``allow_pickle=False``); the JSON holds the epoch, the learning curve so far, running
totals and the run's identity (``convert.identity``). Both are written to a temporary
name and moved into place with ``os.replace``, the JSON last: a checkpoint is complete
when its JSON exists, so a crash mid-write never leaves a checkpoint that looks whole.
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
_NAME = re.compile(r"^epoch_(\d+)\.json$")


@dataclass(frozen=True)
class Checkpoint:
    epoch: int
    state_path: Path
    meta: dict

    def load_state(self) -> dict[str, np.ndarray]:
        """The saved ``state_dict`` (no pickles: object arrays are refused)."""
        with np.load(self.state_path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def _paths(ckpt_dir: Path, epoch: int) -> tuple[Path, Path]:
    stem = f"epoch_{epoch:04d}"
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


def save(run_dir: Path, epoch: int, state: dict[str, np.ndarray], meta: dict, keep: int = 0) -> Path:
    """Write the checkpoint of ``epoch``; keep only the newest ``keep`` (0 = all)."""
    ckpt_dir = Path(run_dir) / CKPT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    npz, js = _paths(ckpt_dir, epoch)
    _replace_atomically(npz, lambda f: np.savez(f, **state))
    text = json.dumps({**meta, "epoch": epoch, "state": npz.name}, indent=1).encode()
    _replace_atomically(js, lambda f: f.write(text))
    if keep:
        prune(ckpt_dir, keep)
    return npz


def complete_epochs(ckpt_dir: Path) -> list[int]:
    """Epochs with a complete checkpoint (JSON and state present), ascending."""
    if not ckpt_dir.is_dir():
        return []
    epochs = [int(m.group(1)) for p in ckpt_dir.iterdir() if (m := _NAME.match(p.name))]
    return sorted(e for e in epochs if _paths(ckpt_dir, e)[0].exists())


def prune(ckpt_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (JSON first, so none looks complete)."""
    for epoch in complete_epochs(ckpt_dir)[:-keep]:
        npz, js = _paths(ckpt_dir, epoch)
        js.unlink(missing_ok=True)
        npz.unlink(missing_ok=True)


def latest(run_dir: Path) -> Checkpoint | None:
    """The newest complete checkpoint of ``run_dir``, or None."""
    ckpt_dir = Path(run_dir) / CKPT_DIR
    for epoch in reversed(complete_epochs(ckpt_dir)):
        npz, js = _paths(ckpt_dir, epoch)
        try:
            meta = json.loads(js.read_text())
        except (OSError, ValueError):
            continue
        return Checkpoint(epoch, npz, meta)
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
