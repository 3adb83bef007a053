"""A resumed run directory is data: its checkpoints are validated, and a bad newest one is skipped.

Every array's name, shape and dtype must match the model being resumed, values must be
finite, the JSON sidecar must hold the keys, types and ranges of a checkpoint, and the
``.npz`` must match the sha256 the JSON records. The newest checkpoint that passes is
resumed (one warning per skipped one); if none passes, one ``UserError`` line.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from distspike.cli import checkpoint
from distspike.cli.convert import run_spec
from distspike.cli.errors import UserError
from distspike.cli.job import run_job
from distspike.config import ModelConfig, NetConfig, TrainingConfig
from distspike.runtime.local import local_net
from distspike.runtime.recovery import state_layout

from test_checkpoint import assert_same_state, final_state, job_config

BASE = ["runtime=local", "data=digits", "model.sizes=[64,30,10]", "data.n_train=40", "data.n_test=20",
        "eval_train=20", "checkpoint.every_samples=20", "checkpoint.keep=0", "logging.flush_rows=64"]
NEWEST = "epoch_0001"  # the newest checkpoint of a one-epoch run; the one before is epoch_0000_plus_000000020


@pytest.fixture(scope="module", params=["int", "float64"])
def base(request, tmp_path_factory) -> tuple[list[str], Path, Path]:
    """A one-epoch run (checkpoints after 20 and 40 samples) and the same run continued to two epochs."""
    overrides = [*BASE, f"model.dtype={request.param}"]
    one = tmp_path_factory.mktemp(f"one-{request.param}")
    run_job(job_config(*overrides, "training.epochs=1"), one)
    two = tmp_path_factory.mktemp(f"two-{request.param}")
    shutil.copytree(one, two, dirs_exist_ok=True)
    run_job(job_config(*overrides, "training.epochs=2", f"resume={two}"), two)
    return overrides, one, two


def copy_run(base, tmp_path: Path) -> tuple[list[str], Path]:
    overrides, one, _ = base
    run_dir = tmp_path / "run"
    shutil.copytree(one, run_dir)
    return overrides, run_dir


def paths(run_dir: Path, stem: str = NEWEST) -> tuple[Path, Path]:
    return run_dir / "checkpoints" / f"{stem}.npz", run_dir / "checkpoints" / f"{stem}.json"


def rewrite(run_dir: Path, change, rehash: bool = True, stem: str = NEWEST) -> None:
    """Apply ``change(arrays)`` to a checkpoint's arrays and save them; ``rehash``: record the new sha256 too."""
    npz, js = paths(run_dir, stem)
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    npz.write_bytes(buf.getvalue())
    if rehash:
        meta = json.loads(js.read_text())
        js.write_text(json.dumps({**meta, "state_sha256": hashlib.sha256(buf.getvalue()).hexdigest()}))


def edit_meta(run_dir: Path, change, stem: str = NEWEST) -> None:
    js = paths(run_dir, stem)[1]
    meta = json.loads(js.read_text())
    change(meta)
    js.write_text(json.dumps(meta))


def resume(overrides: list[str], run_dir: Path, epochs: int = 2) -> dict:
    return run_job(job_config(*overrides, f"training.epochs={epochs}", f"resume={run_dir}"), run_dir)


def wrong_shape(a):  # issue 19, case 1
    a["forward.1.0.W"] = a["forward.1.0.W"][:1]


def wrong_dtype(a):  # issue 19, case 2 (in an int run: float weights; in a float run: int weights)
    w = a["forward.1.0.W"]
    a["forward.1.0.W"] = w + 0.7 if w.dtype.kind == "i" else np.rint(w).astype(np.int64)


def missing(a):
    del a["backward.2.0.phi"]


def extra(a):
    a["forward.9.0.W"] = np.zeros(3)


def scalar_as_vector(a):
    a["net.samples_seen"] = a["net.samples_seen"].reshape(1)


def bad_rng(a):
    a["backward.2.0.rng"] = np.frombuffer(b'{"bit_generator": "MT19937"}', np.uint8)


def swapped_endianness(a):
    a["forward.2.0.W"] = a["forward.2.0.W"].astype(a["forward.2.0.W"].dtype.newbyteorder(">"))


