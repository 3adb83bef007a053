"""Data loaders: MNIST, 20 Newsgroups (bydate) and sklearn's 8x8 digits.

``load_dataset(name, root, **options)`` is the single entry point used by configs.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

from .base import DataError, Dataset

__all__ = ["Dataset", "DataError", "load_dataset", "DATASETS", "default_data_root"]

PathLike = Union[str, os.PathLike]

#: name -> sub-directory of the data root holding that dataset (None: bundled).
DATASETS = {"mnist": "mnist", "newsgroups": "20news-bydate", "digits": None}


def default_data_root() -> Path:
    """``$DISTSPIKE_DATA`` if set, else ``~/.cache/distspike/data``."""
    return Path(os.environ.get("DISTSPIKE_DATA", "~/.cache/distspike/data")).expanduser()


def _dataset_dir(root: Optional[PathLike], name: str) -> Path:
    """Directory of dataset ``name`` under the data root.

    ``root`` is normally the common data root (``root/mnist``, ``root/20news-bydate``);
    if ``root/<subdir>`` does not exist but ``root`` itself is named ``<subdir>``,
    ``root`` is used as the dataset directory.
    """
    base = default_data_root() if root is None else Path(root).expanduser()
    sub = DATASETS[name]
    if not (base / sub).exists() and base.name == sub:
        return base
    return base / sub


def _loader(name: str) -> Callable[..., Dataset]:
    """Import and return the loader function for ``name`` (imports stay lazy)."""
    if name == "mnist":
        from .mnist import load_mnist

        return load_mnist
    if name == "newsgroups":
        from .newsgroups import load_newsgroups

        return load_newsgroups
    from .digits import load_digits

    return load_digits


def load_dataset(name: str, root: Optional[PathLike] = None, **options: Any) -> Dataset:
    """Load dataset ``name`` ('mnist', 'newsgroups' or 'digits').

    ``root`` is the data root holding ``mnist/`` and ``20news-bydate/`` (default
    :func:`default_data_root`); it is ignored for 'digits'.  ``options`` go to the
    loader: ``load_mnist(download=)``, ``load_newsgroups(groups=, binary=, min_df=,
    max_features=, scale=, download=)``, ``load_digits(test_fraction=)``.
    Unknown names or options raise DataError.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    loader = _loader(name)
    args = () if DATASETS[name] is None else (_dataset_dir(root, name),)
    try:
        inspect.signature(loader).bind(*args, **options)
    except TypeError as exc:
        raise DataError(f"bad options {options!r} for dataset {name!r}: {exc}") from exc
    return loader(*args, **options)
