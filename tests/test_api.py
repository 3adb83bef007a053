"""``distspike.Net`` (distspike/api.py): the examples of docs/api.md run as written; local and Ray nets
agree bit for bit; checkpoints round-trip (also a ``distspike-train`` run directory); bad input is one line."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import distspike
from distspike.cli.checkpoint import CheckpointError
from distspike.cli.errors import UserError
from distspike.cli.job import run_job
from distspike.config import ConfigError
from distspike.data import DataError, load_dataset
from distspike.logs.traffic import layer_totals, read_traffic

ROOT = Path(__file__).resolve().parent.parent
API_DOC = ROOT / "docs" / "api.md"
SIZES = (64, 50, 10)


def python_blocks() -> list[str]:
    """The ```python blocks of docs/api.md, in order."""
    return re.findall(r"^```python\n(.*?)^```$", API_DOC.read_text(), re.S | re.M)


def is_ray(block: str) -> bool:
    return 'runtime="ray"' in block


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def weights_equal(a, b) -> bool:
    return len(a.weights) == len(b.weights) and all(np.array_equal(u, v) for u, v in zip(a.weights, b.weights))


# -- docs/api.md ---------------------------------------------------------------------
def test_the_doc_has_local_and_ray_examples():
    blocks = python_blocks()
    assert len(blocks) >= 5 and sum(map(is_ray, blocks)) == 1
    text = "\n".join(blocks)
    for call in ("Net(", ".fit(", ".predict(", ".evaluate(", ".weights", ".stats", ".traffic()", ".save(",
                 "Net.load(", "Net.from_config("):
        assert call in text, call


def test_the_local_examples_of_the_doc_run_as_written(tmp_path, monkeypatch):
    """Every local block, in order, in one namespace (as a reader pastes them), in an empty directory."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in python_blocks():
        if not is_ray(block):
            exec(compile(block, str(API_DOC), "exec"), namespace)  # noqa: S102 - the doc's own examples
    assert (tmp_path / "digits_run" / "checkpoints" / "epoch_0001.json").exists()
    assert (tmp_path / "digits_run_2" / "checkpoints" / "epoch_0002.json").exists()


@pytest.mark.ray
def test_the_ray_example_of_the_doc_runs_as_written(ray_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (block,) = [b for b in python_blocks() if is_ray(b)]
    exec(compile(block, str(API_DOC), "exec"), {})  # noqa: S102


def test_import_distspike_is_light_and_net_needs_no_ray():
    code = ("import sys, distspike; assert 'numpy' not in sys.modules, 'numpy'; net = distspike.Net; "
            "assert 'ray' not in sys.modules, 'ray'; print(net.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "distspike.api"


# -- local and Ray agree -----------------------------------------------------------------
@pytest.mark.ray
@pytest.mark.parametrize("options", [dict(rule="sgd", routing="bfs"),
                                     dict(rule="fsgd", routing="dfs", shards=2, dtype="int", eta=0.01)])
def test_local_and_ray_nets_give_identical_weights(ray_cluster, digits, options):
    x, y = digits.x_train[:40], digits.y_train[:40]
    shards = options.pop("shards", 1)
    with distspike.Net(SIZES, runtime="local", seed=3, w_init=0.1, **options) as local, \
            distspike.Net(SIZES, runtime="ray", shards=shards, seed=3, w_init=0.1, **options) as on_ray:
        assert on_ray.runtime.kind == "ray_local" and on_ray.runtime.shards == shards
        for net in (local, on_ray):
            net.fit(x, y, epochs=2, eval_train=20, validation=(digits.x_test[:20], digits.y_test[:20]))
        assert weights_equal(local, on_ray)
        assert local.history[-1]["test_error"] == on_ray.history[-1]["test_error"]
        assert all(np.array_equal(local.stats[k], on_ray.stats[k]) for k in local.stats)
        np.testing.assert_array_equal(local.scores(digits.x_test[:30]), on_ray.scores(digits.x_test[:30]))


@pytest.mark.ray
def test_a_net_saved_on_ray_loads_in_process_and_trains_on_identically(ray_cluster, digits, tmp_path):
    x, y = digits.x_train[:60], digits.y_train[:60]
    with distspike.Net(SIZES, runtime="local", seed=5, w_init=0.1) as straight:
        straight.fit(x, y, epochs=2)
    with distspike.Net(SIZES, runtime="ray", seed=5, w_init=0.1) as on_ray:
        on_ray.fit(x, y, epochs=1)
        on_ray.save(tmp_path)
    with distspike.Net.load(tmp_path, runtime="local") as resumed:
        resumed.fit(x, y, epochs=1)
        assert weights_equal(resumed, straight)
        assert [r["epoch"] for r in resumed.history] == [1, 2]


# -- checkpoints ----------------------------------------------------------------------
def test_train_save_load_train_equals_training_straight_through(digits, tmp_path):
    x, y = digits.x_train[:100], digits.y_train[:100]
    with distspike.Net(SIZES, seed=2, w_init=0.1, rule="fsgd", dtype="int") as straight:
        straight.fit(x, y, epochs=2)
        state = straight._net.state_dict()
    with distspike.Net(SIZES, seed=2, w_init=0.1, rule="fsgd", dtype="int") as first:
        first.fit(x, y, epochs=1)
        npz = first.save(tmp_path / "ck")
        saved_stats = first.stats
    assert npz == tmp_path / "ck" / "checkpoints" / "epoch_0001.npz"
    with distspike.Net.load(tmp_path / "ck") as second:
        assert second.samples_seen == 100 and second.config == first.config
        assert all(np.array_equal(second.stats[k], v) for k, v in saved_stats.items())
        second.fit(x, y, epochs=1)
        resumed = second._net.state_dict()
    assert resumed.keys() == state.keys()
    for k in state:
        np.testing.assert_array_equal(resumed[k], state[k], err_msg=k)


def test_a_distspike_train_run_directory_loads(tmp_path):
    from test_checkpoint import job_config
    run_dir = tmp_path / "run"
    run_dir.mkdir()  # Hydra makes it for distspike-train
    overrides = ["runtime=local", "data=digits", "model=digits_small", "data.n_train=60", "data.n_test=30",
                 "logging=off", "seed=9"]
    metrics = run_job(job_config(*overrides), run_dir)
    data = load_dataset("digits").subset(60, 30)
    with distspike.Net.load(run_dir) as net:
        assert net.config.seed == 9 and net.config.model.sizes == SIZES and net.samples_seen == 60
        assert net.evaluate(data.x_test, data.y_test) == metrics["final_test_error"]


def test_a_checkpoint_whose_config_was_altered_is_refused_in_one_line(digits, tmp_path):
    with distspike.Net(SIZES, seed=2) as net:
        net.fit(digits.x_train[:20], digits.y_train[:20])
        net.save(tmp_path)
    js = tmp_path / "checkpoints" / "epoch_0001.json"
    meta = json.loads(js.read_text())
    meta["config"]["model"]["sizes"] = [64, 51, 10]
    js.write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"'forward\.1\.0\.W' has shape \(64, 50\) but this model needs \(64, 51\)") as err:
        distspike.Net.load(tmp_path)
    assert "\n" not in str(err.value)
    meta["config"]["training"]["bogus"] = 1
    js.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not describe a net.*bogus"):
        distspike.Net.load(tmp_path)
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        distspike.Net.load(tmp_path / "empty")


# -- traffic ---------------------------------------------------------------------------
def test_traffic_is_the_runs_dataset_and_sums_to_the_spike_totals(digits, tmp_path):
    with distspike.Net(SIZES, seed=4, w_init=0.1, run_dir=tmp_path) as net:
        net.fit(digits.x_train[:50], digits.y_train[:50], epochs=2)
        dataset = net.traffic()
        table = dataset.to_table()
        stats = net.stats
    assert table.num_rows == read_traffic(tmp_path).num_rows > 0
    assert set(table["actor"].to_pylist()) == {"forward.1.0", "forward.2.0", "backward.2.0"}
    totals = layer_totals(table)
    for k in stats:
        np.testing.assert_array_equal(totals[k], stats[k], err_msg=k)
    assert sorted(set(table["epoch"].to_pylist())) == [1, 2]


def test_traffic_needs_a_run_dir(digits):
    with distspike.Net(SIZES) as net, pytest.raises(ValueError, match="run_dir"):
        net.traffic()


# -- bad input --------------------------------------------------------------------------
@pytest.mark.parametrize("call, error, match", [
    (lambda net, d: net.fit(d.x_train[:5, :60], d.y_train[:5]), DataError, r"shape \(5, 60\).*\(n >= 1, 64\)"),
    (lambda net, d: net.fit(d.x_train[:5], d.y_train[:5] + 10), DataError, r"labels in \[10, 1[0-9]\]"),
    (lambda net, d: net.fit(d.x_train[:5], d.y_train[:4]), DataError, "5 rows but y_train has 4"),
    (lambda net, d: net.fit(np.full((2, 64), np.nan), [0, 1]), DataError, "nan is not a finite number"),
    (lambda net, d: net.predict(d.x_train[0]), DataError, "must be 2-D"),
    (lambda net, d: net.evaluate(d.x_test[:3], d.y_test[:3].astype(float)), DataError, "integer dtype"),
    (lambda net, d: net.fit(d.x_train[:5], d.y_train[:5], epochs=-1), ValueError, r"epochs=-1 must be an integer"),
    (lambda net, d: net.fit(d.x_train[:5], d.y_train[:5], eval_train=0), ValueError, r"eval_train=0 must be"),
])
def test_bad_arrays_are_one_line_errors_naming_the_value(digits, call, error, match):
    with distspike.Net(SIZES) as net:
        with pytest.raises(error, match=match) as err:
            call(net, digits)
        assert "\n" not in str(err.value)
        assert net.samples_seen == 0


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(rule="sgdd"), ConfigError, r"training\.rule='sgdd'"),
    (dict(runtime="slurm"), ValueError, r"runtime='slurm' is not one of"),
    (dict(steps=0), ConfigError, r"training\.steps=0"),
    (dict(shards=80), ConfigError, r"runtime\.shards=80 is larger than layer 1"),
    (dict(lr=0.1), TypeError, r"unexpected keyword argument\(s\) \['lr'\]"),
])
def test_bad_settings_are_refused_before_anything_starts(kwargs, error, match):
    with pytest.raises(error, match=match):
        distspike.Net(SIZES, **kwargs)
