"""The compiled (numba) kernels.

Importing the package loads numba's compiler registries once, without SciPy's BLAS
(``numba_registries``): a kernel process then carries no ``scipy.linalg``.
"""
import sys


def numba_registries() -> None:
    """Load numba's CPU target registries (as its first compile or cache load would), with
    ``scipy.linalg`` kept out unless something imported it already.

    numba's ``np.arraymath`` imports ``scipy.linalg.cython_blas`` when its registries are
    first loaded, only to learn whether BLAS is there for ``np.dot``-style calls (``np.dot``,
    ``np.linalg``, ``np.correlate`` of floats). No distspike kernel makes one; the import costs
    some 16 MiB of resident memory in every process that runs a kernel. With the import
    failing, numba takes BLAS to be missing: calls of that kind still compile (``np.dot`` and
    ``np.linalg`` import SciPy when they are typed; ``np.correlate`` and ``np.convolve`` use
    numba's own loop), and a later ``import scipy.linalg`` works as usual.
    """
    from numba.core.registry import cpu_target

    block = "scipy.linalg" not in sys.modules
    if block:
        sys.modules["scipy.linalg"] = None  # ``import scipy.linalg...`` raises ImportError
    try:
        cpu_target.target_context.refresh()
    finally:
        if block and sys.modules.get("scipy.linalg", 0) is None:
            del sys.modules["scipy.linalg"]


numba_registries()
