"""The driver holds no layer: shard actors draw their own blocks and write and read their own parts.

Runs on the session's two-node cluster (``ray_cluster`` in tests/conftest.py).
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from distspike.cli.checkpoint import CheckpointError
from distspike.config import ModelConfig, NetConfig, RuntimeConfig, TrainingConfig
from distspike.core.modules import Numerics
from distspike.core.network import init_weights
from distspike.runtime import make_net, shard_state
from distspike.runtime.local import local_net

pytestmark = pytest.mark.ray


def _cfg(sizes, dtype="int", w_init=0.5):
    return NetConfig(ModelConfig(sizes, w_init, dtype), TrainingConfig(rule="sgd", steps=5, eta=0.25), seed=11)


def _sample(n_in: int, k: int = 0):
    rng = np.random.default_rng(k)
    return rng.uniform(0, 1, n_in), int(rng.integers(0, 4))


def test_actors_draw_the_blocks_of_the_in_process_init(ray_cluster):
    cfg = _cfg((9, 7, 5, 4), "float32")
    num = Numerics.of(cfg)
    with make_net(cfg, RuntimeConfig("ray_cluster", 3, address="auto")) as net:
        got, back = net.raw_weights(), net.backend.backward_weights()
    for a, b in zip(got, init_weights(cfg.model.sizes, 0.5, 11)):
        assert a.dtype == np.float32 and a.tobytes() == num.encode(b).tobytes()
    for layer, w in back.items():
        assert w.tobytes() == num.encode(init_weights(cfg.model.sizes, 0.5, 11)[layer - 1]).tobytes()  # W_l rows


def _driver_peak(width: int, tmp_path, storage: str = "shared") -> int:
    """Peak bytes the driver allocates (tracemalloc) to build a net, train a sample, save and restore it.

    ``collect``: the parts travel through the driver, 256 KiB per call (``Collecting.chunk``)."""
    tracemalloc.start()
    try:
        cfg = _cfg((16, width, 4), "float64", w_init=0.01)
        with make_net(cfg, RuntimeConfig("ray_cluster", 2, address="auto", storage=storage)) as net:
            net.backend.chunk = 256 << 10
            net.train_sample(*_sample(16))
            saved = shard_state.save_net(net, tmp_path / f"{storage}{width}.parts")
            shard_state.load_net(net, saved)
            net.train_sample(*_sample(16, 1))
            net.backend.check()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("storage", ["shared", "collect"])
def test_the_driver_memory_does_not_grow_with_the_layer_width(ray_cluster, tmp_path, storage):
    narrow, wide = _driver_peak(50, tmp_path, storage), _driver_peak(200_000, tmp_path, storage)
    # the wide net's weights are 16 x 200,000 x 8 = 25.6 MB (and as many again in layer 2's replica)
    assert wide - narrow < 4 << 20, (narrow, wide)
    # the actors wrote them (collect: the driver took them, 256 KiB at a time, and sent them back)
    assert (tmp_path / f"{storage}200000.parts" / "forward.1.1.npz").stat().st_size > 12 << 20


def test_a_saved_state_restores_bit_for_bit_and_damage_is_named(ray_cluster, tmp_path):
    cfg = _cfg((12, 7, 5, 4))
    ref = local_net(cfg, shards=2)
    with make_net(cfg, RuntimeConfig("ray_cluster", 2, address="auto")) as net:
        for k in range(3):
            net.train_sample(*_sample(12, k))
            ref.train_sample(*_sample(12, k))
        saved = shard_state.save_net(net, tmp_path / "a.parts")
        assert set(saved.sha256) == {*net.backend.actors, "net"}
        for k in range(3, 6):
            net.train_sample(*_sample(12, k))
        shard_state.load_net(net, saved)  # back to 3 samples, then the same 3 again
        for k in range(3, 6):
            net.train_sample(*_sample(12, k))
            ref.train_sample(*_sample(12, k))
        assert all((a == b).all() for a, b in zip(net.raw_weights(), ref.raw_weights()))
        part = saved.part("backward.2.1")
        raw = bytearray(part.read_bytes())
        raw[-200] ^= 1
        part.write_bytes(bytes(raw))
        with pytest.raises(CheckpointError, match=r"a.parts/backward.2.1.npz does not match its recorded sha256"):
            shard_state.load_net(net, saved)


def test_an_actor_that_does_not_see_the_state_directory_refuses_naming_its_node(ray_cluster, tmp_path):
    cfg = _cfg((12, 7, 5, 4))
    with make_net(cfg, RuntimeConfig("ray_cluster", 1, address="auto")) as net:
        parts = tmp_path / "b.parts"
        shard_state.new_state_dir(parts)
        (parts / shard_state.TOKEN).write_text("another driver's token")
        with pytest.raises(shard_state.StorageError, match=r"node .* does not see the state directory"):
            shard_state.save_actors(net.backend.actors, parts, "this driver's token")
        assert not list(parts.glob("*.npz"))


def test_read_part_checks_names_shapes_and_dtypes(tmp_path):
    path = tmp_path / "p.parts" / "forward.1.0.npz"
    path.parent.mkdir()
    sha = shard_state.write_part(path, {"W": np.zeros((3, 2), np.float32), "counters": np.zeros(4, np.int64)})
    i64, f32 = np.dtype(np.int64), np.dtype(np.float32)
    layout = {"W": ((3, 2), f32), "counters": ((4,), i64)}
    target = np.ones((3, 2), np.float32)
    got = shard_state.read_part(path, sha, layout, into={"W": target})
    assert set(got) == {"counters"} and not target.any()  # W was read in place
    with pytest.raises(CheckpointError, match=r"'W' has shape \(3, 2\) but this model needs \(2, 3\)"):
        shard_state.read_part(path, sha, {**layout, "W": ((2, 3), f32)}, headers_only=True)
    with pytest.raises(CheckpointError, match=r"'counters' has dtype <i8 but this model needs <i4"):
        shard_state.read_part(path, sha, {**layout, "counters": ((4,), np.dtype(np.int32))})
    with pytest.raises(CheckpointError, match=r"missing \['phi'\]"):
        shard_state.read_part(path, sha, {**layout, "phi": ((2,), f32)})
