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

from distspike.cli import CONF_DIR, outputs, schema, sweep
from distspike.cli.argv import expand_resume
from distspike.cli.errors import EXIT_FAILED, EXIT_USAGE, USER_ERRORS, WriteError, full_errors, report
from distspike.cli.job import run_job
from distspike.cli.preflight import parse_args, preflight
from distspike.runtime.recovery import RecoveryError


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> float:
    """One Hydra job; returns the final test error (for sweepers that optimize it)."""
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:
        metrics = run_job(schema.to_checked_container(cfg), run_dir)
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


def command_line(argv: list[str]) -> list[str]:
    """``argv`` with ``resume=RUN_DIR`` expanded (see ``cli.argv``)."""
    args = parse_args(argv)
    if args is None:
        return argv
    overrides = expand_resume(args.overrides, args.multirun)
    flags = [a for a in argv if a not in args.overrides]
    return flags + overrides


def main(argv: list[str] | None = None) -> int:
    """Console entry point: expand ``resume``, check every job's config, then run Hydra."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.raiseExceptions = full_errors()  # a full disk must not make every log line print a traceback
    try:
        argv = command_line(argv)
        if not full_errors():
            preflight(argv)
    except USER_ERRORS as ex:
        report(ex)
        return EXIT_USAGE
    sys.argv = [sys.argv[0], *argv]
    sweep.LAST.update(failed=False, rows=[])
    app()
    return 1 if sweep.LAST["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
