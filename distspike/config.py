"""Typed configuration objects of the spiking MLP.

These are plain frozen dataclasses: only these objects (never an OmegaConf node) travel
into the runtimes and across actor boundaries. They are also the one config tree of the
command line: ``distspike.cli.schema`` generates Hydra's structured config from their
fields, so a choice (an ``Enum`` below) is checked by its type and an unknown key is
refused by Hydra. Every constructor validates its fields and raises ``ConfigError``
with a message that names the key and quotes the offending value.

``metadata={"node": T}`` on a field gives the type its command-line node has where it
differs from the runtime's (``sizes`` may hold ``null`` auto sizes until the data are
known; ``resources`` is a mapping there, a tuple of pairs here).
"""
from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Dict, List, Optional


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the value."""


class Choice(str, Enum):
    """A string choice: it compares, hashes, prints and serializes (JSON) as its value."""

    __str__ = str.__str__
    __format__ = str.__format__
    __repr__ = str.__repr__

    @classmethod
    def of(cls, key: str, value):
        """The member named or valued ``value``; ``ConfigError`` naming ``key`` and the choices otherwise."""
        try:
            return value if isinstance(value, cls) else cls(value)
        except (ValueError, TypeError):
            raise ConfigError(f"{key}={value!r} is not one of {[m.value for m in cls]}") from None


class DType(Choice):
    """Number type of weights and potentials; ``int``: integer mode (paper section 5)."""

    float32 = "float32"
    float64 = "float64"
    int = "int"


class Rule(Choice):
    """Weight update rule: spiking SGD or fractional SGD (paper section 3.7)."""

    sgd = "sgd"
    fsgd = "fsgd"


class ColumnRead(Choice):
    """FSGD: whether the backward weights read a passed error's column before or after its update."""

    before_update = "before_update"
    after_update = "after_update"


class Reset(Choice):
    """What the backward quantizers do at each sample start."""

    none = "none"
    random = "random"
    zero = "zero"


class StepLR(Choice):
    """FSGD's learning rate over a sample's time steps (Fig. 3 "Fractional Temporal", our definition):
    ``constant`` (``g_t = 1``) or ``linear_decay`` (``g_t = 2 (T - t) / (T + 1)``, mean 1)."""

    constant = "constant"
    linear_decay = "linear_decay"


class Routing(Choice):
    """Event routing: breadth-first (FIFO) or depth-first (LIFO, paper appendix F)."""

    bfs = "bfs"
    dfs = "dfs"
#: a potential this many spike units above threshold means a diverged run (``kernels.herding.MAX_SPIKES_PER_UNIT``)
SPIKES_PER_UNIT_MAX = 1e6
INT64_MAX = 2 ** 63 - 1
W_SIGMAS = 6  # |W| <= 6 * w_init: a draw of N(0, 1) beyond 6 has probability 2e-9


def _set_choice(obj, name: str, key: str, cls: type[Choice]) -> None:
    """Replace the field ``name`` of a frozen dataclass by its ``cls`` member (``ConfigError`` naming ``key``)."""
    object.__setattr__(obj, name, cls.of(key, getattr(obj, name)))


def _check_positive(key: str, value, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0 or not math.isfinite(value):
        what = "a positive integer" if integer else "a positive (finite) number"
        raise ConfigError(f"{key}={value!r} must be {what}")


def _check_bool(key: str, value) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} must be true or false")


def _check_optional_str(key: str, value) -> None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{key}={value!r} must be a string or null")


@dataclass(frozen=True)
class ModelConfig:
    """Topology ``n0-n1-...-nL`` and weight initialisation ``W ~ w_init * N(0, 1)``."""

    sizes: tuple[int, ...] = field(default=(784, 200, 200, 10), metadata={"node": List[Optional[int]]})
    w_init: float = 0.01
    dtype: DType = DType.float64

    def __post_init__(self) -> None:
        if not isinstance(self.sizes, (list, tuple)):
            raise ConfigError(f"model.sizes={self.sizes!r} must be a list of layer sizes")
        sizes = tuple(self.sizes)
        object.__setattr__(self, "sizes", sizes)
        if len(sizes) < 2:
            raise ConfigError(f"model.sizes={list(sizes)!r} needs at least an input and an output size")
        for i, n in enumerate(sizes):
            _check_positive(f"model.sizes[{i}]", n, integer=True)
        w = self.w_init
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < math.inf:
            raise ConfigError(f"model.w_init={w!r} must be a non-negative (finite) number")
        _set_choice(self, "dtype", "model.dtype", DType)

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1


