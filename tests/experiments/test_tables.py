"""Smoke runs of the Table 1-3 / Fig. 2-3 commands (tiny sizes, sklearn digits) and the
early-guess forward pass against the runtime; the full runs are marked slow."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from distspike.analysis.early_guess import early_guess_curve, relu_costs, sample_trace
from distspike.config import ModelConfig, NetConfig, TrainingConfig
from distspike.data import load_dataset
from distspike.experiments import tables
from distspike.experiments.common import read_csv, render_table
from distspike.runtime.local import local_net

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
RUNS = Path(os.environ.get("DISTSPIKE_RUNS", "/work/runs"))  # training run directories of the full items


@pytest.mark.parametrize("T", [1, 3, 10])
def test_early_guess_scores_equal_the_runtime_prediction(T):
    ds = load_dataset("digits")
    with local_net(NetConfig(ModelConfig((64, 30, 20, 10), w_init=0.1), TrainingConfig(steps=T))) as net:
        ref = net.predict(ds.x_test[:20])  # (20, 10) sum_t u_L / T
        weights = net.weights()
    mine = np.stack([sample_trace(weights, x, T)[0][-1] / T for x in ds.x_test[:20]])
    np.testing.assert_array_equal(mine, ref)


def test_early_guess_ops_count_rows_and_spikes_by_hand():
    # one input unit x = 1 fires once per step; W1 = [[2, 0]] -> unit 0 gets 2 per step,
    # fires twice (2 - 1 = 1 > 0.5 fires again), W2 = [[1], [5]]
    W = [np.array([[2.0, 0.0]]), np.array([[1.0], [5.0]])]
    scores, ops_all, ops_hidden = sample_trace(W, np.array([1.0]), 2)
    # step: input nnz 1 + 1 spike; layer 1: 1 row * 2 + 2 spikes; layer 2: 2 rows * 1 + 2 spikes
    assert list(ops_all) == [10, 20] and list(ops_hidden) == [4, 8]
    np.testing.assert_array_equal(scores[:, 0], [2.0, 4.0])


def test_early_guess_curve_and_relu_costs():
    ds = load_dataset("digits")
    W = [np.random.default_rng(0).normal(0, 0.1, s) for s in ((64, 20), (20, 10))]
    rows = early_guess_curve(W, ds.x_test[:10], ds.y_test[:10], 4)
    assert [r["t"] for r in rows] == [1, 2, 3, 4]
    assert all(a["ops_all"] < b["ops_all"] for a, b in zip(rows, rows[1:]))
    c = relu_costs(W, ds.x_test[:10])
    assert c["dense_all"] == 64 * 20 + 20 * 10 and c["dense_hidden"] == 200
    assert c["sparse_all"] <= c["dense_all"] and c["sparse_hidden"] <= c["dense_hidden"]


def test_render_table_formats_cells():
    rows = [{"a": "x", "b": "5", "c": "2.278", "d": "0.0003", "e": "12.740000001", "f": ""}]
    assert render_table(rows, "a=A,b,c,d,e,f").splitlines()[2] == "| x | 5 | 2.278 | 0.0003 | 12.74 | n/a |"


def test_table1_command_smoke(tmp_path):
    tables.main(["table1", "--smoke", "--out", str(tmp_path)])
    rows = read_csv(tmp_path / "table1_smoke.csv")
    assert [r["model"] for r in rows] == ["spiking_regressor", "one_layer_net", "linear_svm"]
    assert [r["seeds"] for r in rows] == ["1234;1235", "1234;1235", ""]  # the SVM is deterministic
    assert len(rows[0]["test_per_seed"].split(";")) == 2 and rows[0]["command"].endswith("table1 --smoke --out "
                                                                                          + str(tmp_path))
    assert len(read_csv(tmp_path / "table1_smoke_validation.csv")) == 6
    # a later run of one model keeps the other rows
    tables.main(["table1", "--smoke", "--out", str(tmp_path), "--models", "linear_svm", "--seeds", "7"])
    assert read_csv(tmp_path / "table1_smoke.csv")[:2] == rows[:2]


def test_table1_protocol_options(tmp_path):
    from distspike.experiments import table1
    assert table1.PROTOCOLS["ordered_4to1"][0]["split"] == "ordered" and table1.PROTOCOLS["authors"][1] == 1234
    assert table1.sweep(lambda *a: pytest.fail("fitted"), None, (0.5,), 1, 1234) == (0.5, [])
    with pytest.raises(SystemExit, match="'nope'"):
        tables.main(["table1", "--protocol", "nope", "--out", str(tmp_path)])


def test_table1_vocab_sizes_reach_the_loader_and_bad_ones_stop(tmp_path, monkeypatch):
    import distspike.cli.convert as convert
    from distspike.experiments import table1
    seen = []

    class Spec:
        def __init__(self, name, root, download, options, shuffle_seed):
            seen.append(options)

        def load(self):
            return None

    monkeypatch.setattr(convert, "DataSpec", Spec)
    table1.load("d", "random_4to1", None, 500)
    table1.load("d", "random_4to1")
    assert seen[0]["max_features"] == 500 and seen[1]["max_features"] == 2000
    assert tables._vocabs(None) == [None] and tables._vocabs("500, 4000") == [500, 4000]
    for bad in ("x1", "0", "500,-3"):
        with pytest.raises(SystemExit, match="--vocab"):
            tables.main(["table1", "--vocab", bad, "--out", str(tmp_path)])


def test_table2_and_fig3_commands_smoke(tmp_path):
    out, runs = tmp_path / "res", tmp_path / "runs"
    tables.main(["table2", "--smoke", "--runs", str(runs), "--out", str(out)])
    rows = read_csv(out / "table2_mnist.csv")
    assert rows[0]["row"] == "spiking_sgd" and rows[-1]["row"] == "relu_fsgd_weights"
    assert (out / "fig2_learning_curves.png").stat().st_size > 0
    png = (out / "fig2_learning_curves.png").read_bytes()
    tables.main(["table2", "--smoke", "--rules", "sgd", "--seeds", "1235", "--runs", str(runs), "--out", str(out)])
    more = read_csv(out / "table2_mnist.csv")  # one SGD row added; the others, and Fig. 2, as they were
    assert [r for r in more if r not in rows] == [r for r in more if r["row"] == "spiking_sgd" and r["seed"] == "1235"]
    assert len(more) == len(rows) + 1 and (out / "fig2_learning_curves.png").read_bytes() == png
    assert not (runs / "table2" / "table2_spiking_fsgd_seed1235").exists()
    with pytest.raises(SystemExit, match="--rules 'sgd,adam'"):
        tables.main(["table2", "--smoke", "--rules", "sgd,adam", "--runs", str(runs), "--out", str(out)])
    tables.main(["fig3", "--smoke", "--runs", str(runs), "--out", str(out)])
    curve = read_csv(out / "fig3_early_guess.csv")
    assert len(curve) == 5 * 3 and (out / "fig3_early_guess.png").stat().st_size > 0  # SGD, FSGD, 2 variants, ReLU
    nets = {r["net"] for r in curve}
    assert any(n.startswith("Regularized Fractional (lambda=") for n in nets)
    assert any(n.startswith("Fractional Temporal (ours") for n in nets)
    kept = [r for r in curve if r["net"].startswith("spiking SGD")]
    for p in (runs / "table2").glob("table2_spiking_*"):  # without the Table 2 runs their rows stay as they were
        shutil.rmtree(p)
    tables.main(["fig3", "--smoke", "--no-train", "--runs", str(runs), "--out", str(out)])
    assert [r for r in read_csv(out / "fig3_early_guess.csv") if r["net"].startswith("spiking SGD")] == kept


def test_fig3_validation_command_smoke(tmp_path):
    out, runs = tmp_path / "res", tmp_path / "runs"
    tables.main(["fig3-validation", "--smoke", "--runs", str(runs), "--out", str(out)])
    rows = read_csv(out / "fig3_regularization_validation.csv")
    assert [float(r["regularization"]) for r in rows] == [0.0, 0.1, 0.01, 0.001]
    assert {r["command"] for r in rows} == {
        f'python -m distspike.experiments.tables fig3-validation --smoke --runs "$RUNS" --out {out}'}


def test_table3_command_smoke_and_reuse(tmp_path, capsys):
    out, runs = tmp_path / "res", tmp_path / "runs"
    tables.main(["table3", "--smoke", "--runs", str(runs), "--out", str(out)])
    rows = read_csv(out / "table3_ablation.csv")
    assert [r["variant"] for r in rows] == ["baseline", "fsgd"] and rows[0]["epochs"] == "1"
    capsys.readouterr()
    tables.main(["table3", "--smoke", "--no-train", "--runs", str(runs), "--out", str(out)])
    assert "distspike.train" not in capsys.readouterr().out  # completed runs are reused
    assert read_csv(out / "table3_ablation.csv") == rows


def test_table3_rows_of_other_variants_are_kept_in_table_order(tmp_path):
    from distspike.experiments.common import write_csv
    from distspike.experiments.table3 import merge_rows
    path = tmp_path / "t.csv"
    write_csv([{"variant": v, "test_error": "1"} for v in ("dfs", "baseline", "fsgd", "retired")], path)
    rows = merge_rows(path, [{"variant": "fsgd", "test_error": "2"}, {"variant": "t5", "test_error": "3"}])
    assert [(r["variant"], r["test_error"]) for r in rows] == [("baseline", "1"), ("fsgd", "2"), ("dfs", "1"),
                                                                ("t5", "3")]
    assert {r["seed"] for r in rows} == {"1234"}  # rows without a seed were seed 1234's
    write_csv(rows, path)
    rows = merge_rows(path, [{"variant": "fsgd", "seed": 1236, "test_error": "5"},
                             {"variant": "fsgd", "seed": 1235, "test_error": "4"}])
    assert [(r["variant"], r["seed"], r["test_error"]) for r in rows if r["variant"] == "fsgd"] == [
        ("fsgd", "1234", "2"), ("fsgd", "1235", "4"), ("fsgd", "1236", "5")]


def test_table3_summary_is_mean_and_sd_over_the_seeds_at_the_longest_run():
    from distspike.experiments.table3 import summarize
    rows = [{"variant": "fsgd", "seed": str(s), "epochs": str(e), "test_error": str(t), "train_error": "1",
             "wall_time_s": "10", "command": "c"} for s, e, t in ((1234, 4, 3.0), (1235, 4, 4.0), (1236, 2, 9.0))]
    (row,) = summarize(rows)
    assert (row["seeds"], row["test_error"], row["epochs"], row["wall_time_s"]) == ("1234;1235", "3.50 ± 0.71", 4, 20)
    assert row["gap"] == round(3.5 - 3.10, 2) and row["test_per_seed"] == "3.00;4.00"


needs_data = pytest.mark.skipif(not (DATA / "mnist").exists(), reason=f"data not found under {DATA}")


@pytest.mark.slow
@needs_data
def test_table1_full(tmp_path):
    """A few minutes: the eta / C sweeps and the 3-seed final fits on 20 Newsgroups (protocol authors)."""
    tables.main(["table1", "--data", str(DATA), "--out", str(tmp_path)])


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("item", ["table2", "table3", "fig3"])
def test_mnist_items_full(item, tmp_path):
    """Hours on one core unless the runs under $DISTSPIKE_RUNS are complete (then minutes)."""
    tables.main([item, "--runs", str(RUNS), "--data", str(DATA), "--out", str(tmp_path)])


def _row(protocol, model, test, train):
    from distspike.experiments import table1
    paper_test, paper_train = table1.PAPER[model]
    return {"protocol": protocol, "n_train": 8, "n_test": 2, "model": model, "test_mean": test, "train_mean": train,
            "test_gap": test - paper_test, "train_gap": train - paper_train}


def test_table1_collect_ranks_protocols_and_summarises_split_draws(tmp_path):
    from distspike.experiments import table1
    from distspike.experiments.common import write_csv
    models = list(table1.MODELS)
    for name, shift in (("random_4to1_defaults", 0.0), ("random_4to1_split7_defaults", 2.0),
                        ("authors", 5.0)):
        write_csv([_row(name, m, table1.PAPER[m][0] + shift, table1.PAPER[m][1]) for m in models],
                  tmp_path / f"table1_{name}.csv")
    rows = table1.collect(tmp_path)
    assert [r["protocol"] for r in rows] == ["authors"] * 3 + ["random_4to1_defaults"] * 3  # PROTOCOLS order
    ranking = read_csv(tmp_path / "table1_protocols.csv")
    assert [(r["protocol"], float(r["mean_abs_gap"])) for r in ranking] == [("authors", 2.5),
                                                                            ("random_4to1_defaults", 0.0)]
    summary = read_csv(tmp_path / "table1_split_summary.csv")
    assert [(r["protocol"], r["draws"]) for r in summary] == [("random_4to1_defaults", "2")] * 3
    assert [float(r["test_max"]) - float(r["test_min"]) for r in summary] == pytest.approx([2.0] * 3)


def test_table1_curve_summary_picks_each_seeds_lowest_test_error():
    from distspike.experiments.table1 import curve_summary
    rows = [{"model": "m", "seed": s, "epoch": e, "test_error": te, "train_error": 1.0}
            for s, curve in ((1, (5.0, 3.0, 4.0)), (2, (2.0, 2.0, 6.0))) for e, te in enumerate(curve, 1)]
    (summary,) = curve_summary(rows)
    assert summary["lowest_test"] == 2.5 and summary["lowest_test_epochs"] == "2;1"  # ties: the earlier epoch
    assert summary["epochs"] == 3 and summary["test_at_last"] == 5.0 and summary["test_at_20"] == 5.0


def test_fig2_draws_the_first_seed_and_the_live_relu_net_over_their_first_20_epochs():
    """Issue 22: Fig. 2 from the 50-epoch runs shows the first 20 epochs, as the paper does."""
    from distspike.experiments.table2 import fig2_series
    nets = ("spiking_sgd", "spiking_fsgd", "spiking_sgd_seed1235", "relu_seed1234", "relu_seed1236")
    curves = [{"net": n, "epoch": e, "test_error": float(e), "train_error": e / 2}
              for n in nets for e in range(50 if n in ("spiking_sgd", "spiking_fsgd") else 20, 0, -1)]
    series = fig2_series(curves, "relu_seed1236")
    assert list(series) == ["spiking_sgd", "spiking_fsgd", "relu_seed1236"]
    for ep, test, train in series.values():
        assert ep == list(range(1, 21)) and test == [float(e) for e in ep] and train == [e / 2 for e in ep]


def test_fig2_curves_are_named_by_seed_not_by_position_in_the_seed_list():
    """A --seeds 1235,1236 collect once named seed 1235's curves spiking_sgd, overwriting seed 1234's."""
    from distspike.experiments.table2 import curve_net
    assert curve_net("sgd", 1234) == "spiking_sgd"
    assert curve_net("fsgd", 1235) == "spiking_fsgd_seed1235"
