"""Check the command line before Hydra starts: every job of a sweep, in one line per error.

Hydra reports composition errors (unknown key, wrong type, unknown group option) over
several lines. ``preflight`` composes each job's config with Hydra's compose API first
and converts it to the typed objects, so a bad override - in any job of a sweep - stops
the command before anything runs, with one line naming the key. What needs the data
(auto sizes, subset sizes) or the cluster is checked by the job itself.
"""
from __future__ import annotations

import contextlib
import io
import re

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import OmegaConfBaseException

from distspike.cli import CONF_DIR, schema
from distspike.cli.convert import run_spec
from distspike.cli.errors import USER_ERRORS, UserError, one_line

_SKIP_FLAGS = ("help", "hydra_help", "shell_completion", "info", "config_path", "config_dir")


def parse_args(argv: list[str]):
    """``argv`` parsed by Hydra's own parser (``-m``, ``--cfg``... mean what they mean to Hydra).

    None if it does not parse (or is ``--version``): Hydra itself reports that, once.
    """
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
            return get_args_parser().parse_args(argv)
    except SystemExit:
        return None


def job_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The task overrides of every job the basic sweeper would launch (one job without ``-m``).

    With another sweeper (``hydra/sweeper=...``) the jobs are not known in advance: none.
    """
    parsed = OverridesParser.create().parse_overrides(overrides)
    if multirun and any(o.key_or_group == "hydra/sweeper" for o in parsed):
        return []
    parsed = [o for o in parsed if not o.is_hydra_override()]
    if not multirun:
        return [[o.input_line for o in parsed]]
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def explain(ex: BaseException) -> str:
    """One line for a Hydra/OmegaConf composition error, naming the override or group."""
    if isinstance(ex, MissingConfigException) and ex.options:
        group, _, option = (ex.missing_cfg_file or "").rpartition("/")
        return f"{group}={option}: no such option in group {group!r}; available: {', '.join(sorted(ex.options))}"
    msg = one_line(str(ex).split("\n    full_key")[0])
    cause = ex.__cause__
    if isinstance(cause, OmegaConfBaseException):
        detail = one_line(str(cause).split("\n")[0])
        m = re.match(r"(?:Could not override '([^']+)'|Error merging override (\S+))", msg)
        msg = f"{m.group(1) or m.group(2)}: {detail}" if m else f"{msg} {detail}"
    return msg


def check_job(config_name: str, overrides: list[str]) -> None:
    """Compose one job's config and convert it to the typed objects."""
    cfg = compose(config_name=config_name, overrides=overrides)
    run_spec(schema.to_checked_container(cfg))


def preflight(argv: list[str]) -> None:
    """Raise ``UserError`` (one line) if any job of this command line has a bad config."""
    args = parse_args(argv)
    if args is None or any(getattr(args, flag, None) for flag in _SKIP_FLAGS):
        return
    try:
        jobs = job_overrides(args.overrides, args.multirun)
        schema.register()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="preflight"):
            for overrides in jobs:
                check_job(args.config_name or "config", overrides)
    except (HydraException, OmegaConfBaseException) as ex:
        raise UserError(explain(ex)) from ex
    except USER_ERRORS as ex:
        raise UserError(one_line(str(ex))) from ex