@dataclass(frozen=True)
class TrainingConfig:
    """Training rule of the spiking net (paper sections 3.7-3.8, Table 3 switches)."""

    rule: Rule = Rule.sgd
    smooth: bool = False
    eta: float = 0.01
    steps: int = 10
    epochs: int = 1
    hold_error: bool = True
    backward_reset: Reset = Reset.none
    column_read: ColumnRead = ColumnRead.before_update
    regularization: float = 0.0
    step_lr: StepLR = StepLR.constant

    def __post_init__(self) -> None:
        _set_choice(self, "rule", "training.rule", Rule)
        _set_choice(self, "column_read", "training.column_read", ColumnRead)
        _set_choice(self, "backward_reset", "training.backward_reset", Reset)
        _set_choice(self, "step_lr", "training.step_lr", StepLR)
        self._check_fig3_options()
        _check_positive("training.eta", self.eta)
        _check_positive("training.steps", self.steps, integer=True)
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise ConfigError(f"training.epochs={self.epochs!r} must be a non-negative integer")
        for key in ("smooth", "hold_error"):
            _check_bool(f"training.{key}", getattr(self, key))

    def _check_fig3_options(self) -> None:
        """``regularization`` and ``step_lr`` (paper Fig. 3 variants) are FSGD options."""
        lam = self.regularization
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not (0 <= lam < float("inf")):
            raise ConfigError(f"training.regularization={lam!r} must be a finite number >= 0")
        if lam > 0 and (self.rule != "fsgd" or self.smooth or not self.hold_error):
            raise ConfigError(f"training.regularization={lam!r} needs training.rule=fsgd, smooth=false and "
                              f"hold_error=true (got rule={self.rule!r}, smooth={self.smooth!r}, "
                              f"hold_error={self.hold_error!r})")
        if self.step_lr != "constant" and self.rule != "fsgd":
            raise ConfigError(f"training.step_lr={self.step_lr!r} needs training.rule=fsgd (got {self.rule!r})")

    @property
    def fractional(self) -> bool:
        return self.rule == "fsgd"

    def step_factors(self) -> tuple[float, ...]:
        """Learning-rate factor ``g_t`` of each time step ``t = 0..T-1`` (FSGD, "Fractional Temporal").

        ``constant``: ``g_t = 1``. ``linear_decay`` (our definition of the paper's "higher
        learning rate for early events", Fig. 3; the authors' public code has none):
        ``g_t = 2 (T - t) / (T + 1)``, from ``2T/(T+1)`` at the first step down to
        ``2/(T+1)`` at the last, averaging 1 over the ``T`` steps. An error spike of step
        ``t`` then updates its column by ``W[:, j] -= s * g_t * lr * relu(c)`` (eq. 7 scaled).
        """
        T = self.steps
        if self.step_lr == "constant":
            return (1.0,) * T
        return tuple(2.0 * (T - t) / (T + 1) for t in range(T))

    @property
    def read_first(self) -> bool:
        """FSGD: the backward weights read a passed error's column before its update (eq. 7) is applied.

        ``column_read=before_update`` is what the authors' ``BreadthRouter`` does (it calls
        consumers in reverse binding order and queues the column change); ``after_update``
        is the paper's Alg. 8 and the authors' ``DepthRouter``. Read after the update, every
        backpropagated column carries ``-lr * relu(c)`` whatever the error's sign, and FSGD
        collapses (results/README.md, Table 3).
        """
        return self.column_read == "before_update"


