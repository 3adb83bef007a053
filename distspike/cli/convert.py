"""Plain config containers (resolved Hydra config) -> the typed objects of ``distspike.config``.

Hydra stops at the entry point: ``run_spec`` turns the resolved config into a frozen
``RunSpec`` of typed objects (``build``, field for field: the tree Hydra composes is
generated from these very classes, ``cli.schema``), and only those travel further.
Layer sizes may contain ``null`` in the first (input) and last (output) position; they
are filled in from the dataset's feature and class counts by ``RunSpec.net_config``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_type_hints

import numpy as np

from distspike.cli import checkpoint
from distspike.config import (CheckpointConfig, Choice, ConfigError, LoggingConfig, ModelConfig, NetConfig,
                              PlacementConfig, Routing, RuntimeConfig, TrainingConfig)
from distspike.data import DATASETS, Dataset, load_dataset


#: the datasets ``data.name`` may choose (``distspike.data.DATASETS``)
DataName = Choice("DataName", {name: name for name in sorted(DATASETS)}, module=__name__)


@dataclass(frozen=True)
class DataSpec:
    """Which dataset to load, from where, and which leading subsets to keep."""

    name: DataName
    root: str | None = None
    download: bool = True
    n_train: int | None = None
    n_test: int | None = None
    options: dict = field(default_factory=dict)
    shuffle_seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", DataName.of("data.name", self.name))
        for key in ("n_train", "n_test", "shuffle_seed"):
            n = getattr(self, key)
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
                raise ConfigError(f"data.{key}={n!r} must be a non-negative integer or null")
        if self.root is not None and not self.bundled and not Path(self.root).expanduser().is_dir():
            # never create (or download into) a root the user mistyped
            raise ConfigError(f"data.root={self.root!r} is not an existing directory")

    @property
    def bundled(self) -> bool:
        """True for datasets that need no files (sklearn's digits)."""
        return DATASETS[self.name] is None

    def load(self) -> Dataset:
        """Load the dataset, shuffle its training split if asked, keep the first ``n_train`` / ``n_test``."""
        options = dict(self.options)
        if not self.bundled:
            options["download"] = self.download
        ds = load_dataset(self.name, self.root, **options)
        if self.shuffle_seed is not None:
            perm = np.random.default_rng(self.shuffle_seed).permutation(ds.n_train)  # (n_train,)
            ds = replace(ds, x_train=ds.x_train[perm], y_train=ds.y_train[perm])
        for key, n, available in (("n_train", self.n_train, ds.n_train), ("n_test", self.n_test, ds.n_test)):
            if n is not None and n > available:
                raise ConfigError(f"data.{key}={n} exceeds the {available} samples of data {self.name!r}")
        return ds.subset(self.n_train, self.n_test)

    def identity(self) -> dict:
        """What determines the samples (root and download do not): for resume checks."""
        return {"name": self.name, "n_train": self.n_train, "n_test": self.n_test, "options": self.options,
                "shuffle_seed": self.shuffle_seed}


@dataclass(frozen=True)
class RunSpec:
    """A whole ``distspike-train`` job, typed; model sizes may still hold ``None``.

    Its fields are the command line's top-level keys (``cli.schema`` generates Hydra's
    tree from them). ``placement`` is a group of its own there; the runtime carries it.
    """

    model: dict = field(default_factory=lambda: asdict(ModelConfig()), metadata={"node": ModelConfig})
    training: TrainingConfig = field(default_factory=TrainingConfig)
    routing: Routing = NetConfig.routing
    data: DataSpec = field(default_factory=lambda: DataSpec("mnist"))
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    seed: int = NetConfig.seed
    resume: str | None = None
    progress: bool | None = None
    eval_train: int | None = None

    def __post_init__(self) -> None:
        if self.eval_train is not None and (isinstance(self.eval_train, bool) or not isinstance(self.eval_train, int)
                                            or self.eval_train <= 0):
            raise ConfigError(f"eval_train={self.eval_train!r} must be a positive integer or null")
        object.__setattr__(self, "runtime", replace(self.runtime, placement=self.placement))

    def net_config(self, n_features: int | None = None, n_classes: int | None = None) -> NetConfig:
        """The typed net; ``None`` counts (no data yet) leave auto sizes as placeholders."""
        sizes = resolve_sizes(self.model["sizes"], n_features, n_classes, self.data.name)
        model = ModelConfig(tuple(sizes), self.model["w_init"], self.model["dtype"])
        return NetConfig(model, self.training, self.routing, self.seed)

    def check(self) -> None:
        """Everything that can be checked before the data are loaded."""
        net = self.net_config()
        if None not in self.model["sizes"]:
            self.runtime.check_against(net.model)


def resolve_sizes(sizes: list, n_features: int | None, n_classes: int | None, data_name: str) -> list:
    """Fill ``null`` input/output sizes from the data and check explicit ones against it.

    Without data (``None`` counts) an auto size becomes the placeholder 1, so that the
    other sizes can still be validated.
    """
    sizes = list(sizes)
    for i in range(1, len(sizes) - 1):
        if sizes[i] is None:
            raise ConfigError(f"model.sizes[{i}]=None: only the first (input) and last (output) "
                              "sizes may be null (taken from the data)")
    for i, n_data, what in ((0, n_features, "input features"), (len(sizes) - 1, n_classes, "classes")):
        if not sizes or i >= len(sizes):
            continue
        if sizes[i] is None:
            sizes[i] = 1 if n_data is None else n_data
        elif n_data is not None and sizes[i] != n_data:
            raise ConfigError(f"model.sizes[{i}]={sizes[i]!r} does not match the {n_data} {what} "
                              f"of data {data_name!r} (use null to take it from the data)")
    return sizes


def build(cls: type, node: dict):
    """The frozen dataclass ``cls`` from its resolved config node (nested dataclasses too).

    Keys the node lacks keep their defaults; each constructor checks its values and
    raises ``ConfigError`` naming the key.
    """
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name in node:
            value = node[f.name]
            kwargs[f.name] = build(hints[f.name], value) if is_dataclass(hints[f.name]) else value
    return cls(**kwargs)


def run_spec(cfg: dict[str, Any]) -> RunSpec:
    """Typed ``RunSpec`` of a resolved config container; raises ``ConfigError`` naming the key."""
    spec = build(RunSpec, cfg)
    spec.check()
    return spec


def identity(net: NetConfig, spec: RunSpec) -> dict:
    """What a checkpoint must share with a run that resumes it (``checkpoint.identity``)."""
    return checkpoint.identity(net, spec.data.identity(), spec.runtime.shards)
