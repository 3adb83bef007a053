"""Shell completion that lists the choices of a key: ``training.rule=<TAB>`` -> ``sgd fsgd``.

Hydra's shell completion (``distspike-train -sc install=bash``) asks the program for the
matches of the word being typed (``-sc query=bash`` with the line in ``COMP_LINE``); for
a key it offers only the current value. For a key whose type in the config tree is a
``Choice`` enum, ``answer`` prints the enum's members instead; every other word (group
options, keys, files) gets Hydra's own answer.
"""
from __future__ import annotations

import dataclasses
import os
import typing

from distspike.cli import schema
from distspike.config import Choice


def leaf_type(key: str, cls: type = schema.TrainNode):
    """The node type of the dotted ``key`` in the config tree (None if there is no such key)."""
    head, _, rest = key.partition(".")
    hint = typing.get_type_hints(cls).get(head)
    if rest:
        return leaf_type(rest, hint) if dataclasses.is_dataclass(hint) else None
    return hint


def choice_matches(line: str) -> list[str] | None:
    """``key=<choice>`` for every choice of the last word's key that starts as typed; None if it is no choice."""
    words = line.split()
    if not words or line.endswith(" ") or "=" not in words[-1]:
        return None
    key, _, typed = words[-1].lstrip("+").partition("=")
    typ = leaf_type(key)
    if "." not in key or not (isinstance(typ, type) and issubclass(typ, Choice)):
        return None  # a top-level group (routing=) is completed by Hydra from conf/
    return [f"{words[-1].partition('=')[0]}={m.name}" for m in typ if m.name.startswith(typed)]


def answer(argv: list[str]) -> bool:
    """Print the choices for a completion query about a choice key; False if Hydra should answer."""
    query = any(a in ("-sc", "--shell-completion") for a in argv) and any(a.startswith("query=") for a in argv)
    matches = choice_matches(os.environ.get("COMP_LINE", "")) if query else None
    if matches is None:
        return False
    print(" ".join(matches))
    return True