@dataclass(frozen=True)
class NetConfig:
    """Everything the numeric network needs: model, training rule, routing and seed."""

    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    routing: Routing = Routing.bfs
    seed: int = 1234

    def __post_init__(self) -> None:
        _set_choice(self, "routing", "routing", Routing)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be a non-negative integer")
        self._check_numerics()
        if self.model.dtype == "int":
            scale = self.training.steps ** 2 / self.training.eta
            if abs(scale - round(scale)) > 1e-9 * scale:
                raise ConfigError(
                    f"training.eta={self.training.eta!r}: integer mode needs K = T^2/eta to be an integer "
                    f"(T={self.training.steps} gives K={scale!r})")
            if self.training.smooth:
                raise ConfigError(
                    "training.smooth=True is not supported with model.dtype='int': the smooth update "
                    "divides a scaled running sum by K, which is not an integer-only operation")
            if self.training.regularization or self.training.step_lr != "constant":
                raise ConfigError(
                    "training.regularization and training.step_lr are not supported with model.dtype='int': "
                    "they scale updates by non-integer factors")

    def _check_numerics(self) -> None:
        """Refuse weights and scales that overflow or diverge at once, stating the limit.

        One input spike adds a weight (at most ``6 * w_init``) to a potential; over the
        ``T`` steps of a sample, from ``fan_in`` inputs of at most one spike per step each,
        that is ``6 * w_init * fan_in * T`` spike units, which must stay below the
        herding kernels' divergence limit of 1e6 units. In integer mode the potentials
        are int64 multiples of ``K = T^2/eta``: up to 1e6 spikes of size ``K`` must fit.
        """
        T, fan_in = self.training.steps, max(self.model.sizes[:-1])
        limit = SPIKES_PER_UNIT_MAX / (W_SIGMAS * fan_in * T)
        if self.model.w_init >= limit:
            raise ConfigError(
                f"model.w_init={self.model.w_init!r} is too large: with fan-in {fan_in} and T={T} steps one sample can "
                f"put 6*w_init*fan_in*T = {W_SIGMAS * self.model.w_init * fan_in * T:.3g} spike units on a potential, "
                f"over the divergence limit of {SPIKES_PER_UNIT_MAX:.0e}; use model.w_init < {limit:.4g}")
        k_max = INT64_MAX / SPIKES_PER_UNIT_MAX
        if self.model.dtype == "int" and T ** 2 / self.training.eta > k_max:
            raise ConfigError(
                f"training.eta={self.training.eta!r} is too small for model.dtype='int': K = T^2/eta = "
                f"{T ** 2 / self.training.eta:.3g} (T={T}) overflows int64 potentials (K <= {k_max:.3g}); "
                f"use training.eta >= {T ** 2 / k_max:.3g}")

    @property
    def scale(self) -> int:
        """Integer-mode scale ``K = T^2 / eta`` (paper section 5); 1 in float mode."""
        if self.model.dtype != "int":
            return 1
        return int(round(self.training.steps ** 2 / self.training.eta))

    def step_lrs(self) -> tuple[float, ...]:
        """FSGD step size of each time step: ``lr * g_t`` (``TrainingConfig.step_factors``); float mode."""
        return tuple(self.learning_rate * g for g in self.training.step_factors())

    @property
    def learning_rate(self) -> float:
        """``lr = eta / T^2`` (paper eq. 6/7 with counts over T steps); 1 in integer mode."""
        if self.model.dtype == "int":
            return 1
        return self.training.eta / self.training.steps ** 2


class RuntimeKind(Choice):
    """In this process, on an embedded local Ray, or on a running Ray cluster."""

    local = "local"
    ray_local = "ray_local"
    ray_cluster = "ray_cluster"


class Storage(Choice):
    """Where the Ray actors write their checkpoint and traffic parts (``docs/cluster.md``, storage).

    ``shared``: straight into the run directory, which every node must mount at the same path;
    ``collect``: into their node's own temp dir, from where the driver collects them through Ray
    into the run directory (flush, checkpoint, end); ``auto``: ``shared`` if every actor sees the
    run directory (a token the driver writes there), else ``collect``.
    """

    shared = "shared"
    collect = "collect"
    auto = "auto"


class Strategy(Choice):
    """Ray placement-group strategy; the lower-case names are accepted too (``spread``)."""

    PACK = "PACK"
    SPREAD = "SPREAD"
    STRICT_PACK = "STRICT_PACK"
    STRICT_SPREAD = "STRICT_SPREAD"
    pack = "PACK"
    spread = "SPREAD"
    strict_pack = "STRICT_PACK"
    strict_spread = "STRICT_SPREAD"

    @classmethod
    def _missing_(cls, value):
        return cls.__members__.get(value.upper()) if isinstance(value, str) else None


