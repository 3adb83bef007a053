"""Every Hydra config option and experiment composes and converts to the typed objects."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from distspike.cli import CONF_DIR
from distspike.cli.convert import RunSpec, resolve_sizes, run_spec
from distspike.cli.schema import to_checked_container
from distspike.config import ConfigError, NetConfig, RuntimeConfig

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("model", "training", "routing", "data", "runtime", "placement", "logging", "experiment")
#: extra overrides an option needs to convert on its own
NEEDS = {("runtime", "ray_cluster"): ["runtime.address=127.0.0.1:6379"]}

# what each experiment changes (besides the data set), per paper table
BASE3 = {"sizes": [784, 200, 200, 10], "rule": "sgd", "routing": "bfs", "epochs": 4, "steps": 10,
         "smooth": False, "hold_error": True, "backward_reset": "none", "column_read": "before_update", "data": "mnist"}
EXPERIMENTS = {
    "table1_newsgroups": {"sizes": [None, 2], "data": "newsgroups", "rule": "sgd"},
    "table2_spiking_sgd": {"sizes": [784, 300, 300, 10], "rule": "sgd", "epochs": 50, "data": "mnist"},
    "table2_spiking_fsgd": {"sizes": [784, 300, 300, 10], "rule": "fsgd", "epochs": 50, "data": "mnist"},
    "table3_baseline": BASE3,
    "table3_fsgd": {**BASE3, "rule": "fsgd"},
    "table3_dfs": {**BASE3, "routing": "dfs"},
    "table3_dfs_unheld": {**BASE3, "routing": "dfs", "hold_error": False},
    "table3_smooth": {**BASE3, "smooth": True},
    "table3_smooth_fsgd": {**BASE3, "smooth": True, "rule": "fsgd"},
    "table3_zero_reset": {**BASE3, "backward_reset": "zero"},
    "table3_random_reset": {**BASE3, "backward_reset": "random"},
    "table3_t5": {**BASE3, "steps": 5},
    "table3_t20": {**BASE3, "steps": 20},
    "table3_fsgd_after_update": {**BASE3, "rule": "fsgd", "column_read": "after_update"},
    "table3_dfs_fsgd": {**BASE3, "routing": "dfs", "rule": "fsgd"},
    "fig3_regularized_fsgd": {"sizes": [784, 300, 300, 10], "rule": "fsgd", "regularization": 0.001,
                              "step_lr": "constant"},
    "fig3_temporal_fsgd": {"sizes": [784, 300, 300, 10], "rule": "fsgd", "regularization": 0.0,
                           "step_lr": "linear_decay"},
}


@pytest.fixture(autouse=True)
def hydra_conf(monkeypatch, tmp_path):
    """Compose from the package's conf dir; $DISTSPIKE_DATA points at an existing directory."""
    monkeypatch.setenv("DISTSPIKE_DATA", str(tmp_path))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def spec_of(*overrides: str) -> RunSpec:
    """Compose ``config`` with ``overrides`` and convert it (checks what needs no data)."""
    return run_spec(to_checked_container(compose("config", overrides=list(overrides))))


def summary(spec: RunSpec) -> dict:
    t = spec.training
    return {"sizes": spec.model["sizes"], "rule": t.rule, "routing": spec.routing, "epochs": t.epochs,
            "steps": t.steps, "smooth": t.smooth, "hold_error": t.hold_error,
            "backward_reset": t.backward_reset, "column_read": t.column_read, "data": spec.data.name,
            "regularization": t.regularization, "step_lr": t.step_lr}


def test_every_group_option_composes_and_converts():
    composed = []
    for group in GROUPS:
        assert options(group), f"no options in conf/{group}"
        for opt in options(group):
            spec = spec_of(f"{group}={opt}", *NEEDS.get((group, opt), []))
            assert isinstance(spec.net_config(), NetConfig)
            assert isinstance(spec.runtime, RuntimeConfig)
            composed.append(f"{group}={opt}")
    assert len(composed) >= 30


def test_experiments_change_only_what_they_state():
    assert set(options("experiment")) == set(EXPERIMENTS)
    for name, expected in EXPERIMENTS.items():
        got = summary(spec_of(f"experiment={name}"))
        assert {k: got[k] for k in expected} == expected, name


