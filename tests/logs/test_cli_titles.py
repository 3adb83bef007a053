"""``distspike-traffic --plot`` titles a sweep job's figures by its settings, not by its job number."""
import numpy as np

from distspike.config import LoggingConfig, ModelConfig, NetConfig, TrainingConfig
from distspike.logs import cli
from distspike.runtime.local import local_net


def train_run(run_dir, samples=2):
    cfg = NetConfig(ModelConfig((12, 7, 5, 4), 1.2), TrainingConfig(eta=0.25, steps=5), seed=7)
    net = local_net(cfg, logging=LoggingConfig(), run_dir=str(run_dir))
    rng = np.random.default_rng(0)
    for k in range(samples):
        net.train_sample(rng.uniform(0, 1, 12), k % 4)
    net.close()


def test_sweep_job_is_titled_by_its_overrides(tmp_path):
    job = tmp_path / "multirun" / "0"
    train_run(job)
    (job / ".hydra").mkdir()
    (job / ".hydra" / "overrides.yaml").write_text("- routing=dfs\n- training.rule=fsgd\n- hydra.verbose=true\n")
    run = cli.load_run(job)
    assert run.label == "0"
    assert run.title == "routing=dfs training.rule=fsgd"
    assert cli.main([str(job), "--plot"]) == 0


def test_without_overrides_the_title_is_the_run_id(tmp_path):
    run_dir = tmp_path / "plain"
    train_run(run_dir)
    assert cli.load_run(run_dir).title == "plain"
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "overrides.yaml").write_text("{not: a list}\n")
    assert cli.load_run(run_dir).title == "plain"
