"""``distspike-train``: train a spiking MLP from the Hydra config in ``conf/``.

    distspike-train                                   # MNIST 784-200-200-10, embedded Ray
    distspike-train runtime=local data=digits model=digits_small
    distspike-train experiment=table3_fsgd
    distspike-train -m routing=bfs,dfs training.rule=sgd,fsgd
    distspike-train resume=outputs/2025-01-01/12-00-00-000000 training.epochs=4

Hydra is used only here and in ``distspike.cli``: the composed config is turned into
the typed objects of ``distspike.config`` at once (``cli.convert``), and the job
(``cli.job``) sees only those. Config errors print one line and exit with status 2.
"""
from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from distspike._malloc import one_arena
from distspike.cli import CONF_DIR, checkpoint, completion, outputs, rundir, schema, sweep, tracking
from distspike.cli.argv import expand_resume, quote, resume_value
from distspike.cli.errors import (EXIT_FAILED, EXIT_USAGE, PROG, USER_ERRORS, UserError, WriteError, full_errors,
                                  report)
from distspike.cli.job import run_job
from distspike.cli.preflight import parse_args, preflight
from distspike.runtime.interrupt import Interrupted
from distspike.runtime.recovery import RecoveryError

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> float:
    """One Hydra job; returns the final test error (for sweepers that optimize it)."""
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:  # held already (``main``) unless the directory could not be known before Hydra started
        rundir.hold(run_dir, resume=True)
        if cfg.get("resume"):
            rundir.hold(Path(str(cfg.resume)).expanduser().resolve(), resume=True)
    except UserError as ex:  # another run's directory: touch nothing in it
        report(ex)
        if hc.mode != RunMode.MULTIRUN:
            raise SystemExit(EXIT_USAGE)
        sweep.LAST["failed"] = True
        return math.nan
    try:
        metrics = run_job(schema.to_checked_container(cfg), run_dir, track_context(hc, run_dir), job_number(hc))
    except (Interrupted, KeyboardInterrupt) as ex:
        print(f"{PROG}: {interrupted(ex, getattr(ex, 'run_dir', run_dir))}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except (*USER_ERRORS, OmegaConfBaseException, RecoveryError) as ex:
        if full_errors():
            raise
        msg = report(ex)
        if hc.mode != RunMode.MULTIRUN:
            raise SystemExit(EXIT_FAILED if isinstance(ex, (RecoveryError, WriteError)) else EXIT_USAGE)
        try:
            outputs.write_metrics(run_dir, {"status": "failed", "error": msg})  # the sweep goes on
        except USER_ERRORS as again:  # e.g. the disk is still full
            report(again)
        return math.nan
    return metrics["final_test_error"]


def track_context(hc, run_dir: Path) -> tracking.TrackContext:
    """A sweep is one experiment (named after its directory) with a run per job; a single run its own."""
    tags = {"run_dir": str(run_dir.resolve()), "overrides": " ".join(hc.overrides.task), "job_name": hc.job.name}
    if hc.mode != RunMode.MULTIRUN:
        return tracking.TrackContext(hc.job.name, run_dir.resolve().name, run_dir.resolve(), tags)
    sweep_dir = Path(str(hc.sweep.dir))
    return tracking.TrackContext(str(sweep_dir), str(hc.job.num), sweep_dir.resolve(),
                                 {**tags, "sweep_dir": str(sweep_dir.resolve()), "job_num": str(hc.job.num)})


def job_number(hc) -> int:
    """This job's number in a sweep (Hydra's ``hydra.job.num``); -1 for a single run."""
    return int(hc.job.num) if hc.mode == RunMode.MULTIRUN else -1


def interrupted(ex: BaseException, run_dir: Path) -> str:
    """The line printed after Ctrl-C: where training stopped and the command that continues it."""
    where = ex.where if isinstance(ex, Interrupted) else "Ctrl-C"
    if checkpoint.latest(run_dir) is None:
        return f"interrupted ({where}) before any checkpoint was saved: nothing to resume in {run_dir}"
    return f"interrupted at {where}; continue with: {PROG} resume={quote(str(run_dir))}"


def command_line(argv: list[str]) -> list[str]:
    """``argv`` with ``resume=RUN_DIR`` expanded (see ``cli.argv``)."""
    args = parse_args(argv)
    if args is None:
        return argv
    overrides = expand_resume(args.overrides, args.multirun)
    flags = [a for a in argv if a not in args.overrides]
    return flags + overrides


def lock_run_dir(argv: list[str]) -> list[str]:
    """Lock the run (or sweep) directory Hydra is about to use; ``argv`` with that directory pinned.

    A resumed run also locks the directory it continues. Commands that run no job
    (``--cfg``, ``--help``...) lock nothing.
    """
    args = parse_args(argv)
    if args is None or args.cfg or any(getattr(args, f, None) for f in ("help", "hydra_help", "info",
                                                                        "shell_completion")):
        return argv
    resume = resume_value(args.overrides)
    directory, overrides = rundir.planned_dir(args.overrides, args.multirun)
    if resume is not None:
        rundir.hold(resume, resume=True)
    if directory is not None:
        rundir.hold(directory, resume=resume is not None and directory.resolve() == resume, sweep=args.multirun)
    flags = [a for a in argv if a not in args.overrides]
    return flags + overrides


def main(argv: list[str] | None = None) -> int:
    """Console entry point: expand ``resume``, check every job's config, then run Hydra."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if completion.answer(argv):  # -sc query=...: the choices of an enum-typed key
        return 0
    one_arena()  # before any thread starts: the writer threads' frees stay reusable (peak RSS)
    logging.raiseExceptions = full_errors()  # a full disk must not make every log line print a traceback
    try:
        argv = command_line(argv)
        if not full_errors():
            preflight(argv)
        argv = lock_run_dir(argv)
    except USER_ERRORS as ex:
        report(ex)
        return EXIT_USAGE
    sys.argv = [sys.argv[0], *argv]
    sweep.LAST.update(failed=False, rows=[])
    app()
    return 1 if sweep.LAST["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
