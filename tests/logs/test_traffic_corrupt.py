"""Bad traffic parts: a foreign schema or corrupt bytes is named; ``skip_bad`` reads the others.

Fuzz (seeded, bounded): random byte flips and truncations of one part file. Each
mutated run either reads back exactly as before (the flip hit bytes no reader uses) or
fails with a ``TrafficError`` naming that file, and with ``skip_bad`` reads exactly the
rows of the other parts. Never another exception, never different rows.
"""
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distspike.config import LoggingConfig, ModelConfig, NetConfig, TrainingConfig
from distspike.logs import cli
from distspike.logs.traffic import TrafficError, part_files, read_traffic, read_traffic_checked
from distspike.runtime.local import local_net

FUZZ_CASES = 40


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A small run with a few parts per actor (flush_rows small), and its table."""
    run_dir = tmp_path_factory.mktemp("traffic") / "run"
    cfg = NetConfig(ModelConfig((12, 7, 4), 1.2), TrainingConfig(eta=0.25, steps=4), seed=7)
    net = local_net(cfg, shards=1, logging=LoggingConfig(flush_rows=20), run_dir=str(run_dir))
    rng = np.random.default_rng(0)
    for k in range(6):
        net.train_sample(rng.uniform(0, 1, 12), k % 4)
    net.close()
    assert len(part_files(run_dir)) >= 4
    return run_dir, read_traffic(run_dir)


def sorted_rows(table: pa.Table) -> list[tuple]:
    cols = [table[c].to_pylist() for c in table.column_names]
    return sorted(zip(*cols))


def without(table: pa.Table, path) -> pa.Table:
    """The rows of ``table`` that do not come from the part ``path`` (its actor is in its directory's name)."""
    own = pq.read_table(path)
    own = own.append_column("actor", pa.repeat(pa.scalar(path.parent.name.removeprefix("actor=")), own.num_rows))
    rest = sorted_rows(table)
    for row in sorted_rows(own.select(table.column_names)):
        rest.remove(row)
    return rest


def mutate(path, rng) -> str:
    data = bytearray(path.read_bytes())
    if rng.random() < 0.3:
        cut = int(rng.integers(0, len(data)))
        path.write_bytes(bytes(data[:cut]))
        return f"truncated at {cut}"
    at = rng.integers(0, len(data), int(rng.integers(1, 4)))
    for i in at:
        data[i] ^= 1 << int(rng.integers(0, 8))
    path.write_bytes(bytes(data))
    return f"flipped bytes {sorted(at.tolist())}"


@pytest.mark.parametrize("seed", range(FUZZ_CASES))
def test_fuzzed_part_is_named_or_harmless(clean, tmp_path, seed):
    src, table = clean
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir)
    rng = np.random.default_rng(seed)
    parts = part_files(run_dir)
    victim = parts[int(rng.integers(0, len(parts)))]
    expected_rest = without(table, victim)
    how = mutate(victim, rng)
    try:
        got = read_traffic(run_dir)
    except TrafficError as err:
        assert str(victim) in str(err), (how, str(err))
        rest, bad = read_traffic_checked(run_dir, skip_bad=True)
        assert [b.path for b in bad] == [victim]
        assert sorted_rows(rest) == expected_rest, how
    else:
        assert sorted_rows(got) == sorted_rows(table), f"{how}: read back different rows without a word"


def test_foreign_schema_is_named_and_skipped(clean, tmp_path, capsys):
    src, table = clean
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir)
    victim = part_files(run_dir)[1]
    expected_rest = without(table, victim)
    pq.write_table(pa.table({"x": [1, 2, 3]}), victim)
    with pytest.raises(TrafficError, match="foreign schema"):
        read_traffic(run_dir)
    assert cli.main([str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(victim) in err[0] and "--skip-bad" in err[0]
    assert cli.main([str(run_dir), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 bad part(s) (3 rows)" in captured.err and "per-actor totals" in captured.out
    rest, _ = read_traffic_checked(run_dir, skip_bad=True)
    assert sorted_rows(rest) == expected_rest


def test_a_foreign_actor_directory_is_named(clean, tmp_path):
    src, _ = clean
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir)
    part = part_files(run_dir)[0]
    (run_dir / "traffic" / "actor=evil").mkdir()
    shutil.copy(part, run_dir / "traffic" / "actor=evil" / "part-000000.parquet")
    with pytest.raises(TrafficError, match="actor=evil"):
        read_traffic(run_dir)


def test_all_parts_bad_is_one_error(clean, tmp_path):
    src, _ = clean
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir)
    for p in part_files(run_dir):
        p.write_bytes(b"")
    with pytest.raises(TrafficError, match="all .* part.s. are bad"):
        read_traffic_checked(run_dir, skip_bad=True)
