"""Experiment tracking of ``distspike-train`` runs: ``logging.tracker=none|mlflow|tensorboard``.

Edge code only (nothing in the kernels or runtimes knows about it): the job opens a
tracker, logs its resolved config, then one set of metrics per epoch (``EpochRecord``:
step = epoch) and the final results of ``metrics.json``. A Hydra sweep is one
experiment with one run per job (``TrackContext``):

- ``mlflow``: experiment named after the sweep directory (a single run: the job name),
  one MLflow run per job, named by its job number (a single run: its directory's name).
  The store is ``logging.tracking_uri``, or by default the file store
  ``file:<sweep or run dir>/mlruns`` (no server; MLflow >= 3.7 keeps file stores behind
  ``MLFLOW_ALLOW_FILE_STORE=true``, which is set for a ``file:`` URI).
- ``tensorboard`` (tensorboardX: neither TensorFlow nor torch): one event-file
  directory per run, ``<logging.tracking_uri or <sweep or run dir>/tensorboard>/<run>``,
  so ``tensorboard --logdir <sweep dir>/tensorboard`` shows a sweep's jobs side by side.

Both packages are the optional extra ``distspike[track]``; a missing one is one line.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from distspike.cli.errors import UserError, full_errors, one_line
from distspike.config import LoggingConfig, Tracker
from distspike.runtime.interrupt import Interrupted

#: the module each tracker needs, and where it comes from
PACKAGES = {Tracker.mlflow: "mlflow", Tracker.tensorboard: "tensorboardX"}
EXTRA = "pip install 'distspike[track]'"
#: keys of one epoch's record logged per epoch
EPOCH_KEYS = ("train_error", "test_error", "samples_per_s", "seconds")


@dataclass(frozen=True)
class TrackContext:
    """Where a job's run goes: its experiment, its run name, the default store's directory and tags."""

    experiment: str
    run: str
    root: Path
    tags: dict = field(default_factory=dict)

    @classmethod
    def single(cls, run_dir: Path, experiment: str = "distspike-train") -> "TrackContext":
        """A run that is no sweep job: the store lives in its own directory."""
        run_dir = Path(run_dir).resolve()
        return cls(experiment, run_dir.name, run_dir, {"run_dir": str(run_dir)})


def check_available(logging: LoggingConfig) -> None:
    """``UserError`` naming the extra to install if the tracker's package is missing."""
    module = PACKAGES.get(logging.tracker)
    if module is not None and importlib.util.find_spec(module) is None:
        raise UserError(f"logging.tracker={logging.tracker}: the {module} package is not installed; "
                        f"install the tracking extra: {EXTRA}")


def flatten(node: dict, prefix: str = "") -> dict[str, str]:
    """A nested config as dotted keys with string values (lists as their YAML flow form)."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return out


def numbers(metrics: dict) -> dict[str, float]:
    """The top-level numeric entries of ``metrics.json`` (the final results)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class NoTracker:
    """``logging.tracker=none``: every call does nothing."""

    def log_config(self, cfg: dict) -> None:
        """Nothing to log."""

    def log_epoch(self, rec) -> None:
        """Nothing to log."""

    def finish(self, metrics: dict) -> None:
        """Nothing to log."""

    def close(self, failed: bool) -> None:
        """Nothing to close."""