@dataclass(frozen=True)
class ActorResources:
    """Ray resources of one actor group: CPUs, memory (bytes) and custom node resources."""

    num_cpus: float = 1.0
    memory: int = 0
    resources: tuple[tuple[str, float], ...] = field(default=(), metadata={"node": Dict[str, float]})

    def __post_init__(self) -> None:
        c = self.num_cpus
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 <= c < math.inf:
            raise ConfigError(f"placement num_cpus={c!r} must be a non-negative number")
        if isinstance(self.memory, bool) or not isinstance(self.memory, int) or self.memory < 0:
            raise ConfigError(f"placement memory={self.memory!r} must be a non-negative integer (bytes)")
        try:
            pairs = dict(self.resources).items()
        except (TypeError, ValueError):
            raise ConfigError(f"placement resources={self.resources!r} must map resource names to amounts") from None
        for k, v in pairs:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
                raise ConfigError(f"placement resources[{k!r}]={v!r} must be a non-negative number")
        object.__setattr__(self, "resources", tuple((str(k), float(v)) for k, v in pairs))

    def bundle(self) -> dict:
        """This group's placement-group bundle: ``{"CPU": n, "memory": m, <custom>: v}``."""
        b = {"CPU": float(self.num_cpus)} if self.num_cpus else {}
        if self.memory:
            b["memory"] = float(self.memory)
        b.update(dict(self.resources))
        return b


@dataclass(frozen=True)
class PlacementConfig:
    """Placement-group strategy and per-actor-group resources; ``timeout_s`` bounds the wait.

    ``pin_shards``: shard ``k`` of every layer also asks for custom resource ``node_<k>``
    (``placement=one_per_node``; ``launch/emulated_cluster.sh`` gives node ``i`` ``node_<i>``).
    """

    strategy: Strategy = Strategy.PACK
    forward: ActorResources = field(default_factory=ActorResources)
    backward: ActorResources = field(default_factory=ActorResources)
    timeout_s: float = 60.0
    pin_shards: bool = False

    def __post_init__(self) -> None:
        _set_choice(self, "strategy", "placement.strategy", Strategy)
        _check_positive("placement.timeout_s", self.timeout_s)
        _check_bool("placement.pin_shards", self.pin_shards)


@dataclass(frozen=True)
class RuntimeConfig:
    """Where the modules run: in-process, on an embedded local Ray, or on a Ray cluster.

    ``shards`` splits every layer into that many actors (capped at the layer size is
    *not* done silently: a layer smaller than ``shards`` is a config error).
    ``address`` (``ray_cluster``) is the cluster to join, e.g. ``"ray://head:10001"``
    or ``"auto"``. ``temp_dir`` is the embedded instance's own temp directory.
    ``compiled`` (Ray runtimes): train each sample as one execution of a Ray Compiled
    Graph where the schedule allows (breadth-first, held errors, not smooth; SGD as one
    sample-wide message per actor and direction, FSGD per time step;
    ``runtime/compiled.py``); actors then pass batches through shared-memory channels.
    ``"auto"`` (the default): compiled graphs only where every actor has a physical core
    of its machine to itself, plain calls otherwise (``runtime/cores.py``).
    ``storage`` (Ray runtimes): where the actors write their parts (``Storage``); ``auto`` (the
    default) collects them through the driver only where some node does not see the run directory.
    """

    kind: RuntimeKind = RuntimeKind.local
    shards: int = 1
    address: str | None = None
    temp_dir: str | None = None
    placement: PlacementConfig = field(default_factory=PlacementConfig, metadata={"node": None})  # own group
    compiled: bool | str = field(default="auto", metadata={"node": Any})  # true, false or auto
    storage: Storage = Storage.auto

    def __post_init__(self) -> None:
        _set_choice(self, "kind", "runtime", RuntimeKind)
        _set_choice(self, "storage", "runtime.storage", Storage)
        _check_positive("runtime.shards", self.shards, integer=True)
        _check_optional_str("runtime.address", self.address)
        _check_optional_str("runtime.temp_dir", self.temp_dir)
        if not isinstance(self.compiled, bool) and self.compiled != "auto":
            raise ConfigError(f"runtime.compiled={self.compiled!r} must be true, false or auto")
        if self.kind == "ray_cluster" and not self.address:
            raise ConfigError("runtime.address=None: runtime=ray_cluster needs the address of the cluster to join")

    def check_against(self, model: ModelConfig) -> None:
        """Every layer must have at least ``shards`` units to own."""
        for i, n in enumerate(model.sizes):
            if i > 0 and n < self.shards:
                raise ConfigError(f"runtime.shards={self.shards!r} is larger than layer {i} "
                                  f"(model.sizes[{i}]={n})")