CHANGES = {"shape": (wrong_shape, "has shape (1, 30) but this model needs (64, 30)"),
           "dtype": (wrong_dtype, "has dtype"), "missing": (missing, "missing ['backward.2.0.phi']"),
           "extra": (extra, "unexpected ['forward.9.0.W']"), "scalar": (scalar_as_vector, "'net.samples_seen' has shape"),
           "rng": (bad_rng, "not an RNG state"), "endianness": (swapped_endianness, "has dtype >")}


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_consistent_checkpoint_of_another_model_is_skipped_with_a_warning(base, tmp_path, caplog, name):
    """Even with the JSON's hash updated to match, arrays that do not fit the model are refused."""
    overrides, run_dir = copy_run(base, tmp_path)
    change, why = CHANGES[name]
    rewrite(run_dir, change)
    with caplog.at_level(logging.WARNING, "distspike.checkpoint"):
        metrics = resume(overrides, run_dir)
    warnings = [r.getMessage() for r in caplog.records if r.name == "distspike.checkpoint"]
    assert len(warnings) == 1 and f"{NEWEST}" in warnings[0] and why in warnings[0], warnings
    assert "falling back to epoch_0000_plus_000000020" in warnings[0]
    assert (metrics["resumed_from_epoch"], metrics["resumed_from_index"]) == (0, 20)
    assert_same_state(final_state(base[2]), final_state(run_dir))  # the fallback resume is exact


def test_non_finite_values_are_refused(base, tmp_path):
    overrides, run_dir = copy_run(base, tmp_path)
    if "model.dtype=int" in overrides:
        pytest.skip("integer arrays cannot hold NaN")
    rewrite(run_dir, lambda a: a["forward.1.0.W"].__setitem__((3, 4), np.nan))
    with pytest.raises(checkpoint.CheckpointError, match=r"'forward.1.0.W' holds 1 non-finite value"):
        load_newest(overrides, run_dir)


def layout_of(overrides: list[str]) -> dict:
    spec = run_spec(job_config(*overrides))
    return state_layout(spec.net_config(64, 10), spec.runtime.shards)


def load_newest(overrides: list[str], run_dir: Path, stem: str = NEWEST):
    epoch, _, index = stem.removeprefix("epoch_").partition("_plus_")
    return checkpoint.load(run_dir / "checkpoints", int(epoch), int(index or 0), layout_of(overrides))


def test_the_json_records_the_npz_sha256_and_an_altered_array_is_caught(base, tmp_path):
    overrides, run_dir = copy_run(base, tmp_path)
    npz, js = paths(run_dir)
    meta = json.loads(js.read_text())
    assert meta["format"] == 3 and meta["state_sha256"] == hashlib.sha256(npz.read_bytes()).hexdigest()
    assert load_newest(overrides, run_dir).state is not None
    rewrite(run_dir, lambda a: a["forward.1.0.W"].__setitem__((0, 0), a["forward.1.0.W"][0, 0] + 1), rehash=False)
    with pytest.raises(checkpoint.CheckpointError, match="does not match its recorded sha256"):
        load_newest(overrides, run_dir)


def test_object_arrays_are_refused_without_unpickling(base, tmp_path, monkeypatch):
    overrides, run_dir = copy_run(base, tmp_path)
    rewrite(run_dir, lambda a: a.__setitem__("forward.1.0.W", np.array([{"x": 1}], dtype=object)))
    import pickle
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("a checkpoint was unpickled"))
    with pytest.raises(checkpoint.CheckpointError, match="allow_pickle=False|pickled"):
        load_newest(overrides, run_dir)


META_CHANGES = {
    "not json": (None, "does not read as JSON"),
    "a list": (lambda m: m.clear() or m.update(x=1), "unexpected keys ['x']"),
    "epoch": (lambda m: m.update(epoch=7), "epoch=7"),
    "index": (lambda m: m.update(index=True), "index=true"),
    "negative samples": (lambda m: m.update(samples_seen=-1), "samples_seen=-1"),
    "samples disagree": (lambda m: m.update(samples_seen=39), "net.samples_seen=40"),
    "seconds": (lambda m: m.update(train_seconds="fast"), "train_seconds"),
    "curve": (lambda m: m["curve"].append(m["curve"][0]), "curve="),
    "curve value": (lambda m: m["curve"][0].update(test_error=-3.0), "curve="),
    "parts": (lambda m: m.update(traffic_parts=["traffic/../../etc/passwd"]), "traffic_parts="),
    "state file": (lambda m: m.update(state="epoch_0000.npz"), "state="),
    "hash": (lambda m: m.update(state_sha256="../x"), "state_sha256="),
    "unknown key": (lambda m: m.update(hook="os.system"), "unexpected keys ['hook']"),
    "missing key": (lambda m: m.pop("ray_calls"), "missing keys ['ray_calls']"),
    "format": (lambda m: m.update(format=99), "format=99"),
}


@pytest.mark.parametrize("name", list(META_CHANGES))
def test_a_bad_json_sidecar_is_refused(base, tmp_path, name):
    overrides, run_dir = copy_run(base, tmp_path)
    change, why = META_CHANGES[name]
    if change is None:
        paths(run_dir)[1].write_text('{"format": 3, "epoch"')
    else:
        edit_meta(run_dir, change)
    with pytest.raises(checkpoint.CheckpointError) as err:
        load_newest(overrides, run_dir)
    assert why in str(err.value) and "\n" not in str(err.value)


