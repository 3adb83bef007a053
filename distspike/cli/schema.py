"""Structured-config schema of ``distspike-train``, registered in Hydra's ConfigStore.

``conf/config.yaml`` lists ``distspike_schema`` first in its defaults, so every group
option, experiment file and command-line override is merged into these typed nodes:
an unknown key (``training.ruel=sgd``) or a value of the wrong type
(``training.eta=abc``) is rejected by Hydra with the key named. Value ranges and
choices are checked by the frozen dataclasses of ``distspike.config`` at conversion.
"""
from __future__ import annotations

from dataclasses import dataclass, field, is_dataclass
from typing import Any, Dict, List, Optional, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from distspike.config import CheckpointConfig, ConfigError, ModelConfig, TrainingConfig

SCHEMA_NAME = "distspike_schema"


# Defaults come from the typed configs, so the two never drift apart.
@dataclass
class ModelSchema:
    sizes: List[Optional[int]] = field(default_factory=lambda: list(ModelConfig.sizes))
    w_init: float = ModelConfig.w_init
    dtype: str = ModelConfig.dtype


@dataclass
class TrainingSchema:
    rule: str = TrainingConfig.rule
    smooth: bool = TrainingConfig.smooth
    eta: float = TrainingConfig.eta
    steps: int = TrainingConfig.steps
    epochs: int = TrainingConfig.epochs
    hold_error: bool = TrainingConfig.hold_error
    backward_reset: str = TrainingConfig.backward_reset
    column_read: str = TrainingConfig.column_read
    regularization: float = TrainingConfig.regularization
    step_lr: str = TrainingConfig.step_lr


@dataclass
class DataSchema:
    name: str = "mnist"
    root: Optional[str] = None
    download: bool = True
    n_train: Optional[int] = None
    n_test: Optional[int] = None
    options: Dict[str, Any] = field(default_factory=dict)
    shuffle_seed: Optional[int] = None


@dataclass
class RuntimeSchema:
    kind: str = "local"
    shards: int = 1
    address: Optional[str] = None
    temp_dir: Optional[str] = None
    compiled: Any = "auto"  # true, false or auto (runtime/cores.py)


@dataclass
class ActorSchema:
    num_cpus: float = 1.0
    memory: int = 0
    resources: Dict[str, float] = field(default_factory=dict)


@dataclass
class PlacementSchema:
    strategy: str = "PACK"
    forward: ActorSchema = field(default_factory=ActorSchema)
    backward: ActorSchema = field(default_factory=ActorSchema)
    timeout_s: float = 60.0
    pin_shards: bool = False


@dataclass
class LoggingSchema:
    traffic: bool = True
    every: int = 1
    flush_rows: int = 50_000


@dataclass
class CheckpointSchema:
    keep: int = CheckpointConfig.keep
    every_samples: int = CheckpointConfig.every_samples
    max_restarts: int = CheckpointConfig.max_restarts


@dataclass
class TrainSchema:
    """The whole ``distspike-train`` config; ``routing`` is set by the ``routing`` group."""

    model: ModelSchema = field(default_factory=ModelSchema)
    training: TrainingSchema = field(default_factory=TrainingSchema)
    routing: str = "bfs"
    data: DataSchema = field(default_factory=DataSchema)
    runtime: RuntimeSchema = field(default_factory=RuntimeSchema)
    placement: PlacementSchema = field(default_factory=PlacementSchema)
    logging: LoggingSchema = field(default_factory=LoggingSchema)
    checkpoint: CheckpointSchema = field(default_factory=CheckpointSchema)
    seed: int = 1234
    resume: Optional[str] = None
    progress: Optional[bool] = None
    eval_train: Optional[int] = None


def unknown_keys(node: dict, cls: type = TrainSchema, prefix: str = "") -> list[str]:
    """Dotted keys of ``node`` that the schema ``cls`` does not declare (dict fields are open)."""
    hints = get_type_hints(cls)
    out = []
    for key, value in node.items():
        if key not in hints:
            out.append(f"{prefix}{key}")
        elif is_dataclass(hints[key]) and isinstance(value, dict):
            out += unknown_keys(value, hints[key], f"{prefix}{key}.")
    return out


def to_checked_container(cfg) -> dict:
    """The job config as a resolved plain dict, after re-checking its keys against the schema.

    Hydra lets ``+key=value`` add keys the schema does not know; they are rejected here
    (``+training.ruel=sgd`` is still a typo).
    """
    container = OmegaConf.to_container(cfg, resolve=True)
    extra = unknown_keys(container)
    if extra:
        raise ConfigError(f"unknown config key {', '.join(extra)} (not in the distspike-train schema)")
    return container


def register() -> None:
    """Store the schema under ``distspike_schema`` (idempotent; Hydra reads it at compose)."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=TrainSchema)


register()