def test_defaults():
    spec = spec_of()
    assert spec.model["sizes"] == [784, 200, 200, 10]
    assert (spec.training.rule, spec.routing, spec.data.name, spec.runtime.kind) == ("sgd", "bfs", "mnist", "ray_local")
    assert spec.runtime.placement.strategy == "PACK" and spec.logging.traffic
    assert spec.seed == 1234 and spec.progress is None and spec.resume is None


def test_routing_group_sets_the_plain_string():
    assert spec_of("routing=dfs").net_config().routing == "dfs"
    assert spec_of("routing=bfs").net_config().routing == "bfs"


def test_data_root_defaults_to_the_environment(tmp_path):
    assert spec_of("data=mnist").data.root == str(tmp_path)
    assert spec_of("data=digits").data.root is None


def test_placement_two_nodes_pins_actor_groups():
    placement = spec_of("placement=two_nodes").runtime.placement
    assert dict(placement.forward.resources) == {"node_a": 0.001}
    assert dict(placement.backward.resources) == {"node_b": 0.001}
    assert placement.forward.bundle()["node_a"] == 0.001
    assert spec_of("placement=strict_spread").runtime.placement.strategy == "STRICT_SPREAD"
    assert spec_of("placement.strategy=spread").runtime.placement.strategy == "SPREAD"


@pytest.mark.parametrize("override, key", [
    ("training.ruel=sgd", "ruel"),
    ("training.eta=abc", "training.eta"),
    ("routing=xyz", "routing/xyz"),
    ("model.sizes=oops", "model.sizes"),
    ("training.backward_reset=sometimes", "training.backward_reset"),  # a choice is refused by its Enum type
    ("training.rule=1", "training.rule"),
    ("model.dtype=int8", "model.dtype"),
    ("runtime.kind=cloud", "runtime.kind"),
    ("data.name=cifar", "data.name"),
])
def test_schema_rejects_typos_and_wrong_types(override, key):
    with pytest.raises(ConfigCompositionException) as err:
        compose("config", overrides=[override])
    assert key in str(err.value) + str(err.value.__cause__)


@pytest.mark.parametrize("overrides, key", [
    (["model.sizes=[784,-3,10]"], "model.sizes[1]"),
    (["runtime.shards=1000", "model=digits_small"], "runtime.shards"),
    (["data=mnist", "data.root=/nonexistent"], "data.root"),
    (["+training.ruel=sgd"], "training.ruel"),
    (["checkpoint.keep=-1"], "checkpoint.keep"),
    (["runtime=ray_cluster"], "runtime.address"),
])
def test_conversion_names_the_bad_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        spec_of(*overrides)
    assert key in str(err.value)


def test_shuffle_seed_permutes_the_training_split_once():
    plain = spec_of("data=digits", "data.n_test=10").data.load()
    spec = spec_of("data=digits", "data.n_test=10", "data.shuffle_seed=7").data
    a, b = spec.load(), spec.load()
    np.testing.assert_array_equal(a.y_train, b.y_train)  # the same permutation every time
    assert not np.array_equal(a.y_train, plain.y_train)
    assert sorted(a.y_train) == sorted(plain.y_train) and spec.identity()["shuffle_seed"] == 7
    assert spec_of("experiment=table3_baseline", "data.shuffle_seed=1234").data.shuffle_seed == 1234


def test_table1_experiment_is_the_reproduced_protocol():
    from distspike.experiments import table1
    spec = spec_of("experiment=table1_newsgroups")
    protocol, hyper = table1.REPRODUCED
    options, shuffle_seed = table1.PROTOCOLS[protocol]
    assert spec.data.shuffle_seed == shuffle_seed and options.items() <= spec.data.options.items()
    assert spec.training.eta == table1.DEFAULT_GRIDS["spiking_regressor"][0] and hyper == "defaults"


def test_auto_sizes_come_from_the_data():
    spec = spec_of("experiment=table1_newsgroups")
    assert spec.net_config(n_features=1234, n_classes=2).model.sizes == (1234, 2)
    assert resolve_sizes([None, 5, None], 7, 3, "x") == [7, 5, 3]
    with pytest.raises(ConfigError, match=r"model.sizes\[0\]=784 does not match the 64 input features"):
        spec_of("data=digits").net_config(n_features=64, n_classes=10)
    with pytest.raises(ConfigError, match=r"model.sizes\[1\]=None"):
        resolve_sizes([3, None, 2], 3, 2, "x")


