"""The Python API: one ``Net`` object with a handful of methods, numpy in and numpy out (docs/api.md).

A thin layer over the engine that ``distspike-train`` runs: the net is built by
``runtime.make_net`` (in this process or as Ray actors), trained by the same epoch loop
(``runtime.loop.fit``, with actor-loss recovery on Ray), saved and loaded in the
checkpoint format of ``cli.checkpoint`` (so ``Net.load`` also reads a run directory of
``distspike-train``), and its traffic logs are the per-actor Parquet files of
``logs.traffic``, opened as one ``pyarrow.dataset``. Ray and pyarrow are imported only
when a net needs them.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from distspike.cli import checkpoint
from distspike.config import LoggingConfig, ModelConfig, NetConfig, RuntimeConfig, TrainingConfig
from distspike.data.base import DataError, Dataset, _as_features
from distspike.runtime import make_net
from distspike.runtime.loop import fit
from distspike.runtime.recovery import Guard, state_layout, traffic_parts
from distspike.runtime.watch import watch_outputs

__all__ = ["Net"]

#: ``runtime=`` of ``Net``: ``"ray"`` is the embedded local Ray of ``runtime=ray_local``
RUNTIMES = {"local": "local", "ray": "ray_local", "ray_local": "ray_local", "ray_cluster": "ray_cluster"}
_MODEL_KEYS = {f.name for f in fields(ModelConfig)} - {"sizes"}
_TRAINING_KEYS = {f.name for f in fields(TrainingConfig)} - {"rule", "epochs"}
_ARRAYS = {"name": "arrays"}  # the data identity of a checkpoint of arrays given to ``fit``


def runtime_config(runtime: str, shards: int = 1, address: str | None = None) -> RuntimeConfig:
    """``RuntimeConfig`` of a ``runtime=`` name (``local``, ``ray``, ``ray_local``, ``ray_cluster``)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime={runtime!r} is not one of {list(RUNTIMES)}")
    return RuntimeConfig(RUNTIMES[runtime], shards, address)


def net_config(sizes, rule: str = "sgd", routing: str = "bfs", seed: int = 1234, **options) -> NetConfig:
    """``NetConfig`` from keywords: the fields of ``ModelConfig`` and ``TrainingConfig`` by name."""
    unknown = sorted(set(options) - _MODEL_KEYS - _TRAINING_KEYS)
    if unknown:
        raise TypeError(f"Net() got unexpected keyword argument(s) {unknown}; "
                        f"it takes {sorted(_MODEL_KEYS | _TRAINING_KEYS)} besides sizes, rule, routing, seed")
    model = ModelConfig(sizes, **{k: v for k, v in options.items() if k in _MODEL_KEYS})
    training = TrainingConfig(rule, **{k: v for k, v in options.items() if k in _TRAINING_KEYS})
    return NetConfig(model, training, routing, seed)


def config_from_identity(ident) -> tuple[NetConfig, int]:
    """The ``NetConfig`` and shard count a checkpoint records (``checkpoint.identity``); one-line errors."""
    try:
        model, training = ident["model"], dict(ident["training"])
        cfg = NetConfig(ModelConfig(tuple(model["sizes"]), model["w_init"], model["dtype"]),
                        TrainingConfig(**training), ident["routing"], ident["seed"])
        runtime = RuntimeConfig(shards=ident["runtime"]["shards"])
        runtime.check_against(cfg.model)
        return cfg, runtime.shards
    except (KeyError, TypeError, ValueError) as ex:
        raise checkpoint.CheckpointError(f"the checkpoint's config does not describe a net "
                                         f"({type(ex).__name__}: {ex})") from None


def _features(x, n_features: int, what: str = "x") -> np.ndarray:
    """``x`` as a float64 matrix of ``n_features`` columns, at least one row, finite values."""
    x = _as_features("given", what, x)
    if x.shape[0] == 0 or x.shape[1] != n_features:
        raise DataError(f"{what} has shape {x.shape}; the net needs (n >= 1, {n_features})")
    return x


def _dataset(method: str, x, y, validation, sizes) -> Dataset:
    """The arrays given to ``method`` as a checked ``Dataset`` (test split: ``validation``, else ``x, y``)."""
    vx, vy = (x, y) if validation is None else validation
    return Dataset(method, _features(x, sizes[0]), y, _features(vx, sizes[0], "validation x"), vy,
                   n_classes=sizes[-1])


