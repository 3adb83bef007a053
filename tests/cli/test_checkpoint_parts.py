"""Format-4 checkpoints (a part per shard actor, ``runtime/shard_state.py``) are validated like one file.

The checkpoints of a ``runtime=local`` run are rewritten part by part, as the Ray
runtimes write them; ``runtime=local`` resumes them to the same weights, and a damaged
newest one is skipped with a warning naming the part and what is wrong.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from distspike.cli import checkpoint
from distspike.cli.job import run_job
from distspike.runtime import shard_state

from test_checkpoint import assert_same_state, final_state, job_config
from test_checkpoint_validation import BASE


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[list[str], Path, Path]:
    overrides = [*BASE, "model.dtype=int", "runtime.shards=2", "logging=off"]
    one = tmp_path_factory.mktemp("one")
    run_job(job_config(*overrides, "training.epochs=1"), one)
    two = tmp_path_factory.mktemp("two")
    shutil.copytree(one, two, dirs_exist_ok=True)
    run_job(job_config(*overrides, "training.epochs=2", f"resume={two}"), two)
    return overrides, one, two


def to_parts(run_dir: Path) -> None:
    """Every checkpoint of ``run_dir`` rewritten in format 4: one ``<actor>.npz`` each, the JSON last."""
    ckpt = run_dir / "checkpoints"
    for js in sorted(ckpt.glob("*.json")):
        meta = json.loads(js.read_text())
        npz = ckpt / meta["state"]
        with np.load(npz) as z:
            state = {k: z[k] for k in z.files}
        parts = {}
        for key, a in state.items():
            actor, field = key.rsplit(".", 1)
            parts.setdefault(actor, {})[field] = a
        d = ckpt / f"{npz.stem}.parts"
        d.mkdir()
        hashes = {actor: shard_state.write_part(d / f"{actor}.npz", arrays) for actor, arrays in parts.items()}
        meta.pop("state_sha256")
        js.write_text(json.dumps({**meta, "format": 4, "state": d.name, "parts_sha256": hashes}))
        npz.unlink()


def converted(runs, tmp_path) -> tuple[list[str], Path]:
    overrides, one, _ = runs
    run_dir = tmp_path / "run"
    shutil.copytree(one, run_dir)
    to_parts(run_dir)
    return overrides, run_dir


def test_runtime_local_resumes_a_checkpoint_in_parts(runs, tmp_path):
    overrides, run_dir = converted(runs, tmp_path)
    run_job(job_config(*overrides, "training.epochs=2", f"resume={run_dir}"), tmp_path)
    assert_same_state(final_state(runs[2]), final_state(run_dir))


def test_a_damaged_part_is_skipped_naming_it(runs, tmp_path, caplog):
    overrides, run_dir = converted(runs, tmp_path)
    part = run_dir / "checkpoints" / "epoch_0001.parts" / "forward.2.1.npz"
    raw = bytearray(part.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    part.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="distspike.checkpoint"):
        run_job(job_config(*overrides, "training.epochs=2", f"resume={run_dir}"), tmp_path)
    assert "epoch_0001.parts/forward.2.1.npz does not match its recorded sha256" in caplog.text
    assert_same_state(final_state(runs[2]), final_state(run_dir))  # resumed from the one before


@pytest.mark.parametrize("change, why", [
    (lambda d: shard_state.write_part(d / "backward.2.0.npz", {"WT": np.zeros((3, 3), np.int64)}), "missing"),
    (lambda d: _replace(d / "backward.2.0.npz", rng=np.frombuffer(b'{"bit_generator": "MT"}', np.uint8)),
     "'rng' is not an RNG state"),
    (lambda d: (d / "forward.1.0.npz").unlink(), "cannot be read"),
    (lambda d: shutil.rmtree(d), "not a directory of parts"),
])
def test_a_part_of_another_model_or_a_missing_one_is_refused(runs, tmp_path, change, why):
    overrides, run_dir = converted(runs, tmp_path)
    d = run_dir / "checkpoints" / "epoch_0001.parts"
    js = run_dir / "checkpoints" / "epoch_0001.json"
    sha = change(d)
    if sha is not None:  # a consistent hash: the content itself is wrong
        meta = json.loads(js.read_text())
        js.write_text(json.dumps({**meta, "parts_sha256": {**meta["parts_sha256"], "backward.2.0": sha}}))
    with pytest.raises(checkpoint.CheckpointError, match=why):
        checkpoint.load(run_dir / "checkpoints", 1, 0, _layout(overrides))


def test_part_names_must_be_actor_names(runs, tmp_path):
    overrides, run_dir = converted(runs, tmp_path)
    js = run_dir / "checkpoints" / "epoch_0001.json"
    meta = json.loads(js.read_text())
    js.write_text(json.dumps({**meta, "parts_sha256": {**meta["parts_sha256"], "../../x": "0" * 64}}))
    with pytest.raises(checkpoint.CheckpointError, match="parts_sha256="):
        checkpoint.load(run_dir / "checkpoints", 1, 0, _layout(overrides))


def test_the_ray_runtimes_get_the_parts_unread(runs, tmp_path):
    overrides, run_dir = converted(runs, tmp_path)
    ck = checkpoint.newest_valid(run_dir, _layout(overrides), whole=False)
    assert isinstance(ck.state, shard_state.SavedState) and ck.state.dir.name == "epoch_0001.parts"
    assert set(ck.state.net) == {"net.samples_seen", "net.input_spikes"}  # only the driver's counters read
    assert int(ck.state.net["net.samples_seen"]) == ck.meta["samples_seen"] == 40


def _replace(part: Path, **arrays) -> str:
    """Rewrite ``part`` with some arrays replaced; its new sha256."""
    with np.load(part) as z:
        state = {k: z[k] for k in z.files}
    return shard_state.write_part(part, {**state, **arrays})


def _layout(overrides):
    from distspike.cli.convert import run_spec
    from distspike.runtime.recovery import state_layout
    spec = run_spec(job_config(*overrides))
    data = spec.data.load()
    return state_layout(spec.net_config(data.n_features, data.n_classes), spec.runtime.shards)
