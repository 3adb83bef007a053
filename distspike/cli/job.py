"""One ``distspike-train`` job: data -> net -> epochs -> run-directory outputs.

Hydra-free: it takes the resolved config as a plain dict and the run directory, so
tests and other tools can call it directly. ``resume`` continues the newest complete
checkpoint of an earlier run directory and writes into that directory; the final
weights and curve equal those of an uninterrupted run.
"""
from __future__ import annotations

import copy
import logging
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from distspike.cli import checkpoint, curve_plot, outputs, tracking
from distspike.cli.convert import RunSpec, identity, run_spec
from distspike.cli.errors import UserError, full_errors, one_line, reports_disk_full
from distspike.config import NetConfig, RuntimeConfig
from distspike.runtime import interrupt, make_net
from distspike.runtime.loop import EpochRecord, fit
from distspike.runtime.recovery import Guard, Snapshot, rewind_traffic, state_layout
from distspike.runtime.shard_state import SavedState
from distspike.runtime.watch import watch_outputs

log = logging.getLogger("distspike.train")


@dataclass
class Start:
    """Where training starts: epoch 0, or a checkpoint's position, state, curve and running totals."""

    epoch: int = 0
    index: int = 0  # samples of epoch ``epoch + 1`` already trained
    state: dict | None = None
    curve: list[dict] = field(default_factory=list)
    ray_calls: int = 0
    train_seconds: float = 0.0
    wall_time_s: float = 0.0


def find_checkpoint(spec: RunSpec, run_dir: Path, net_cfg: NetConfig, digest: str) -> checkpoint.Checkpoint | None:
    """The newest checkpoint of the run to resume that validates against this model (None if not resuming).

    Damaged or altered newer checkpoints are skipped with a warning (``checkpoint.newest_valid``);
    one written by another config or on other data is refused (``check_resumable``).
    """
    if not spec.resume:
        return None
    if not run_dir.is_dir():
        raise UserError(f"resume={spec.resume!r} is not an existing run directory")
    layout = state_layout(net_cfg, spec.runtime.shards)
    ck = checkpoint.newest_valid(run_dir, layout, lambda meta: check_resumable(meta, spec, net_cfg, run_dir, digest),
                                 what=f"resume={spec.resume!r}", whole=spec.runtime.kind == "local")
    if ck is None:
        raise UserError(f"resume={spec.resume!r} has no complete checkpoint in {str(run_dir / checkpoint.CKPT_DIR)!r}")
    return ck


def check_resumable(meta: dict, spec: RunSpec, net_cfg: NetConfig, run_dir: Path, digest: str) -> None:
    """``UserError`` unless this run has the config and data that the checkpoint ``meta`` was trained with."""
    checkpoint.check_compatible(meta["config"], identity(net_cfg, spec), run_dir)
    if meta["data_sha256"] != digest:
        raise UserError(f"resume={str(run_dir)!r}: the data differ from those the checkpoint was trained on "
                        f"(sha256 {digest[:16]}..., checkpoint: {meta['data_sha256'][:16]}...)")


def resume_point(ck: checkpoint.Checkpoint | None, run_dir: Path) -> Start:
    """Epoch 0, or the (validated) checkpoint's state, curve and totals."""
    if ck is None:
        return Start()
    m = ck.meta
    log.info("resuming %s after epoch %d + %d samples", run_dir, ck.epoch, ck.index)
    return Start(ck.epoch, ck.index, ck.state, m["curve"], m["ray_calls"], m["train_seconds"], m["wall_time_s"])


def rewind_logs(ck: checkpoint.Checkpoint | None, run_dir: Path) -> None:
    """Move aside the traffic parts the resumed run wrote after its checkpoint (they will be replayed)."""
    if ck is not None:
        rewind_traffic(run_dir, ck.meta.get("traffic_parts"), f"resume-{ck.state_path.stem}-{int(time.time())}")


def job_runtime(runtime: RuntimeConfig, run_dir: Path) -> tuple[RuntimeConfig, Path | None]:
    """Give an embedded Ray its own temp dir (under the run dir or /tmp); the fallback dir to clean."""
    if runtime.kind != "ray_local" or runtime.temp_dir:
        return runtime, None
    temp_dir, fallback = outputs.ray_temp_dir(run_dir)
    return replace(runtime, temp_dir=str(temp_dir)), temp_dir if fallback else None


def open_net(net_cfg: NetConfig, runtime: RuntimeConfig, spec: RunSpec, run_dir: Path, job: int = -1):
    """``make_net``; a runtime that cannot start or place its actors is a one-line user error.

    The traffic rows carry the run's id and sweep job number (``outputs.run_identity``).
    """
    run_id, job = outputs.run_identity(run_dir, job)
    logging = replace(spec.logging, tags=replace(spec.logging.tags, run_id=run_id, job=job))
    try:
        return make_net(net_cfg, runtime, logging=logging, run_dir=str(run_dir))
    except (RuntimeError, ConnectionError, TimeoutError) as ex:
        if full_errors():
            raise
        raise UserError(f"runtime={runtime.kind}: {one_line(str(ex))}") from ex