@dataclass(frozen=True)
class CheckpointConfig:
    """When to save the state of a run, how many saves to keep, how often to recover from actor loss.

    ``every_samples``: a checkpoint every that many training samples within an epoch
    (0: only at epoch ends, which are always saved). ``keep``: newest checkpoints kept
    on disk (0: all). ``max_restarts``: how many times one run may restore its actors
    from the last checkpoint after losing one (Ray runtimes); beyond that it fails.
    """

    keep: int = 2
    every_samples: int = 0
    max_restarts: int = 3

    def __post_init__(self) -> None:
        hints = {"keep": " (0 = keep all)", "every_samples": " (0 = only at epoch ends)", "max_restarts": ""}
        for key, hint in hints.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"checkpoint.{key}={value!r} must be a non-negative integer{hint}")


class Tracker(Choice):
    """Experiment tracker of a run (``distspike/cli/tracking.py``; extra ``distspike[track]``)."""

    none = "none"
    mlflow = "mlflow"
    tensorboard = "tensorboard"


@dataclass(frozen=True)
class RunTags:
    """Which run wrote a traffic row: columns of every row (docs/traffic.md), filled in by the job and the net.

    ``run_id``: unique per run (kept by a resumed run; "" until the net draws one); ``job``: the sweep's job
    number (-1: not a sweep job); ``routing``/``rule``: the net's.
    """

    run_id: str = ""
    routing: str = ""
    rule: str = ""
    job: int = -1

    def __post_init__(self) -> None:
        for key in ("run_id", "routing", "rule"):
            if not isinstance(getattr(self, key), str):
                raise ConfigError(f"logging.tags.{key}={getattr(self, key)!r} must be a string")
        if isinstance(self.job, bool) or not isinstance(self.job, int) or self.job < -1:
            raise ConfigError(f"logging.tags.job={self.job!r} must be an integer >= -1 (-1: not a sweep job)")


@dataclass(frozen=True)
class LoggingConfig:
    """Per-actor spike traffic logs (on/off, every k-th sample, rows buffered per flush), their rows'
    run tags, and the tracker.

    ``tracker`` logs the config, each epoch's errors and the final results to MLflow or
    TensorBoard; ``tracking_uri`` is the MLflow tracking URI or the TensorBoard log dir
    (None: under the run's, or the sweep's, directory). The runtimes ignore both.
    ``tags`` (``RunTags``) are filled in by the job and the net, not set on the command line.
    """

    traffic: bool = True
    every: int = 1
    flush_rows: int = 16_384
    tracker: Tracker = Tracker.none
    tracking_uri: str | None = None
    tags: RunTags = field(default=RunTags(), metadata={"node": None})  # filled in by the job (for_net)

    def __post_init__(self) -> None:
        _check_bool("logging.traffic", self.traffic)
        _check_positive("logging.every", self.every, integer=True)
        _check_positive("logging.flush_rows", self.flush_rows, integer=True)
        _set_choice(self, "tracker", "logging.tracker", Tracker)
        _check_optional_str("logging.tracking_uri", self.tracking_uri)
        if not isinstance(self.tags, RunTags):
            raise ConfigError(f"logging.tags={self.tags!r} must be a RunTags")

    def for_net(self, cfg: NetConfig) -> LoggingConfig:
        """These settings, tagged with ``cfg``'s routing and rule, and a fresh run id unless one is set."""
        tags = replace(self.tags, run_id=self.tags.run_id or uuid.uuid4().hex, routing=str(cfg.routing),
                       rule=str(cfg.training.rule))
        return replace(self, tags=tags)
