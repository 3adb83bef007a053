"""distspike/__init__.py: numba's cache goes to a per-user directory, never beside the package."""
import json
import os
import subprocess
import sys
from pathlib import Path

import distspike
from distspike.cluster.emulated import marked_line

PACKAGE = Path(distspike.__file__).resolve().parent

# where a compiled kernel's cache index would be written, as numba itself resolves it
PROBE = """
import json, sys
if sys.argv[1] == "numba-first":
    import numba  # imported before distspike: the package must still redirect the cache
from distspike.kernels import herding
print("CACHE-PATH " + json.dumps(herding.herd_segments._cache._cache_path))
"""


def cache_path(env_extra: dict, mode: str = "plain") -> Path:
    """The cache directory numba uses for a distspike kernel in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True,
                         check=True)
    # the marked line, not the last one: nothing else the child prints can be taken for the result
    return Path(json.loads(marked_line(out.stdout, "CACHE-PATH "))).resolve()


def test_cache_goes_under_xdg_cache_home(tmp_path):
    path = cache_path({"XDG_CACHE_HOME": str(tmp_path), "HOME": str(tmp_path / "home")})
    assert path.is_relative_to(tmp_path / "distspike" / "numba")
    assert not path.is_relative_to(PACKAGE)


def test_cache_dir_is_one_per_kernel_source(tmp_path):
    """A compiled caller carries its callees' code, which numba does not re-check: a kernel edit
    must move the whole cache, not only the edited file's functions."""
    path = cache_path({"XDG_CACHE_HOME": str(tmp_path)})
    assert path.is_relative_to(tmp_path / "distspike" / "numba" / distspike.kernels_digest())
    src = tmp_path / "kernels"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    (src / "b.py").write_text("y = 2\n")
    before = distspike.kernels_digest(src)
    assert distspike.kernels_digest(src) == before  # the same source, the same directory
    (src / "b.py").write_text("y = 3\n")
    assert distspike.kernels_digest(src) != before
    (src / "b.py").write_text("y = 2\n")
    assert distspike.kernels_digest(src) == before
    (src / "c.py").write_text("")
    assert distspike.kernels_digest(src) != before


def test_cache_defaults_to_home_cache(tmp_path):
    path = cache_path({"HOME": str(tmp_path)})
    assert path.is_relative_to(tmp_path / ".cache" / "distspike" / "numba")


def test_numba_cache_dir_wins(tmp_path):
    path = cache_path({"NUMBA_CACHE_DIR": str(tmp_path / "nc"), "XDG_CACHE_HOME": str(tmp_path / "x")})
    assert path.is_relative_to(tmp_path / "nc")


def test_numba_imported_first(tmp_path):
    path = cache_path({"XDG_CACHE_HOME": str(tmp_path)}, mode="numba-first")
    assert path.is_relative_to(tmp_path / "distspike" / "numba")


def test_cache_is_outside_the_package_and_source_tree():
    """In this very process (the test session): not in site-packages, not in the checkout."""
    cache = distspike.numba_cache_dir().resolve()
    assert not cache.is_relative_to(PACKAGE)
    assert not cache.is_relative_to(PACKAGE.parent)
