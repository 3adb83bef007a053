"""``resume=RUN_DIR`` on the command line: reuse that run's overrides and directory.

``distspike-train resume=RUN_DIR training.epochs=4`` means "continue RUN_DIR to 4
epochs". So that the user need not repeat the first run's overrides, the overrides
saved in ``RUN_DIR/.hydra/overrides.yaml`` are put in front of the new ones (a key
given again on the command line wins), and Hydra's run directory is set to RUN_DIR.
The job then checks that the composed config matches the checkpoint.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from distspike.cli import checkpoint
from distspike.cli.errors import UserError

_PLAIN = re.compile(r"^[A-Za-z0-9_./~+\-:@]+$")


def quote(path: str) -> str:
    """``path`` as an override value (single-quoted unless it is plain)."""
    if _PLAIN.match(path):
        return path
    return "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _key(override) -> str:
    return override.key_or_group if override.package is None else f"{override.key_or_group}@{override.package}"


def saved_overrides(run_dir: Path) -> list[str]:
    """The task overrides the earlier run was started with (none if it has no Hydra record)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    return list(yaml.safe_load(path.read_text()) or []) if path.exists() else []


def expand_resume(overrides: list[str], multirun: bool) -> list[str]:
    """The overrides to hand to Hydra: unchanged unless ``resume=RUN_DIR`` is among them."""
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    resume = [o for o in parsed if o.key_or_group == "resume" and not o.is_delete()]
    if not resume or resume[-1].value() in (None, ""):
        return overrides
    if multirun:
        raise UserError("resume=RUN_DIR continues one run; it cannot be combined with -m/--multirun")
    run_dir = Path(str(resume[-1].value())).expanduser().resolve()
    if not run_dir.is_dir():
        raise UserError(f"resume={str(resume[-1].value())!r} is not an existing run directory")
    if checkpoint.latest(run_dir) is None:
        raise UserError(f"resume={str(resume[-1].value())!r} has no complete checkpoint in "
                        f"{str(run_dir / checkpoint.CKPT_DIR)!r}")
    given = {_key(o) for o in parsed}
    earlier = [s for s in saved_overrides(run_dir)
               if _key(parser.parse_override(s)) not in given | {"resume"}]
    mine = [o.input_line for o in parsed if o.key_or_group != "resume"]
    extra = [] if "hydra.run.dir" in given else [f"hydra.run.dir={quote(str(run_dir))}"]
    return earlier + mine + [f"resume={quote(str(run_dir))}"] + extra