@pytest.mark.parametrize("launcher, plugin", [
    ("distspike_slurm", "hydra_plugins.hydra_submitit_launcher"),
    ("distspike_ray", "hydra_plugins.hydra_ray_launcher"),
])
def test_hydra_launcher_configs(launcher, plugin):
    try:
        found = importlib.util.find_spec(plugin) is not None
    except ModuleNotFoundError:  # not even the hydra_plugins namespace is installed
        found = False
    if not found:
        pytest.skip(f"{plugin} is not installed (optional extra)")
    cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "hydra_plugins" in cfg.hydra.launcher._target_


def test_conf_ships_inside_the_package():
    """hydra.main points at distspike/conf, which MANIFEST.in puts into the wheel; conf/ links to it."""
    assert CONF_DIR == ROOT / "distspike" / "conf" and (CONF_DIR / "config.yaml").is_file()
    assert (ROOT / "conf").resolve() == CONF_DIR
    assert "recursive-include distspike/conf *.yaml" in (ROOT / "MANIFEST.in").read_text()


def test_experiments_run_in_one_process_unless_told_otherwise():
    """A paper experiment on the embedded Ray runs for hours (FSGD: ~8.6 samples/s): runtime=local by default."""
    for name in EXPERIMENTS:
        assert spec_of(f"experiment={name}").runtime.kind == "local", name
    assert spec_of("experiment=table3_fsgd", "runtime=ray_local").runtime.kind == "ray_local"
    assert spec_of("runtime=ray_local", "experiment=table3_fsgd").runtime.kind == "ray_local"


def test_the_tree_is_generated_from_the_runtime_config_objects():
    """One tree: every field of the runtime's dataclasses is a node of the same name, choice type and default."""
    import dataclasses
    import typing

    from omegaconf import OmegaConf
    from omegaconf.errors import ValidationError

    from distspike import config
    from distspike.cli import schema
    from distspike.cli.convert import DataSpec, RunSpec
    node = OmegaConf.structured(schema.TrainNode)
    for key, cls in [("model", config.ModelConfig), ("training", config.TrainingConfig), ("data", DataSpec),
                     ("runtime", config.RuntimeConfig), ("placement", config.PlacementConfig),
                     ("placement.forward", config.ActorResources), ("logging", config.LoggingConfig),
                     ("checkpoint", config.CheckpointConfig), ("", RunSpec)]:
        sub = OmegaConf.select(node, key) if key else node
        names = [f.name for f in dataclasses.fields(cls) if f.metadata.get("node", ...) is not None]
        assert list(sub.keys()) == names, key
        hints, node_hints = typing.get_type_hints(cls), typing.get_type_hints(schema.node_class(cls))
        for name in names:
            if isinstance(hints[name], type) and issubclass(hints[name], config.Choice):
                assert node_hints[name] is hints[name], (key, name)  # checked by type
                with pytest.raises(ValidationError, match="expected one of"):
                    setattr(sub, name, "not-a-choice")
    choices = [h for h in typing.get_type_hints(config.TrainingConfig).values() if h is not bool and
               isinstance(h, type) and issubclass(h, config.Choice)]
    assert set(choices) == {config.Rule, config.Reset, config.ColumnRead, config.StepLR}
    assert node.training.rule == config.TrainingConfig.rule and node.seed == config.NetConfig.seed
    assert node.placement.strategy == config.PlacementConfig.strategy and node.model.sizes == [784, 200, 200, 10]


def test_choices_are_enums_and_keep_comparing_as_strings():
    from distspike.config import PlacementConfig, Routing, Rule, Strategy, TrainingConfig
    t = TrainingConfig(rule="fsgd")
    assert t.rule is Rule.fsgd and t.rule == "fsgd" and f"{t.rule}" == "fsgd" and repr(t.rule) == "'fsgd'"
    assert [r.value for r in Routing] == ["bfs", "dfs"] and [s.value for s in Strategy][:2] == ["PACK", "SPREAD"]
    assert PlacementConfig("spread").strategy is Strategy.SPREAD
    with pytest.raises(ConfigError, match=r"^training.rule='sgdd' is not one of \['sgd', 'fsgd'\]$"):
        TrainingConfig(rule="sgdd")


def test_the_cli_uses_only_hydras_public_api():
    for path in (ROOT / "distspike").rglob("*.py"):
        assert "hydra._internal" not in path.read_text(), path
