"""``runtime.storage=collect``: actors write on their node, the driver collects checked parts through Ray.

The pure parts (``storage.py``) run anywhere; the Ray parts on the session's two-node
cluster (``ray_cluster`` in tests/conftest.py), whose nodes share this machine's disk:
what is tested there is that the driver, not the actors, puts every file into the run
directory (the rig test in tests/cluster/test_rig_training.py hides the run dir from the nodes).
"""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from distspike.config import ConfigError, LoggingConfig, ModelConfig, NetConfig, RuntimeConfig, TrainingConfig
from distspike.logs.traffic import read_traffic
from distspike.runtime import make_net, ray_storage, shard_state, storage
from distspike.runtime.local import local_net
from distspike.runtime.storage import CollectError


def _cfg(sizes=(12, 7, 5, 4)):
    return NetConfig(ModelConfig(sizes, 0.5, "int"), TrainingConfig(rule="sgd", steps=5, eta=0.25), seed=11)


def _sample(k: int):
    rng = np.random.default_rng(k)
    return rng.uniform(0, 1, 12), int(rng.integers(0, 4))


def _files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- storage.py: no Ray ---------------------------------------------------------------
def test_pull_writes_a_file_that_matches_and_refuses_one_that_does_not(tmp_path):
    data = os.urandom(10_000)
    good = hashlib.sha256(data).hexdigest()
    chunks = lambda: (data[k:k + 3000] for k in range(0, len(data), 3000))  # noqa: E731
    assert storage.pull(chunks(), tmp_path / "a.npz", good, tmp_path / ".a.tmp", "a.npz") == 10_000
    assert (tmp_path / "a.npz").read_bytes() == data
    with pytest.raises(CollectError) as err:
        storage.pull(chunks(), tmp_path / "b.npz", "0" * 64, tmp_path / ".b.tmp", "p/b.npz from actor forward.1.0")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("collect: p/b.npz from actor forward.1.0: the 10000 bytes received "
                                              "do not match the sha256 its actor reported")
    assert _files(tmp_path) == ["a.npz"]  # nothing partial: no b.npz, no temp file
    with pytest.raises(CollectError, match="exists already; not overwritten"):
        storage.pull(chunks(), tmp_path / "a.npz", good, tmp_path / ".a.tmp", "a.npz")


def test_file_chunks_and_chunk_writes_round_trip(tmp_path):
    for n in (0, 1, 4096, 10_000):
        src = tmp_path / f"s{n}"
        src.write_bytes(os.urandom(n))
        for at, data in storage.file_chunks(src, 4096):
            storage.write_chunk(tmp_path, f"in/c{n}", at, data)
        assert (tmp_path / f"in/c{n}").read_bytes() == src.read_bytes()
        got = b"".join(storage.read_chunk(tmp_path, f"in/c{n}", k, 4096) for k in range(0, max(n, 1), 4096))
        assert got == src.read_bytes()
    with pytest.raises(ValueError, match="chunk at byte 5 but the file holds 0"):
        storage.write_chunk(tmp_path, "in/c0", 5, b"x")


@pytest.mark.parametrize("rel", ["/etc/passwd", "../x", "a/../../x", ""])
def test_an_actor_reads_and_writes_only_under_its_own_directory(tmp_path, rel):
    with pytest.raises(ValueError, match="not a path inside the actor's directory"):
        storage.under(tmp_path, rel)


def test_traffic_part_names_and_next_sequence_numbers(tmp_path):
    assert storage.is_traffic_rel("forward.1.0", "traffic/actor=forward.1.0/part-000003.parquet")
    assert not storage.is_traffic_rel("forward.1.0", "traffic/actor=forward.1.1/part-000003.parquet")
    assert not storage.is_traffic_rel("forward.1.0", "traffic/actor=forward.1.0/../x/part-000003.parquet")
    d = tmp_path / "traffic" / "actor=forward.1.0"
    d.mkdir(parents=True)
    assert storage.next_seq(tmp_path, "forward.1.0") == 0
    (d / "part-000004.parquet").touch()
    assert storage.next_seq(tmp_path, "forward.1.0") == 5 and storage.next_seq(None, "forward.1.0") == 0


