"""The structured config of ``distspike-train``, generated from the runtime's own config objects.

There is one config tree: the frozen dataclasses of ``distspike.config`` (and the job's
``RunSpec``/``DataSpec`` in ``cli.convert``). ``node_class`` turns each of them, field
for field, into the mutable dataclass Hydra merges into, with the same names, types and
defaults; a choice keeps its ``Enum`` type, so Hydra refuses ``training.rule=sgdd`` by
type and lists the choices. ``conf/config.yaml`` lists ``distspike_schema`` first in its
defaults, so every group option, experiment and override is merged into these typed
nodes: an unknown key or a value of the wrong type is rejected with the key named.
Value ranges are checked by the dataclasses themselves when ``convert.run_spec`` builds
them. A field's ``metadata={"node": T}`` gives its node another type (``None``: no node).
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from distspike.cli.convert import RunSpec
from distspike.config import ConfigError

SCHEMA_NAME = "distspike_schema"


def node_type(hint):
    """The OmegaConf type of a runtime field type (tuple -> List, ``X | None`` -> Optional, dataclass -> node)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return node_class(hint)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return Optional[node_type(rest[0])]
        return Any
    if origin is tuple or hint is tuple:
        return List[node_type(args[0])] if args and args[-1] is Ellipsis else List[Any]
    if origin is dict or hint is dict:
        return Dict[str, Any] if not args else Dict[args[0], node_type(args[1])]
    return hint


def node_default(f: dataclasses.Field, typ) -> dataclasses.Field:
    """The node field's default: the runtime default (lists and dicts as fresh copies), MISSING if none."""
    if dataclasses.is_dataclass(typ):
        return dataclasses.field(default_factory=typ)
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=lambda: plain(f.default_factory(), typ))
    if f.default is dataclasses.MISSING:
        return dataclasses.field(default=MISSING)
    if isinstance(f.default, (tuple, list, dict)):
        return dataclasses.field(default_factory=lambda: plain(f.default, typ))
    return dataclasses.field(default=f.default)


def plain(value, typ):
    """A runtime default as the node ``typ`` holds it: tuples as lists, pairs as a dict."""
    if typing.get_origin(typ) is dict:
        return dict(value)
    if isinstance(value, (tuple, list)):
        return list(value)
    return value


@functools.cache
def node_class(cls: type) -> type:
    """The Hydra node of the frozen dataclass ``cls``: ``<Name>Node`` with its fields, types and defaults."""
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        typ = node_type(f.metadata["node"] if "node" in f.metadata else hints[f.name])
        if typ is not None:
            fields.append((f.name, typ, node_default(f, typ)))
    return dataclasses.make_dataclass(f"{cls.__name__.removesuffix('Config')}Node", fields,
                                      namespace={"__doc__": f"Hydra node of ``{cls.__qualname__}``."})


#: the whole ``distspike-train`` config as Hydra sees it
TrainNode = node_class(RunSpec)


def unknown_keys(node: dict, cls: type = TrainNode, prefix: str = "") -> list[str]:
    """Dotted keys of ``node`` that the node class ``cls`` does not declare (dict fields are open)."""
    hints = typing.get_type_hints(cls)
    out = []
    for key, value in node.items():
        if key not in hints:
            out.append(f"{prefix}{key}")
        elif dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            out += unknown_keys(value, hints[key], f"{prefix}{key}.")
    return out


def keys(cls: type = TrainNode, prefix: str = "") -> tuple[set[str], set[str]]:
    """``(leaves, open)``: the tree's dotted keys, and those of its dict fields (which take any sub-key)."""
    leaves, open_ = set(), set()
    for f in dataclasses.fields(cls):
        key, hint = prefix + f.name, typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            sub_leaves, sub_open = keys(hint, key + ".")
            leaves |= sub_leaves
            open_ |= sub_open
        else:
            leaves.add(key)
            if typing.get_origin(hint) is dict:
                open_.add(key)
    return leaves, open_


def to_checked_container(cfg) -> dict:
    """The job config as a resolved plain dict (choices as strings), its keys re-checked against the tree.

    Hydra lets ``+key=value`` add keys the tree does not know; they are rejected here
    (``+training.ruel=sgd`` is still a typo).
    """
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    extra = unknown_keys(container)
    if extra:
        raise ConfigError(f"unknown config key {', '.join(extra)} (not in the distspike-train schema)")
    return container


def register() -> None:
    """Store the tree under ``distspike_schema`` (idempotent; Hydra reads it at compose)."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=TrainNode)


register()
