"""``benchmarks/anchors/anchor_rows.py``: marked-line parsing, settings of each row, the CSV and its resume, bad input.

None of these needs Java except the last, which builds and runs the authors' engine on a few samples
(skipped, with its reason, where a JDK is missing or ``DEEPSPIKE_GIT`` does not name a git directory
of petered/DeepSpike, e.g. ``DEEPSPIKE_GIT=/path/to/DeepSpike/.git``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "anchors"))
import anchor_rows as ar  # noqa: E402

MNIST = ROOT.parent / "shared" / "data" / "mnist"
DEEPSPIKE_GIT = Path(os.environ.get("DEEPSPIKE_GIT", "")) if os.environ.get("DEEPSPIKE_GIT") else None


def payload(epoch, err=0.05):
    return {"engine": "deepspike", "epoch": epoch, "n_train": 60000, "n_test": 10000, "test_error": err,
            "train_wall_s": 1.0, "train_cpu_s": 1.0, "test_wall_s": 0.5, "test_cpu_s": 0.5}


def test_parse_marked_takes_only_marked_lines():
    assert ar.parse_marked("Picked up JAVA_TOOL_OPTIONS: -Xss4m\n") is None
    assert ar.parse_marked('{"epoch": 1, "test_error": 0.1}') is None  # unmarked JSON is chatter too
    got = ar.parse_marked(ar.MARK + '{"epoch": 3, "test_error": 0.0341}\n')
    assert got == {"epoch": 3, "test_error": 0.0341}
    with pytest.raises(ar.AnchorError, match="malformed"):
        ar.parse_marked(ar.MARK + '{"epoch": 3}')


@pytest.mark.parametrize("experiment, split, want", [
    ("table3_baseline", None, dict(rule="sgd", smooth=0, backward="noreset", steps=10, epochs=4, split="official")),
    ("table3_smooth", None, dict(smooth=1, backward="noreset", steps=10)),
    ("table3_random_reset", None, dict(smooth=0, backward="random")),
    ("table3_t5", None, dict(steps=5, backward="noreset")),
    ("table3_fsgd", None, dict(rule="fsgd")),
    ("table3_dfs", None, dict(depth_first=1, hold_error=1)),
    ("table2_spiking_sgd", "validation", dict(rule="sgd", epochs=50, split="validation")),
])
def test_engine_settings_follow_distspike_config(experiment, split, want):
    settings = ar.engine_args(ar.compose_spec(experiment, 1235, split, None))
    assert settings["seed"] == 1235 and settings["eta"] == 0.01
    assert {k: settings[k] for k in want} == want


@pytest.mark.parametrize("experiment, key", [("table3_zero_reset", "backward_reset"),
                                             ("fig3_regularized_fsgd", "regularization"),
                                             ("table3_fsgd_after_update", "column_read")])
def test_rows_the_engine_cannot_run_are_refused(experiment, key):
    with pytest.raises(ar.AnchorError, match=key):
        ar.engine_args(ar.compose_spec(experiment, 1234, None, None))


def test_weights_are_distspikes_init_in_the_drivers_format(tmp_path):
    spec = ar.compose_spec("table3_baseline", 1234, None, None)
    ws = ar.start_weights(spec)
    from distspike.core.network import init_weights
    ref = init_weights((784, 200, 200, 10), 0.01, 1234)
    assert [w.shape for w in ws] == [r.shape for r in ref]
    assert all(np.array_equal(w, r.astype(np.float32)) for w, r in zip(ws, ref))
    f = tmp_path / "w.bin"
    ar.write_weights(f, ws)
    raw = f.read_bytes()
    assert np.frombuffer(raw[:12], ">i4").tolist() == [3, 784, 200]
    assert np.array_equal(np.frombuffer(raw[12:12 + 4 * 784 * 200], ">f4").reshape(784, 200), ws[0])


def test_authors_init_is_their_wrappers_randomstate_draw():
    spec = ar.compose_spec("table3_baseline", 1234, None, None)
    ws = ar.start_weights(spec, "authors")
    rng = np.random.RandomState(1234)  # JavaSpikingNetWrapper.from_init: one RandomState, layer by layer
    ref = [0.01 * rng.randn(a, b) for a, b in ((784, 200), (200, 200), (200, 10))]
    assert all(np.array_equal(w, r.astype(np.float32)) for w, r in zip(ws, ref))
    assert not np.array_equal(ws[0], ar.start_weights(spec)[0])


def args_for(tmp_path, epochs=4):
    return ar.parse_args(["--build", str(tmp_path), "--experiment", "table3_t5", "--csv", str(tmp_path / "a.csv"),
                          "--epochs", str(epochs), "--command", "python anchor_rows.py --experiment table3_t5"])


def test_csv_rows_resume_and_skip(tmp_path, monkeypatch):
    args = args_for(tmp_path)
    args.data = tmp_path
    spec = ar.compose_spec("table3_t5", 1234, None, 4)
    settings = ar.engine_args(spec)
    for e in (1, 2):  # a run cut short after two epochs
        ar.append_row(args.csv, ar.csv_row("table3_t5", settings, payload(e), "cmd"))
    runs = []

    def fake_engine(cmd, on_payload):
        runs.append(cmd)
        assert any(a.startswith("steps=5") for a in cmd) and cmd[-1] == "epochs=4"
        for e in range(1, 5):
            on_payload(payload(e, 0.01 * e))
    monkeypatch.setattr(ar, "run_engine", fake_engine)
    assert ar.train_row(args, spec, settings) == 2  # epochs 3, 4 added, 1, 2 not written twice
    rows = ar.read_rows(args.csv)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert rows[3]["test_error_pct"] == "4.00" and rows[3]["steps"] == "5" and rows[3]["engine"] == "deepspike"
    assert rows[3]["command"] == "python anchor_rows.py --experiment table3_t5"
    assert ar.train_row(args, spec, settings) == 0 and len(runs) == 1  # complete: skipped, engine not started
    assert ar.done_epochs(rows, "table3_t5", 1235, "official") == set()  # another seed is another row


def test_engine_failure_is_one_line(tmp_path):
    with pytest.raises(ar.AnchorError, match="engine failed: boom"):
        ar.run_engine([sys.executable, "-c", "import sys; print('x'); sys.exit('boom')"], lambda p: None)


def run_main(argv, capsys):
    code = ar.main(argv)
    out, err = capsys.readouterr()
    return code, err.strip().splitlines()


@pytest.mark.parametrize("extra, needle", [
    (["--epochs", "0"], "--epochs 0"),
    (["--seed", "x"], "--seed"),
    (["--split", "test"], "--split"),
    (["--init", "glorot"], "--init"),
    (["--experiment", "table3_nope"], "table3_nope"),
    (["--data", "/nonexistent"], "--data /nonexistent"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, extra, needle):
    build = tmp_path / "build"
    (build / "classes/nl/uva/deepspike/mlp").mkdir(parents=True)
    (build / "classes/nl/uva/deepspike/mlp/DeepSpikeTrainer.class").touch()
    data = tmp_path / "mnist"
    data.mkdir()
    (data / "train-images-idx3-ubyte.gz").touch()
    argv = ["--build", str(build), "--data", str(data), "--experiment", "table3_baseline",
            "--csv", str(tmp_path / "a.csv")] + extra
    code, err = run_main(argv, capsys)
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "a.csv").exists()


def test_missing_build_is_one_line(tmp_path, capsys):
    code, err = run_main(["--build", str(tmp_path), "--experiment", "table3_baseline"], capsys)
    assert code == 2 and len(err) == 1 and "no built trainer" in err[0]


def test_resume_only_from_a_checkpoint_the_csv_covers(tmp_path):
    settings = {"seed": 1234, "split": "validation", "epochs": 50}
    ckpt = ar.checkpoint_path(tmp_path, "table2_spiking_sgd", 1234, "validation")
    assert ar.resume_args(None, "table2_spiking_sgd", settings, set()) == {}
    assert ar.resume_args(tmp_path, "table2_spiking_sgd", settings, set()) == {"ckpt": ckpt, "resume": 0}
    ckpt.write_bytes(ar.CKPT_MAGIC.to_bytes(4, "big") + (7).to_bytes(4, "big") + b"rest")
    assert ar.checkpoint_epoch(ckpt) == 7
    assert ar.resume_args(tmp_path, "table2_spiking_sgd", settings, set(range(1, 8)))["resume"] == 1
    assert ar.resume_args(tmp_path, "table2_spiking_sgd", settings, set(range(1, 7)))["resume"] == 0  # row 7 lost
    ckpt.write_bytes(b"junk")
    assert ar.checkpoint_epoch(ckpt) == 0


def test_engine_trains_under_distspikes_protocol(tmp_path):
    """The real engine on 300 samples: one marked line per epoch, errors in [0, 1], spike counts when asked."""
    if shutil.which("javac") is None or shutil.which("java") is None:
        pytest.skip("no JDK (javac/java) on this machine")
    if DEEPSPIKE_GIT is None or not DEEPSPIKE_GIT.exists():
        pytest.skip("DEEPSPIKE_GIT does not name a git directory of petered/DeepSpike")
    if not (MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"no MNIST at {MNIST}")
    src = tmp_path / "src"
    src.mkdir()
    archive = subprocess.run(["git", "--git-dir", str(DEEPSPIKE_GIT), "archive", "HEAD"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    build = tmp_path / "build"
    subprocess.run(["bash", str(ROOT / "benchmarks/anchors/build_deepspike.sh"), str(src), str(build)],
                   check=True, capture_output=True)
    spec = ar.compose_spec("table3_random_reset", 1234, "validation", 2)
    settings = ar.engine_args(spec)
    wfile = tmp_path / "w.bin"
    ar.write_weights(wfile, ar.start_weights(spec))
    got = []
    ar.run_engine(ar.java_command(build, MNIST, wfile, settings, {"n_train": 300, "n_test": 100, "count": 1}),
                  got.append)
    assert [p["epoch"] for p in got] == [1, 2]
    assert all(p["n_train"] == 300 and p["n_test"] == 100 and 0 <= p["test_error"] <= 1 for p in got)
    assert len(got[0]["spikes"]) == 4 and got[0]["spikes"][0] > 500  # ~1000 input spikes per sample at T=10

    # resume is bit-exact: two epochs straight leave the same checkpoint as one epoch, then a resumed second
    straight, split_run = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    small = {"n_train": 200, "n_test": 50}
    ar.run_engine(ar.java_command(build, MNIST, wfile, settings, {**small, "ckpt": straight}), lambda p: None)
    ar.run_engine(ar.java_command(build, MNIST, wfile, {**settings, "epochs": 1}, {**small, "ckpt": split_run}),
                  lambda p: None)
    resumed = []
    ar.run_engine(ar.java_command(build, MNIST, wfile, settings, {**small, "ckpt": split_run, "resume": 1}),
                  resumed.append)
    assert [p["epoch"] for p in resumed] == [2] and ar.checkpoint_epoch(split_run) == 2
    assert straight.read_bytes() == split_run.read_bytes()