def test_the_choice_is_checked():
    assert RuntimeConfig("ray_local", storage="collect").storage == "collect"
    assert RuntimeConfig().storage == "auto"
    with pytest.raises(ConfigError, match=r"runtime.storage='nfs' is not one of \['shared', 'collect', 'auto'\]"):
        RuntimeConfig(storage="nfs")


# -- on Ray -----------------------------------------------------------------------------
@pytest.mark.ray
def test_collected_parts_and_traffic_restore_bit_for_bit(ray_cluster, tmp_path):
    """Checkpoint parts and traffic parts reach the run dir through the driver, in several chunks each;
    a state restores from them (sent back to the actors); the nodes keep nothing at the end. (An actor
    with no rows has no traffic directory in the run dir: only files are collected.)"""
    run = tmp_path / "run"
    cfg, ref = _cfg(), local_net(_cfg(), shards=2)
    runtime = RuntimeConfig("ray_cluster", 2, address="auto", storage="collect")
    with make_net(cfg, runtime, logging=LoggingConfig(flush_rows=7), run_dir=str(run)) as net:
        net.backend.chunk = 256  # a part is some 0.5-3 KB: several chunks per file
        roots = {n: storage.actor_root(ray_cluster.head_node.get_temp_dir_path(), net.backend.store.key, n)
                 for n in net.backend.actors}
        assert all(r.is_dir() for r in roots.values())  # the actors' own directories on their nodes
        for k in range(3):
            net.train_sample(*_sample(k))
            ref.train_sample(*_sample(k))
        saved = shard_state.save_net(net, run / "checkpoints" / "a.parts")
        assert _files(saved.dir) == sorted([f"{n}.npz" for n in net.backend.actors] + ["net.npz", ".driver-token"])
        assert all(saved.part(n).stat().st_size > 256 for n in net.backend.actors)  # more than one chunk
        assert not [f for r in roots.values() for f in _files(r) if "state" in f]  # taken: gone from the nodes
        for k in range(3, 6):
            net.train_sample(*_sample(k))
        shard_state.load_net(net, saved)  # the parts travel back to the actors
        for k in range(3, 6):
            net.train_sample(*_sample(k))
            ref.train_sample(*_sample(k))
        assert all((a == b).all() for a, b in zip(net.raw_weights(), ref.raw_weights()))
        net.backend.flush()
        rows = read_traffic(run).num_rows
        assert rows > 0 and all(not _files(r) for r in roots.values())
    assert read_traffic(run).num_rows == rows  # close took the (empty) rest; nothing twice
    assert not any(r.exists() for r in roots.values())
    logged = {p.parent.name[6:] for p in (run / "traffic").rglob("part-*.parquet")}
    assert {n for n in roots if n.startswith("forward.")} <= logged <= set(roots)


@pytest.mark.ray
def test_a_part_damaged_in_transit_is_one_line_and_nothing_partial_is_left(ray_cluster, tmp_path, monkeypatch):
    run = tmp_path / "run"
    with make_net(_cfg(), RuntimeConfig("ray_cluster", 2, address="auto", storage="collect"),
                  run_dir=str(run)) as net:
        net.train_sample(*_sample(0))
        real = ray_storage.chunks

        def damaged(actor, rel, size):
            for k, data in enumerate(real(actor, rel, size)):
                yield bytes([data[0] ^ 1]) + data[1:] if k == 0 and "backward.2.1" in rel else data
        monkeypatch.setattr(ray_storage, "chunks", damaged)
        parts = run / "checkpoints" / "b.parts"
        with pytest.raises(CollectError) as err:
            shard_state.save_net(net, parts)
        assert "\n" not in str(err.value)
        assert str(err.value).startswith("collect: b.parts/backward.2.1.npz from actor backward.2.1 (node ")
        assert "do not match the sha256 its actor reported" in str(err.value)
        assert not parts.exists() and not list((run / "checkpoints").iterdir())  # nothing partial in the run dir
        monkeypatch.setattr(ray_storage, "chunks", real)
        shard_state.save_net(net, parts)  # the run goes on: the next state is whole
        assert len(list(parts.glob("*.npz"))) == len(net.backend.actors) + 1