class Net:
    """A spiking MLP (``sizes`` = ``n0-n1-...-nL``) on ``runtime`` ``"local"`` (this process), ``"ray"``
    (an embedded local Ray) or ``"ray_cluster"`` (``address=``); the actors start here.

    Keywords: ``rule`` (``"sgd"``/``"fsgd"``), ``routing`` (``"bfs"``/``"dfs"``), ``seed``, ``shards``
    (actors per layer), ``run_dir`` (traffic logs go to ``run_dir/traffic``; ``save()`` writes
    ``run_dir/checkpoints``), and any field of ``ModelConfig`` / ``TrainingConfig`` (``w_init``,
    ``dtype``, ``eta``, ``steps``, ``smooth``, ``hold_error``, ``backward_reset``, ``column_read``).
    Close it (or use ``with``) to stop its actors.
    """

    def __init__(self, sizes, *, rule: str = "sgd", routing: str = "bfs", runtime: str = "local", shards: int = 1,
                 address: str | None = None, seed: int = 1234, run_dir=None, **options):
        self._open(net_config(sizes, rule, routing, seed, **options), runtime_config(runtime, shards, address),
                   LoggingConfig() if run_dir is not None else None, run_dir)

    @classmethod
    def from_config(cls, config: NetConfig, runtime: RuntimeConfig | None = None,
                    logging: LoggingConfig | None = None, run_dir=None) -> "Net":
        """A net from the typed config objects (``distspike.config``); logs traffic if ``run_dir`` is given."""
        net = cls.__new__(cls)
        logging = logging if logging is not None else LoggingConfig() if run_dir is not None else None
        net._open(config, runtime or RuntimeConfig(), logging, run_dir)
        return net

    def _open(self, cfg: NetConfig, runtime: RuntimeConfig, logging: LoggingConfig | None, run_dir) -> None:
        self.config, self.runtime = cfg, runtime
        self.run_dir = None if run_dir is None else Path(run_dir).resolve()
        self._net = make_net(cfg, runtime, logging=logging, run_dir=None if run_dir is None else str(self.run_dir))
        watch_outputs(self._net)
        self.history: list[dict] = []  # one row per epoch trained: the learning curve
        self._data, self._digest = _ARRAYS, hashlib.sha256().hexdigest()  # no data trained on yet
        self._index, self._calls0, self._train_s, self._wall_s = 0, 0, 0.0, 0.0

    # -- training and inference: numpy in, numpy out -------------------------------------
    def fit(self, x, y, epochs: int = 1, *, validation=None, eval_train: int | None = None,
            progress: bool | None = None) -> list[dict]:
        """Train online on the rows of ``x`` (labels ``y``) in order, ``epochs`` times; the epochs' curve rows.

        After each epoch the error (%) is measured on the first ``eval_train`` training samples
        (all by default) and on ``validation=(x_val, y_val)`` (default: the training data).
        """
        for key, value, least in (("epochs", epochs, 0), ("eval_train", 1 if eval_train is None else eval_train, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise ValueError(f"fit: {key}={value!r} must be an integer >= {least}")
        data = _dataset("fit", x, y, validation, self.config.model.sizes)
        t0 = time.perf_counter()
        result = fit(self._net, data.x_train, data.y_train, data.x_test, data.y_test, epochs, progress=progress,
                     eval_train=eval_train, start_epoch=self._net.epoch, guard=Guard(self._net, run_dir=self.run_dir))
        self._wall_s += time.perf_counter() - t0
        self._train_s += result.train_seconds
        rows = [asdict(r) for r in result.curve]
        self.history += rows
        self._data, self._digest, self._index = _ARRAYS, data.digest(), 0
        return rows

    def scores(self, x) -> np.ndarray:
        """The output layer's mean input ``sum_t u_L / T`` for each row of ``x``: shape ``(n, n_L)``."""
        return self._net.predict(_features(x, self.config.model.sizes[0]))

    def predict(self, x) -> np.ndarray:
        """The predicted class of each row of ``x`` (argmax of ``scores``)."""
        return self.scores(x).argmax(axis=1)

    def evaluate(self, x, y) -> float:
        """Classification error on ``(x, y)`` in percent."""
        data = _dataset("evaluate", x, y, None, self.config.model.sizes)
        return self._net.error(data.x_train, data.y_train)

    @property
    def weights(self) -> list[np.ndarray]:
        """``W_1 .. W_L`` as float64 matrices of shape ``(n_{l-1}, n_l)`` (decoded in integer mode)."""
        return self._net.weights()

    @property
    def stats(self) -> dict[str, np.ndarray]:
        """Spike totals per layer (index 0: the input quantizer) over all training so far (a loaded net
        continues the saved totals): ``fwd``, ``err_in``, ``err_passed``, ``bwd_out`` (``docs/traffic.md``)."""
        return {k: np.asarray(v) for k, v in self._net.stats.as_dict().items()}

    @property
    def samples_seen(self) -> int:
        """Training samples trained so far (over every ``fit``, and before a ``load``)."""
        return self._net.samples_seen

    # -- traffic logs and checkpoints -------------------------------------------------
    def traffic(self):
        """The traffic logged so far as a ``pyarrow.dataset.Dataset`` of ``run_dir/traffic`` (hive by actor)."""
        if self.run_dir is None:
            raise ValueError("this Net logs no traffic: build it with run_dir=... (logs go to <run_dir>/traffic)")
        self._net.backend.flush()
        import pyarrow.dataset as ds
        from distspike.logs.traffic import traffic_dir
        root = traffic_dir(self.run_dir)
        if not root.is_dir():
            raise ValueError(f"no traffic logged yet under {str(root)!r}: fit the net first")
        return ds.dataset(root, format="parquet", partitioning="hive")

    def save(self, path=None) -> Path:
        """Write a checkpoint to ``path/checkpoints/`` (default: ``run_dir``); returns its ``.npz``.

        The format is that of ``distspike-train`` (``cli/checkpoint.py``): the state as plain
        arrays, and a JSON of the config, curve, position and the state's SHA-256.
        """
        path = Path(path) if path is not None else self.run_dir
        if path is None:
            raise ValueError("save: give a path (this Net has no run_dir)")
        self._net.backend.flush()
        own_logs = self.run_dir is not None and path.resolve() == self.run_dir
        meta = {"config": checkpoint.identity(self.config, self._data, self.runtime.shards),
                "data_sha256": self._digest, "curve": self.history, "samples_seen": self._net.samples_seen,
                "traffic_parts": traffic_parts(path) if own_logs else None,
                "ray_calls": self._calls0 + int(self._net.backend.calls), "train_seconds": self._train_s,
                "wall_time_s": self._wall_s}
        return checkpoint.save(path, self._net.epoch, self._net.state_dict(), meta, index=self._index)

    @classmethod
    def load(cls, path, *, runtime: str = "local", address: str | None = None, run_dir=None) -> "Net":
        """The net of the newest valid checkpoint under ``path`` (a ``save`` path, or a ``distspike-train``
        run directory), on ``runtime``; every array is checked against the recorded config first."""
        path = Path(path)
        head = checkpoint.latest(path)
        if head is None:
            raise checkpoint.CheckpointError(f"{str(path)!r} holds no complete checkpoint under checkpoints/")
        cfg, shards = config_from_identity(head.meta.get("config"))

        def same_config(meta: dict) -> None:  # an older checkpoint of the directory must describe the same net
            checkpoint.check_compatible(meta["config"], head.meta["config"], path)
        ck = checkpoint.newest_valid(path, state_layout(cfg, shards), same_config, what=f"load {str(path)!r}")
        net = cls.from_config(cfg, runtime_config(runtime, shards, address), run_dir=run_dir)
        net._restore(ck)
        return net

    def _restore(self, ck: checkpoint.Checkpoint) -> None:
        """Load a validated checkpoint's state, position, curve and totals."""
        self._net.load_state_dict(ck.state)
        self._net.epoch, self._index = ck.epoch, ck.index
        m = ck.meta
        self.history, self._data, self._digest = list(m["curve"]), m["config"]["data"], m["data_sha256"]
        self._calls0, self._train_s, self._wall_s = m["ray_calls"], m["train_seconds"], m["wall_time_s"]

    # -- lifetime ----------------------------------------------------------------------
    def close(self) -> None:
        """Write the last traffic rows and stop the actors (and an embedded Ray this net started)."""
        self._net.close()

    def __enter__(self) -> "Net":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        sizes = "-".join(map(str, self.config.model.sizes))
        return (f"Net({sizes}, rule={self.config.training.rule!r}, routing={self.config.routing!r}, "
                f"runtime={self.runtime.kind!r}, shards={self.runtime.shards}, epochs trained={self._net.epoch})")
