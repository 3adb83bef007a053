"""distspike: Deep Spiking Networks as an actor-based distributed simulation.

Importing the package points numba's on-disk cache at a per-user directory before any
kernel is compiled, in every process that imports distspike (the driver, Ray actors,
test workers). Left alone, numba writes its cache beside the source: into
site-packages for an installed copy (where ``pip uninstall`` leaves it behind as an
empty namespace package that hides a later editable install) or into the source tree.

``distspike.Net`` is the Python API (``distspike.api``, docs/api.md). It is imported on
first use, so ``import distspike`` stays light (no numpy, numba or Ray).
"""
import os
import sys
from pathlib import Path

__version__ = "0.1.0"
__all__ = ["Net", "numba_cache_dir"]


def numba_cache_dir() -> Path:
    """``$NUMBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/distspike/numba`` (default ``~/.cache``)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "distspike" / "numba"


def _use_numba_cache_dir() -> None:
    """Set the cache dir for numba, also when numba was imported before distspike."""
    path = str(numba_cache_dir())
    os.environ["NUMBA_CACHE_DIR"] = path  # read by numba at import, inherited by child processes
    if "numba" in sys.modules:
        from numba.core import config
        config.CACHE_DIR = path


_use_numba_cache_dir()


def __getattr__(name: str):
    """``distspike.Net``, imported on first use."""
    if name == "Net":
        from distspike.api import Net
        return Net
    raise AttributeError(f"module 'distspike' has no attribute {name!r}")
