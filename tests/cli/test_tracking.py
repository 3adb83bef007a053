"""``logging.tracker``: MLflow (file store) and TensorBoard (tensorboardX event files), read back.

A sweep is one MLflow experiment with one run per job; each run holds the config as
parameters, the per-epoch errors at step = epoch and the final results. The event files
are parsed with tensorboardX's own protobuf classes (TFRecord framing), so the test
needs neither TensorFlow nor the tensorboard package.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from distspike.cli import tracking
from distspike.cli.errors import UserError
from distspike.cli.preflight import preflight
from distspike.config import ConfigError, LoggingConfig

from test_train_cli import TINY, read_curve, run


def events(directory: Path) -> list:
    """Every ``Event`` of the tfevents files in ``directory`` (TFRecord: length, crc, data, crc)."""
    from tensorboardX.proto import event_pb2
    out = []
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            out.append(event_pb2.Event.FromString(data[i + 12:i + 12 + n]))
            i += 12 + n + 4
    return out


def scalars(evs: list) -> dict[str, list[tuple[int, float]]]:
    """``tag -> [(step, value)]`` of the scalar summaries."""
    out: dict[str, list] = {}
    for ev in evs:
        for v in ev.summary.value:
            if v.HasField("simple_value"):
                out.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return out


def texts(evs: list) -> dict[str, str]:
    """``tag -> text`` of the text summaries (tensorboardX stores tag ``T`` as ``T/text_summary``)."""
    return {v.tag.removesuffix("/text_summary"): v.tensor.string_val[0].decode() for ev in evs
            for v in ev.summary.value if v.metadata.plugin_data.plugin_name == "text"}


def test_an_mlflow_sweep_is_one_experiment_with_a_run_per_job(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.7 reads file stores only when told
    from mlflow.tracking import MlflowClient
    sweep = tmp_path / "sweep"
    res = run(["-m", "runtime=local", *TINY, "training.epochs=2", "logging=off", "logging.tracker=mlflow",
               "routing=bfs,dfs", f"hydra.sweep.dir={sweep}"], tmp_path, timeout=400)
    assert res.returncode == 0, res.stderr
    client = MlflowClient((sweep / "mlruns").as_uri())
    experiment = client.get_experiment_by_name(str(sweep))
    assert experiment is not None, [e.name for e in client.search_experiments()]
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"0", "1"}
    for job, routing in (("0", "bfs"), ("1", "dfs")):
        r = runs[job]
        assert r.info.status == "FINISHED"
        assert r.data.params["routing"] == routing and r.data.params["training.epochs"] == "2"
        assert r.data.params["model.sizes"] == "[64, 50, 10]" and r.data.tags["job_num"] == job
        history = client.get_metric_history(r.info.run_id, "test_error")
        curve = read_curve(sweep / job)
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == \
            [(int(c["epoch"]), float(c["test_error"])) for c in curve]
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert r.data.metrics["final_test_error"] == metrics["final_test_error"]
        assert r.data.metrics["spikes_forward_total"] == metrics["spikes_forward_total"]


def test_a_tensorboard_run_writes_config_epochs_and_results(tmp_path):
    pytest.importorskip("tensorboardX")
    run_dir = tmp_path / "run"
    res = run(["runtime=local", *TINY, "training.epochs=2", "logging=off", "logging.tracker=tensorboard",
               f"hydra.run.dir={run_dir}"], tmp_path)
    assert res.returncode == 0, res.stderr
    evs = events(run_dir / "tensorboard" / "run")
    got = scalars(evs)
    curve = read_curve(run_dir)
    assert got["epoch/test_error"] == [(int(c["epoch"]), pytest.approx(float(c["test_error"]))) for c in curve]
    assert [s for s, _ in got["epoch/train_error"]] == [1, 2]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert got["final/final_test_error"] == [(2, pytest.approx(metrics["final_test_error"]))]
    text = texts(evs)
    assert "rule: sgd" in text["config"] and '"status": "completed"' in text["metrics"]
    assert not (run_dir / "mlruns").exists()


def test_no_tracker_by_default(tmp_path):
    assert LoggingConfig().tracker == "none"
    tracker = tracking.open_tracker(LoggingConfig(), tracking.TrackContext.single(tmp_path))
    assert type(tracker) is tracking.NoTracker and list(tmp_path.iterdir()) == []


def test_a_missing_tracker_package_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else
                        real(name, *a))
    with pytest.raises(UserError) as err:
        preflight(["runtime=local", "data=digits", "model=digits_small", "logging.tracker=mlflow"])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("logging.tracker=mlflow") and "distspike[track]" in msg


def test_a_store_that_cannot_be_opened_is_one_line(tmp_path):
    pytest.importorskip("mlflow")
    logging = LoggingConfig(tracker="mlflow", tracking_uri="nosuchscheme://x")
    with pytest.raises(UserError, match=r"^logging.tracker=mlflow: cannot open the store 'nosuchscheme://x': "):
        tracking.open_tracker(logging, tracking.TrackContext.single(tmp_path))


def test_bad_tracker_values_name_the_key():
    with pytest.raises(ConfigError, match=r"^logging.tracker='wandb' is not one of \['none', 'mlflow', 'tensorb"):
        LoggingConfig(tracker="wandb")
    with pytest.raises(ConfigError, match="logging.tracking_uri=3"):
        LoggingConfig(tracking_uri=3)


def test_flatten_gives_dotted_string_params():
    flat = tracking.flatten({"model": {"sizes": [64, None, 10], "w_init": 0.01}, "resume": None,
                             "data": {"options": {}}})
    assert flat == {"model.sizes": "[64, null, 10]", "model.w_init": "0.01", "resume": "null", "data.options": "{}"}