class MlflowTracker(NoTracker):
    """One MLflow run of the context's experiment, through ``MlflowClient`` (no global state)."""

    def __init__(self, uri: str, ctx: TrackContext):
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient
        self.client = MlflowClient(uri)
        self.run_id = self.client.create_run(self._experiment(ctx.experiment), run_name=ctx.run,
                                             tags={k: str(v) for k, v in ctx.tags.items()}).info.run_id
        self.finished = False

    def _experiment(self, name: str) -> str:
        """The id of experiment ``name``, created if needed (parallel sweep jobs may race to create it)."""
        from mlflow.exceptions import MlflowException
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:
            return self.client.get_experiment_by_name(name).experiment_id

    def log_config(self, cfg: dict) -> None:
        """Every config key as a run parameter (MLflow takes at most 100 per batch)."""
        from mlflow.entities import Param
        params = [Param(k, v[:6000]) for k, v in flatten(cfg).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log_epoch(self, rec) -> None:
        """The epoch's errors and throughput, at step = epoch."""
        from mlflow.entities import Metric
        now = _millis()
        batch = [Metric(k, float(getattr(rec, k)), now, rec.epoch) for k in EPOCH_KEYS]
        self.client.log_batch(self.run_id, metrics=batch)

    def finish(self, metrics: dict) -> None:
        """The final results (``final_test_error``, spike totals...) and the run marked finished."""
        from mlflow.entities import Metric
        now = _millis()
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, 0) for k, v in numbers(metrics).items()])
        self.client.set_tag(self.run_id, "status", str(metrics.get("status", "")))
        self.client.set_terminated(self.run_id, "FINISHED")
        self.finished = True

    def close(self, failed: bool) -> None:
        """A run that did not finish is marked failed (or killed, after Ctrl-C)."""
        if not self.finished:
            self.client.set_terminated(self.run_id, "FAILED" if failed else "KILLED")


class TensorBoardTracker(NoTracker):
    """One tensorboardX event-file directory per run."""

    def __init__(self, logdir: Path):
        from tensorboardX import SummaryWriter
        self.logdir = Path(logdir)
        self.writer = SummaryWriter(logdir=str(self.logdir), flush_secs=10)

    def log_config(self, cfg: dict) -> None:
        """The resolved config as a YAML text summary."""
        text = yaml.safe_dump(cfg, sort_keys=False)
        self.writer.add_text("config", "```\n" + text + "```", 0)

    def log_epoch(self, rec) -> None:
        """The epoch's errors and throughput as scalars ``epoch/<key>`` at step = epoch."""
        for k in EPOCH_KEYS:
            self.writer.add_scalar(f"epoch/{k}", float(getattr(rec, k)), rec.epoch)
        self.writer.flush()

    def finish(self, metrics: dict) -> None:
        """The final results as scalars ``final/<key>`` (step = epochs) and ``metrics.json`` as text."""
        step = int(metrics.get("epochs", 0))
        for k, v in numbers(metrics).items():
            self.writer.add_scalar(f"final/{k}", v, step)
        self.writer.add_text("metrics", "```\n" + json.dumps(metrics, indent=1, default=str) + "\n```", step)

    def close(self, failed: bool) -> None:
        """Flush and close the event file."""
        self.writer.close()


def _millis() -> int:
    import time
    return int(time.time() * 1000)


def open_tracker(logging: LoggingConfig, ctx: TrackContext) -> NoTracker:
    """The tracker ``logging.tracker`` names, on ``logging.tracking_uri`` or the context's default store.

    A store that cannot be opened (a bad URI, no permission...) is one ``UserError`` line.
    """
    check_available(logging)
    if logging.tracker is Tracker.none:
        return NoTracker()
    try:
        if logging.tracker is Tracker.mlflow:
            return MlflowTracker(logging.tracking_uri or (ctx.root / "mlruns").as_uri(), ctx)
        base = Path(logging.tracking_uri).expanduser() if logging.tracking_uri else ctx.root / "tensorboard"
        return TensorBoardTracker(base / ctx.run)
    except Exception as ex:  # noqa: BLE001 - whatever the tracker library raises, the user gets one line
        if full_errors():
            raise
        where = logging.tracking_uri or ctx.root
        raise UserError(f"logging.tracker={logging.tracker}: cannot open the store {str(where)!r}: "
                        f"{type(ex).__name__}: {one_line(str(ex))}") from ex


@contextlib.contextmanager
def tracked(logging: LoggingConfig, ctx: TrackContext, cfg: dict):
    """Open the tracker and log ``cfg``; on leaving, close it (a run left by an exception is marked failed)."""
    tracker = open_tracker(logging, ctx)
    failed = True
    try:
        tracker.log_config(cfg)
        yield tracker
        failed = False
    except (Interrupted, KeyboardInterrupt):
        failed = False
        raise
    finally:
        tracker.close(failed)