class EpochSaver:
    """``fit``'s hooks: ``__call__`` logs an epoch and appends it to ``curve.csv``; ``save`` checkpoints."""

    def __init__(self, net, run_dir: Path, ident: dict, start: Start, n_train: int, keep: int, digest: str,
                 tracker: tracking.NoTracker | None = None):
        self.net, self.run_dir, self.ident, self.n_train, self.keep = net, run_dir, ident, n_train, keep
        self.tracker = tracker or tracking.NoTracker()
        self.start, self.curve, self.digest = start, list(start.curve), digest
        self.train_seconds = start.train_seconds
        self.t0 = self.mark = time.perf_counter()
        self.skipped = start.index  # samples of the first epoch trained before this invocation
        self.saves: list[float] = []  # seconds per checkpoint written

    def wall_time(self) -> float:
        """Seconds of wall time over this and all earlier invocations of the run."""
        return self.start.wall_time_s + time.perf_counter() - self.t0

    def ray_calls(self) -> int:
        """Actor (or in-process module) calls over this and all earlier invocations."""
        return self.start.ray_calls + int(self.net.backend.calls)

    def __call__(self, rec: EpochRecord) -> None:
        log.info("epoch %d: train error %.2f %%, test error %.2f %%, %.0f samples/s, %.1f s",
                 rec.epoch, rec.train_error, rec.test_error, rec.samples_per_s, rec.seconds)
        trained, self.skipped = self.n_train - self.skipped, 0
        self.train_seconds += trained / rec.samples_per_s if rec.samples_per_s else 0.0
        self.mark = time.perf_counter()
        self.curve.append(asdict(rec))
        outputs.append_curve(self.run_dir, rec)
        curve_plot.write(self.run_dir, self.curve)
        self.tracker.log_epoch(rec)

    def save(self, snap: Snapshot) -> Path:
        """Write ``snap`` as a checkpoint (state, position, curve so far, traffic position, totals)."""
        t0 = time.perf_counter()
        mid_epoch = t0 - self.mark if snap.index else 0.0  # time into the current epoch (approximate)
        counters = snap.state.net if isinstance(snap.state, SavedState) else snap.state
        meta = {"format": 2, "config": self.ident, "data_sha256": self.digest, "curve": self.curve,
                "samples_seen": int(counters["net.samples_seen"]), "traffic_parts": snap.parts,
                "ray_calls": self.ray_calls(), "train_seconds": self.train_seconds + mid_epoch,
                "wall_time_s": self.wall_time()}
        path = checkpoint.save(self.run_dir, snap.epoch, snap.state, meta, self.keep, index=snap.index)
        self.saves.append(time.perf_counter() - t0)
        return path


def final_errors(net, data, saver: EpochSaver, eval_train: int | None) -> tuple[float, float]:
    """Errors after the last epoch (from the curve, or measured if no epoch ran at all)."""
    if saver.curve:
        return saver.curve[-1]["train_error"], saver.curve[-1]["test_error"]
    n = data.n_train if eval_train is None else min(eval_train, data.n_train)
    return net.error(data.x_train[:n], data.y_train[:n]), net.error(data.x_test, data.y_test)


def collect_metrics(net, data, spec: RunSpec, runtime: RuntimeConfig, saver: EpochSaver, guard: Guard,
                    run_dir: Path) -> dict:
    """``metrics.json``: final errors, throughput, spike totals per layer, actor calls, checkpoints, restarts."""
    train_err, test_err = guard.retry(lambda: final_errors(net, data, saver, spec.eval_train))
    spikes = guard.retry(lambda: net.stats.as_dict())
    return {
        "status": "completed",
        "final_train_error": train_err, "final_test_error": test_err,
        "epochs": saver.curve[-1]["epoch"] if saver.curve else 0,
        "samples_seen": int(net.samples_seen),
        "samples_per_s": net.samples_seen / saver.train_seconds if saver.train_seconds else 0.0,
        "train_seconds": saver.train_seconds, "wall_time_s": saver.wall_time(),
        "spikes": spikes,
        "spikes_forward_total": int(sum(spikes["fwd"])), "spikes_error_total": int(sum(spikes["err_in"])),
        "ray_calls": saver.ray_calls(),
        "runtime": {"kind": runtime.kind, "shards": runtime.shards, "address": runtime.address,
                    "placement": runtime.placement.strategy, "temp_dir": runtime.temp_dir,
                    "storage": getattr(getattr(net.backend, "store", None), "mode", None)},  # as settled (Ray)
        "model": list(net.cfg.model.sizes), "routing": net.cfg.routing, "rule": net.cfg.training.rule,
        "data": spec.data.name, "n_train": data.n_train, "n_test": data.n_test, "seed": net.cfg.seed,
        "resumed_from_epoch": saver.start.epoch, "resumed_from_index": saver.start.index, "run_dir": str(run_dir),
        "checkpoints": {"saved": len(saver.saves), "seconds_per_save": statistics.fmean(saver.saves or [0.0]),
                        "every_samples": spec.checkpoint.every_samples},
        "restarts": guard.restarts,
    }


