"""Atomic file download from a list of mirror URLs (urllib only, no unpickling)."""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Sequence, Union

from .base import DataError

PathLike = Union[str, os.PathLike]
Verifier = Callable[[Path], None]

#: Seconds to wait for a mirror to answer before trying the next one.
DEFAULT_TIMEOUT = 60.0
_CHUNK = 1 << 20
_USER_AGENT = "distspike-data/0.1 (+urllib)"


def urlopen(url: str, timeout: float) -> BinaryIO:
    """Open ``url`` for reading.  The single network entry point (tests monkeypatch it)."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) mirrors only)


def _check_scheme(url: str) -> None:
    """Only http(s) mirrors are allowed (no file:, ftp: or other urllib handlers)."""
    if not url.lower().startswith(("http://", "https://")):
        raise DataError(f"refusing to download from {url!r}: only http(s) URLs are allowed")


def _fetch_to(url: str, dest: Path, verify: Optional[Verifier], timeout: float) -> None:
    """Download ``url`` to a temp file beside ``dest``, verify it, then ``os.replace`` it.

    On any failure the temp file is removed and the exception propagates.
    """
    _check_scheme(url)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            with urlopen(url, timeout) as response:
                shutil.copyfileobj(response, out, _CHUNK)
            out.flush()
            os.fsync(out.fileno())
        if tmp.stat().st_size == 0:
            raise DataError(f"empty response from {url!r}")
        if verify is not None:
            verify(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; the ones created, deepest first."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create directory {str(directory)!r}: {exc}") from exc
    return missing


def remove_empty(directories: list[Path]) -> None:
    """Remove those of ``directories`` (deepest first) that are still empty (a failed download's)."""
    for d in directories:
        try:
            d.rmdir()
        except OSError:  # not empty (or already gone): keep it, and its parents
            return


def download_file(
    urls: Sequence[str],
    dest: PathLike,
    verify: Optional[Verifier] = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Download the first working URL of ``urls`` to ``dest`` atomically.

    Mirrors are tried in order.  Each attempt streams into a temporary file in
    ``dest``'s directory; ``verify(tmp_path)`` (if given) must raise to reject the
    content (e.g. bad checksum), in which case the temp file is deleted and the next
    mirror is tried.  Only a verified file is moved into place with ``os.replace``,
    so ``dest`` is either absent or complete.  ``dest``'s parent is created if needed,
and removed again if every mirror failed and it is still empty.

    Raises DataError listing every URL tried and why it failed if none succeeds.
    """
    dest = Path(dest)
    if not urls:
        raise DataError(f"no URLs given to download {str(dest)!r}")
    created = make_parents(dest.parent)
    failures = []
    for url in urls:
        try:
            _fetch_to(url, dest, verify, timeout)
            return dest
        except (OSError, ValueError, EOFError) as exc:  # URLError/HTTPError are OSErrors; DataError is a ValueError
            failures.append(f"  {url}: {type(exc).__name__}: {exc}")
    remove_empty(created)
    raise DataError(
        f"could not download {str(dest)!r}; tried {len(urls)} URL(s):\n" + "\n".join(failures)
    )
