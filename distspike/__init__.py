"""distspike: Deep Spiking Networks as an actor-based distributed simulation.

Importing the package points numba's on-disk cache at a per-user directory before any
kernel is compiled, in every process that imports distspike (the driver, Ray actors,
test workers). Left alone, numba writes its cache beside the source: into
site-packages for an installed copy (where ``pip uninstall`` leaves it behind as an
empty namespace package that hides a later editable install) or into the source tree.

The directory is one per version of the kernels' source (``kernels_digest``). numba
checks a cached function against its own file only, while a compiled caller carries the
machine code of every callee it calls: edit ``kernels/herding.py`` alone, and
``kernels/fused.py``'s cached kernel would go on running the old herders.

``distspike.Net`` is the Python API (``distspike.api``, docs/api.md). It is imported on
first use, so ``import distspike`` stays light (no numpy, numba or Ray).
"""
import hashlib
import os
import sys
from pathlib import Path

__version__ = "0.1.0"
__all__ = ["Net", "kernels_digest", "numba_cache_dir"]


def kernels_digest(root: Path | None = None) -> str:
    """12 hex digits of SHA-1 over the names and bytes of every ``*.py`` file in ``root``
    (default: this package's ``kernels/``, where every compiled function another one calls lives)."""
    root = Path(__file__).resolve().parent / "kernels" if root is None else root
    h = hashlib.sha1()
    for path in sorted(root.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def numba_cache_dir() -> Path:
    """``$NUMBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/distspike/numba/<kernels_digest>``
    (default ``~/.cache``). Old digests' directories are not removed; deleting them is safe."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "distspike" / "numba" / kernels_digest()


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
