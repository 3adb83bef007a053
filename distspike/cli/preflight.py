"""Check the command line before Hydra starts: every job of a sweep, in one line per error.

Hydra reports composition errors (unknown key, wrong type, unknown group option) over
several lines. ``preflight`` composes each job's config with Hydra's compose API first
and converts it to the typed objects, so a bad override - in any job of a sweep - stops
the command before anything runs, with one line naming the key. What needs the data
(auto sizes, subset sizes) or the cluster is checked by the job itself.

Only Hydra's public API is used: the command line is parsed with the flags Hydra
documents (``ARGS``), and a sweep is expanded as Hydra's basic sweeper does (the
cartesian product of the discrete sweeps, a later override of a key replacing an
earlier one) with the public override parser.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import re

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import OmegaConfBaseException

from distspike.cli import CONF_DIR, schema, tracking
from distspike.cli.convert import run_spec
from distspike.cli.errors import USER_ERRORS, UserError, one_line

_SKIP_FLAGS = ("help", "hydra_help", "shell_completion", "info", "config_path", "config_dir")

#: Hydra 1.3's command-line flags (``distspike-train --help``): (names, ``add_argument`` keywords)
ARGS = (
    (("--help", "-h"), {"action": "store_true"}), (("--hydra-help",), {"action": "store_true"}),
    (("--version",), {"action": "version", "version": "Hydra"}), (("overrides",), {"nargs": "*"}),
    (("--cfg", "-c"), {"choices": ["job", "hydra", "all"]}), (("--resolve",), {"action": "store_true"}),
    (("--package", "-p"), {}), (("--run", "-r"), {"action": "store_true"}),
    (("--multirun", "-m"), {"action": "store_true"}), (("--shell-completion", "-sc"), {"action": "store_true"}),
    (("--config-path", "-cp"), {}), (("--config-name", "-cn"), {}), (("--config-dir", "-cd"), {}),
    (("--experimental-rerun",), {}),
    (("--info", "-i"), {"const": "all", "nargs": "?",
                        "choices": ["all", "config", "defaults", "defaults-tree", "plugins", "searchpath"]}),
)


def args_parser() -> argparse.ArgumentParser:
    """A parser of the flags Hydra's ``@hydra.main`` accepts, with the same names and meanings."""
    parser = argparse.ArgumentParser(add_help=False, prog="distspike-train")
    for names, kwargs in ARGS:
        parser.add_argument(*names, **kwargs)
    return parser


def parse_args(argv: list[str]):
    """``argv`` parsed as Hydra parses it (``-m``, ``--cfg``... mean what they mean to Hydra).

    None if it does not parse (or is ``--version``): Hydra itself reports that, once.
    """
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
            return args_parser().parse_args(argv)
    except SystemExit:
        return None


def sweep_jobs(parsed: list) -> list[list[str]]:
    """The jobs of a basic-sweeper multirun: one ``key=value`` list per point of the sweep's grid."""
    choices: dict[str, list[str]] = {}
    for o in parsed:
        key = o.get_key_element()
        if not o.is_sweep_override():
            choices[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            choices[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            raise HydraException(f"{key}: the basic sweeper does not support sweep type {o.value_type.name}")
    return [list(job) for job in itertools.product(*choices.values())]


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
    return sweep_jobs(parsed)


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
    tracking.check_available(run_spec(schema.to_checked_container(cfg)).logging)


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
