"""``distspike-traffic``: tables, comparison, plots, actor matrix and error exits."""
import subprocess
import sys

import numpy as np
import pytest

from distspike.config import LoggingConfig, ModelConfig, NetConfig, TrainingConfig
from distspike.logs import cli
from distspike.logs.traffic import read_traffic
from distspike.runtime.local import local_net


def train_run(run_dir, shards=2, routing="bfs", samples=4):
    cfg = NetConfig(ModelConfig((12, 7, 5, 4), 1.2), TrainingConfig(eta=0.25, steps=5), routing=routing, seed=7)
    net = local_net(cfg, shards=shards, logging=LoggingConfig(), run_dir=str(run_dir))
    rng = np.random.default_rng(0)
    for k in range(samples):
        net.train_sample(rng.uniform(0, 1, 12), k % 4)
    net.close()
    return net


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("traffic")
    a, b = root / "bfs2", root / "dfs1"
    return a, b, train_run(a), train_run(b, shards=1, routing="dfs")


ACTORS = ["forward.1.0", "forward.1.1", "forward.2.0", "forward.2.1", "backward.2.0", "backward.2.1",
          "forward.3.0", "forward.3.1", "backward.3.0", "backward.3.1"]


def test_summary(runs, capsys):
    run_a, _, net, _ = runs
    assert cli.main([str(run_a)]) == 0
    text = capsys.readouterr().out
    for actor in ACTORS:
        assert actor in text
    for title in ("per-actor totals", "per-stage totals", "per-layer events per sample",
                  "per-layer events per time step", "forward/backward per layer", "events delivered between stages"):
        assert title in text
    assert "t=4" in text and "t=5" not in text
    # per-actor shares of compute add up to 100 %
    run = cli.load_run(run_a)
    shares = [row[-1] for row in cli.actor_table(run).rows]
    assert sum(shares) == pytest.approx(100.0)
    # per-layer means are the runtime's totals over the samples
    layer_rows = {row[0]: row[1:] for row in cli.layer_table(run).rows}
    assert layer_rows["2"][0] == pytest.approx(net.stats.fwd[2] / 4)
    assert layer_rows["1"][1] == pytest.approx(net.stats.err_in[1] / 4)


def test_tables_are_aligned(runs):
    table = cli.render(cli.actor_table(cli.load_run(runs[0])))
    lines = table.splitlines()[1:]
    assert len({len(line) for line in lines}) == 1  # header, rule and rows end in one column


def test_by_sample(runs, capsys):
    assert cli.main([str(runs[0]), "--by", "sample"]) == 0
    text = capsys.readouterr().out
    assert "events per sample along the run" in text and "0-0" in text and "3-3" in text


def test_compare(runs, capsys):
    run_a, run_b, net_a, net_b = runs
    assert cli.main([str(run_a), "--compare", str(run_b)]) == 0
    text = capsys.readouterr().out
    assert f"A = {run_a}" in text and f"B = {run_b}" in text and "B/A" in text
    assert "forward.1.1" in text  # only in A: shown with '-' for B
    tables = cli.comparison(cli.load_run(run_a), cli.load_run(run_b))
    layers = {row[0]: row for row in tables[2].rows}  # per-layer: (A, B, B/A) per quantity
    a, b = net_a.stats.fwd[2] / 4, net_b.stats.fwd[2] / 4
    assert layers["2"][1:4] == [pytest.approx(a), pytest.approx(b), pytest.approx(b / a)]


def test_plot(runs, capsys):
    run_a = runs[0]
    assert cli.main([str(run_a), "--plot"]) == 0
    out = capsys.readouterr().out
    plots = run_a / "plots"  # beside the dataset: the traffic dir holds Parquet parts only
    for name in ("events_per_step.png", "actor_traffic.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote {plots / name}" in out
    assert read_traffic(run_a).num_rows > 0  # the plots do not disturb reading the logs


def test_actor_matrix_matches_receivers(runs):
    """Column sums of the derived matrix are each receiver's events_in; stages add up shards."""
    run = cli.load_run(runs[0])
    nodes, M = cli.actor_matrix(run)
    assert nodes[0] == cli.SCHEDULER and nodes[1:] == run.actors
    received = run.per_actor(run.col("events_in"))
    np.testing.assert_array_equal(M[:, 1:].sum(axis=0), received)
    net = runs[2]
    stages, S = cli.stage_matrix(nodes, M)
    at = stages.index
    assert S[at("scheduler"), at("forward.1")] == 2 * net.stats.fwd[0]  # input spikes to both shards
    assert S[at("forward.3"), at("scheduler")] == net.stats.fwd[3]  # output spikes to the error counter
    assert S[at("forward.2"), at("backward.2")] == 2 * net.stats.err_passed[2]  # gated errors
    assert S[at("backward.3"), at("forward.2")] == 2 * net.stats.bwd_out[3]
    assert S[at("forward.1"), at("forward.2")] == 2 * net.stats.fwd[1]


def test_errors_exit_2(tmp_path, capsys):
    (tmp_path / "no_logs").mkdir()
    (tmp_path / "empty" / "traffic").mkdir(parents=True)
    for path in (tmp_path / "missing", tmp_path / "no_logs", tmp_path / "empty"):
        assert cli.main([str(path)]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and err.count("\n") == 1 and "Traceback" not in err


def test_compare_with_missing_second_run(runs, tmp_path, capsys):
    assert cli.main([str(runs[0]), "--compare", str(tmp_path / "gone")]) == 2
    assert str(tmp_path / "gone") in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "distspike.logs.cli", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and str(tmp_path / "missing") in proc.stderr and "Traceback" not in proc.stderr