def train(net, data, spec: RunSpec, run_dir: Path, start: Start, digest: str,
          tracker: tracking.NoTracker | None = None) -> tuple[EpochSaver, Guard]:
    """Load the checkpoint state (if any) and run the remaining epochs, checkpointing at the cadence."""
    ck = spec.checkpoint
    guard = Guard(net, ck.every_samples, None, ck.max_restarts, run_dir,
                  parts_dir=lambda epoch, index: checkpoint.parts_path(run_dir, epoch, index))
    if start.state is not None:
        guard.load(start.state)  # on Ray, a format-4 checkpoint is read by the actors, part by part
        guard.initial = start.state
        net.epoch = start.epoch
    watch_outputs(net)
    saver = EpochSaver(net, run_dir, identity(net.cfg, spec), start, data.n_train, ck.keep, digest, tracker)
    guard.save_hook = saver.save
    todo = max(net.cfg.training.epochs - start.epoch, 0)
    if start.epoch and not todo:
        log.info("nothing to train: %s already has %d epochs", run_dir, start.epoch)
    elif todo:
        log.info("training: %d epoch(s) of %d samples on runtime=%s", todo, data.n_train, spec.runtime.kind)
    try:
        fit(net, data.x_train, data.y_train, data.x_test, data.y_test, todo, progress=spec.progress,
            eval_train=spec.eval_train, on_epoch=saver, start_epoch=start.epoch, start_index=start.index,
            guard=guard, hint=faster_runtime(spec.runtime))
    except BaseException:
        guard.close()  # a scratch restore point (a fresh Ray run's start) is not kept
        raise
    return saver, guard


def faster_runtime(runtime: RuntimeConfig) -> str:
    """The hint for a long run: on Ray, every spike batch is an actor call; in one process it is not."""
    if runtime.kind == "local":
        return ""
    return "runtime=local trains in one process without actor calls, usually far faster on one machine"


@reports_disk_full
def run_job(cfg: dict, run_dir: Path, track: tracking.TrackContext | None = None, job: int = -1) -> dict:
    """Run one job from its resolved config; returns (and writes) its metrics.

    With ``resume`` set, the job writes into the resumed run directory instead.
    ``track``: the experiment and run a tracker (``logging.tracker``) logs to (default:
    a run of its own, stored in the run directory). ``job``: its number in a sweep (-1: not a sweep
    job), logged with its traffic.
    """
    spec = run_spec(cfg)
    run_dir = Path(spec.resume).resolve() if spec.resume else Path(run_dir).resolve()
    log.info("run directory: %s", run_dir)
    if spec.resume and not run_dir.is_dir():
        raise UserError(f"resume={spec.resume!r} is not an existing run directory")
    data = spec.data.load()
    net_cfg = spec.net_config(data.n_features, data.n_classes)
    spec.runtime.check_against(net_cfg.model)
    digest = data.digest()
    ck = find_checkpoint(spec, run_dir, net_cfg, digest)
    start = resume_point(ck, run_dir)
    runtime, fallback_tmp = job_runtime(spec.runtime, run_dir)
    config = resolved(cfg, net_cfg, runtime)
    outputs.write_config(run_dir, config)
    outputs.write_curve(run_dir, start.curve)
    rewind_logs(ck, run_dir)
    track = track or tracking.TrackContext.single(run_dir)
    try:
        with interrupt.stop_on_sigint(), tracking.tracked(spec.logging, track, config) as tracker, \
                open_net(net_cfg, runtime, spec, run_dir, job) as net:
            saver, guard = train(net, data, spec, run_dir, start, digest, tracker)
            try:
                metrics = collect_metrics(net, data, spec, runtime, saver, guard, run_dir)
            finally:
                guard.close()
            tracker.finish(metrics)
    except (interrupt.Interrupted, KeyboardInterrupt) as ex:
        ex.run_dir = run_dir  # for the resume line (train.py)
        raise
    finally:
        if fallback_tmp is not None:
            outputs.remove_ray_temp_dir(run_dir, fallback_tmp)
    outputs.write_metrics(run_dir, metrics)
    log.info("done: test error %.2f %% after %d epoch(s); run directory: %s", metrics["final_test_error"],
             metrics["epochs"], run_dir)
    return metrics


def resolved(cfg: dict, net_cfg: NetConfig, runtime: RuntimeConfig) -> dict:
    """The config as run: auto layer sizes and the Ray temp dir filled in."""
    out = copy.deepcopy(cfg)
    out["model"]["sizes"] = list(net_cfg.model.sizes)
    out["runtime"]["temp_dir"] = runtime.temp_dir
    return out
