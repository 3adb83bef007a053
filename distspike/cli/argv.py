"""``resume=RUN_DIR`` on the command line: reuse that run's overrides and directory.

``distspike-train resume=RUN_DIR training.epochs=4`` means "continue RUN_DIR to 4
epochs". So that the user need not repeat the first run's overrides, the overrides
saved in ``RUN_DIR/.hydra/overrides.yaml`` are put in front of the new ones (a key
given again on the command line wins), and Hydra's run directory is set to RUN_DIR.
The job then checks that the composed config matches the checkpoint.

A run directory may come from someone else, so it is read as data, never as code:
only distspike's own config keys are replayed (the keys of the config tree,
``cli.schema``, which is generated from the runtime's config objects; the config
groups with the options shipped in ``conf/``; and ``+``-additions only inside
the open dictionaries such as ``+placement.forward.resources.gpu_node=1``). A line
that sets ``hydra.*``, a ``_target_``, a resolver interpolation ``${...}``, a sweep or
any other key is refused with one line naming it (``resume_refusal``), before Hydra
runs.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
from hydra.errors import HydraException

from distspike.cli import CONF_DIR, checkpoint, schema
from distspike.cli.errors import UserError

#: config groups of ``conf/`` a saved override may choose an option of (``hydra/`` is Hydra's own)
GROUPS = tuple(sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra"))

_PLAIN = re.compile(r"^[A-Za-z0-9_./~+\-:@]+$")


def quote(path: str) -> str:
    """``path`` as an override value (single-quoted unless it is plain)."""
    if _PLAIN.match(path):
        return path
    return "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _key(override) -> str:
    return override.key_or_group if override.package is None else f"{override.key_or_group}@{override.package}"


def group_options(group: str) -> set[str]:
    """The options of a config group as shipped in ``conf/<group>/``."""
    return {p.stem for p in (CONF_DIR / group).glob("*.yaml")}


def _has_interpolation(value) -> bool:
    """Whether a parsed override value holds a ``${...}`` anywhere (strings inside lists and dicts too)."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict):
        return any(_has_interpolation(k) or _has_interpolation(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_interpolation(v) for v in value)
    return False


def resume_refusal(o: Override) -> str | None:
    """Why the saved override ``o`` may not be replayed, or None if it sets one of distspike's own keys."""
    key = o.key_or_group
    leaves, open_ = schema.keys()
    if o.package is not None or o.is_hydra_override() or key.split(".")[0] == "hydra" or "/" in key:
        return "it configures Hydra, not distspike"
    if "_target_" in key.split("."):
        return "it names a _target_ (code to call)"
    if o.value_type not in (ValueType.ELEMENT, None) or o.is_sweep_override():
        return "it is a sweep, not one value"
    if _has_interpolation(o.value()):
        return "its value holds a ${...} interpolation (resolvers run code)"
    if o.type not in (OverrideType.CHANGE, OverrideType.ADD):
        return "only plain key=value overrides are replayed"
    within_open = any(key.startswith(k + ".") for k in open_)
    if o.type == OverrideType.ADD and not within_open:
        return "a +addition outside the schema's open dictionaries (e.g. +placement.forward.resources.NAME=1)"
    if key in GROUPS and "." not in key:
        value = o.value()
        if value is not None and str(value) not in group_options(key):
            return f"{value!r} is not an option of the config group {key!r}"
        return None
    if key not in leaves and not within_open:
        return "not a key of the distspike-train config"
    return None


def _lines(path: Path, text: str) -> tuple[list[str], list[int]]:
    """The entries of an ``overrides.yaml`` (a YAML list of strings) and the line number of each."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as ex:
        raise UserError(f"{str(path)!r} is not valid YAML ({ex.__class__.__name__}); cannot resume from it") from None
    if node is None:
        return [], []
    if not isinstance(node, yaml.SequenceNode) or not all(isinstance(n, yaml.ScalarNode) for n in node.value):
        raise UserError(f"{str(path)!r} is not a list of override strings; cannot resume from it")
    return [str(n.value) for n in node.value], [n.start_mark.line + 1 for n in node.value]


def saved_overrides(run_dir: Path) -> list[str]:
    """The task overrides the earlier run was started with (none if it has no Hydra record).

    Each one must set one of distspike's own config keys (``resume_refusal``); the first
    that does not is refused with one line naming its line of ``overrides.yaml``.
    """
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as ex:
        raise UserError(f"cannot read {str(path)!r}: {ex}") from None
    entries, lines = _lines(path, text)
    parser = OverridesParser.create()
    for entry, line in zip(entries, lines):
        try:
            why = resume_refusal(parser.parse_override(entry))
        except HydraException:
            why = "it does not parse as an override"
        if why:
            raise UserError(f"resume: {str(path)}:{line}: {entry!r} is refused: {why}; a resumed run directory is "
                            f"read as data, so only distspike's own config keys are replayed")
    return entries


def resume_value(overrides: list[str]) -> Path | None:
    """The directory of the last ``resume=RUN_DIR`` among ``overrides`` (resolved), None if none."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    resume = [o for o in parsed if o.key_or_group == "resume" and not o.is_delete()]
    if not resume or resume[-1].value() in (None, ""):
        return None
    return Path(str(resume[-1].value())).expanduser().resolve()


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