FILE_DAMAGE = {
    "empty": lambda b: b"",
    "truncated": lambda b: b[: len(b) // 2],
    "one byte": lambda b: b[:1],
    "no end record": lambda b: b[:-22],
    "flipped": lambda b: b[:500] + bytes([b[500] ^ 0xFF]) + b[501:],
    "not a zip": lambda b: b"\x93NUMPY" + b[6:],
}


@pytest.mark.parametrize("hashed", [True, False], ids=["format3", "format2"])
@pytest.mark.parametrize("name", list(FILE_DAMAGE))
def test_a_damaged_npz_is_refused(base, tmp_path, name, hashed):
    """With the hash, and without it (format 2 checkpoints): the archive itself must fail to parse."""
    overrides, run_dir = copy_run(base, tmp_path)
    npz, _ = paths(run_dir)
    if not hashed:
        edit_meta(run_dir, lambda m: m.pop("state_sha256") and m.update(format=2))
    npz.write_bytes(FILE_DAMAGE[name](npz.read_bytes()))
    with pytest.raises(checkpoint.CheckpointError) as err:
        load_newest(overrides, run_dir)
    assert NEWEST in str(err.value) and "\n" not in str(err.value)


def test_a_missing_npz_is_skipped(base, tmp_path, caplog):
    overrides, run_dir = copy_run(base, tmp_path)
    paths(run_dir)[0].unlink()
    with caplog.at_level(logging.WARNING, "distspike.checkpoint"):
        metrics = resume(overrides, run_dir, epochs=1)
    assert (metrics["resumed_from_epoch"], metrics["resumed_from_index"]) == (0, 20)
    assert any("epoch_0001.npz cannot be read" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("seed", range(2))
def test_fuzzed_byte_flips_and_truncations_never_resume_silently(base, tmp_path, seed):
    """Random damage (seeded, 30 cases each): a hashed checkpoint is always refused; an unhashed (format 2)
    one is refused or, where the damage missed every byte that matters, loads exactly the original arrays."""
    overrides, run_dir = copy_run(base, tmp_path)
    npz, js = paths(run_dir)
    good, meta = npz.read_bytes(), json.loads(js.read_text())
    original = load_newest(overrides, run_dir).state
    rng = np.random.default_rng(seed)
    for case in range(30):
        data = bytearray(good)
        if case % 3 == 0:
            data = data[: int(rng.integers(0, len(good)))]
        else:
            for pos in rng.integers(0, len(good), int(rng.integers(1, 4))):
                data[pos] ^= int(rng.integers(1, 256))
        npz.write_bytes(bytes(data))
        for hashed in (True, False):
            m = dict(meta) if hashed else {**{k: v for k, v in meta.items() if k != "state_sha256"}, "format": 2}
            js.write_text(json.dumps(m))
            try:
                state = load_newest(overrides, run_dir).state
            except checkpoint.CheckpointError as err:
                assert "\n" not in str(err)
                continue
            assert not hashed and bytes(data) != good or bytes(data) == good, f"case {case}: damage accepted"
            assert_same_state(original, state)


def test_when_no_checkpoint_validates_one_user_error_names_the_newest(base, tmp_path):
    overrides, run_dir = copy_run(base, tmp_path)
    for js in (run_dir / "checkpoints").glob("*.npz"):
        js.write_bytes(b"")
    with pytest.raises(UserError) as err:
        resume(overrides, run_dir)
    msg = str(err.value)
    assert "none of the 2 checkpoint(s)" in msg and "the newest, epoch_0001: epoch_0001.npz" in msg
    assert "\n" not in msg


def test_an_incompatible_config_is_an_error_not_a_fallback(base, tmp_path):
    overrides, run_dir = copy_run(base, tmp_path)
    with pytest.raises(UserError, match="incompatible with this config: seed=7"):
        run_job(job_config(*overrides, "seed=7", "training.epochs=2", f"resume={run_dir}"), run_dir)


@pytest.mark.parametrize("dtype", ["int", "float32", "float64"])
@pytest.mark.parametrize("sizes,shards", [((7, 5, 3), 1), ((9, 6, 4, 3), 2), ((8, 7, 5, 3), 3)])
def test_state_layout_is_that_of_the_state_dict(sizes, shards, dtype):
    cfg = NetConfig(ModelConfig(sizes, 0.5, dtype), TrainingConfig(steps=4, eta=0.5 if dtype == "int" else 0.01))
    layout = state_layout(cfg, shards)
    state = local_net(cfg, shards=shards).state_dict()
    assert set(layout) == set(state)
    for name, a in state.items():
        shape, dt = layout[name]
        assert a.dtype == dt and (a.shape == shape if shape is not None else a.ndim == 1), name
