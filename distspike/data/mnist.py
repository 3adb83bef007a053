"""MNIST from the four official IDX files, checksum-verified.

Files are read from a directory, each either gzipped (``<name>.gz``) or plain
(``<name>``).  The MD5 of the *decompressed* content must match the published
value, so gzipped and plain copies verify identically.  Missing files can be
downloaded (as ``.gz``) from public mirrors.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np

from . import download as _download
from .base import DataError, Dataset, ScaledRows, SparseRows

PathLike = Union[str, os.PathLike]

#: Official file base names -> MD5 of the decompressed bytes.
MNIST_MD5: Dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

#: Base URLs tried in order; the file URL is ``mirror + name + ".gz"``.
MNIST_MIRRORS: Tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = MNIST_MD5  # key order above

# IDX type code -> numpy dtype (multi-byte values are big-endian).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, path: PathLike = "<bytes>", ndim: Optional[int] = None) -> np.ndarray:
    """Parse IDX-format ``data`` into an array (zero-copy via ``np.frombuffer``).

    Checks the magic number (two zero bytes, a known type code, the number of
    dimensions), optionally that there are ``ndim`` dimensions, and that the payload
    size matches the header exactly.  Errors are DataErrors naming ``path``.
    """
    dims, dtype, header_len = idx_header(data, path, ndim)
    check_idx_size(len(data), dims, dtype, header_len, path)
    return np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)


def idx_header(data: bytes, path: PathLike = "<bytes>", ndim: Optional[int] = None):
    """``(dims, dtype, header_len)`` of the IDX header at the start of ``data`` (checks as ``parse_idx``)."""
    if len(data) < 4:
        raise DataError(f"{str(path)!r}: truncated IDX file ({len(data)} bytes, header needs 4)")
    zero, code, n_dims = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or code not in _IDX_DTYPES:
        raise DataError(f"{str(path)!r}: bad IDX magic number 0x{data[:4].hex()}")
    if ndim is not None and n_dims != ndim:
        raise DataError(f"{str(path)!r}: expected a {ndim}-D IDX file, header says {n_dims}-D")
    header_len = 4 + 4 * n_dims
    if len(data) < header_len:
        raise DataError(f"{str(path)!r}: truncated IDX header ({len(data)} bytes, needs {header_len})")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims))
    return dims, _IDX_DTYPES[code], header_len


def check_idx_size(size: int, dims: tuple, dtype: np.dtype, header_len: int, path: PathLike) -> None:
    """DataError naming ``path`` unless a file of ``size`` bytes holds exactly the header's payload."""
    expected = header_len + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if size != expected:
        problem = "truncated" if size < expected else "has trailing bytes"
        raise DataError(f"{str(path)!r}: IDX file {problem}: header dims {dims} need {expected} bytes, got {size}")


def read_bytes(path: PathLike, gzipped: Optional[bool] = None) -> bytes:
    """Read a file, gunzipping it if ``gzipped`` (default: name ends in ``.gz``).

    DataError naming the path on I/O or gzip errors.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from exc
    if not (path.suffix == ".gz" if gzipped is None else gzipped):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{str(path)!r}: not a valid gzip file ({exc})") from exc


def check_md5(data: bytes, expected: str, path: PathLike) -> None:
    """Raise DataError naming ``path`` if ``md5(data) != expected``."""
    check_md5_hex(hashlib.md5(data).hexdigest(), expected, path)


def check_md5_hex(actual: str, expected: str, path: PathLike) -> None:
    """Raise DataError naming ``path`` if the content's MD5 ``actual`` is not ``expected``."""
    if actual != expected:
        raise DataError(
            f"{str(path)!r}: MD5 checksum mismatch (decompressed content md5 {actual}, expected {expected}); "
            "the file is corrupt or not the official MNIST file - delete it and re-download"
        )


def load_idx_file(path: PathLike, name: str, gzipped: Optional[bool] = None, sparse: bool = False):
    """Stream-read, structurally check, then MD5-verify the MNIST file ``path`` (base name ``name``).

    ``gzipped`` as in :func:`read_bytes`. The content is decompressed chunk by chunk
    straight into the result array, the MD5 updated as it goes: no copy of the file,
    compressed or not, is held beside it. Same checks and messages as ``parse_idx``
    and ``check_md5``. ``sparse`` (an images file of bytes): the images as a
    ``SparseRows`` matrix of their pixels scaled by 1/255, each block of rows made sparse as it
    is read (the dense matrix is never held).
    """
    path = Path(path)
    gz = path.suffix == ".gz" if gzipped is None else gzipped
    try:
        f = gzip.open(path, "rb") if gz else open(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from exc
    try:
        with f:
            array, md5 = _stream_idx(f, path, 3 if "images" in name else 1, sparse)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{str(path)!r}: not a valid gzip file ({exc})" if gz
                        else f"cannot read {str(path)!r}: {exc}") from exc
    check_md5_hex(md5.hexdigest(), MNIST_MD5[name], path)
    return array


def _read_upto(f, n: int) -> bytes:
    """``n`` bytes of ``f``, fewer only at its end."""
    out = bytearray()
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _stream_idx(f, path: Path, ndim: int, sparse: bool = False):
    """``(array, md5)`` of the IDX stream ``f``: the header checked as ``parse_idx`` does, the payload read
    in 1 MiB chunks straight into the array (``sparse``, a file of bytes: into a ``SparseRows`` of the rows
    scaled by 1/255, a block of rows at a time)."""
    head = _read_upto(f, 4)
    if len(head) == 4:
        head += _read_upto(f, 4 * head[3])
    dims, dtype, header_len = idx_header(head, path, ndim)
    md5 = hashlib.md5(head)
    if sparse and dtype == np.uint8 and len(dims) > 1:
        array, got = _read_sparse(f, dims, md5)
    else:
        array = np.empty(dims, dtype)
        got = _read_into(f, memoryview(array.reshape(-1).view(np.uint8)), md5)
    extra = len(f.read(1))
    while extra and (chunk := f.read(1 << 20)):
        extra += len(chunk)
    check_idx_size(header_len + got + extra, dims, dtype, header_len, path)
    return array, md5


def _read_into(f, view: memoryview, md5) -> int:
    """Fill ``view`` from ``f`` in 1 MiB reads, the MD5 updated; the bytes read (fewer at the file's end)."""
    got = 0
    while got < view.nbytes:
        n = f.readinto(view[got:got + (1 << 20)])
        if not n:
            break
        md5.update(view[got:got + n])
        got += n
    return got


def _read_sparse(f, dims: tuple, md5):
    """``(SparseRows, bytes read)`` of ``dims[0]`` rows of ``prod(dims[1:])`` bytes each from ``f``: about
    1 MiB of rows is read at a time and only its nonzero bytes (and a bit per byte) are kept."""
    n_rows, n_cols = dims[0], int(np.prod(dims[1:], dtype=np.int64))
    block = np.empty((max(1, (1 << 20) // max(n_cols, 1)), n_cols), np.uint8)
    mask = np.zeros((n_rows, (n_cols + 7) // 8), np.uint8)
    values, counts, got, done = [], [], 0, 0
    while done < n_rows:
        m = min(len(block), n_rows - done)
        n = _read_into(f, memoryview(block[:m].reshape(-1)), md5)
        got += n
        full = n // n_cols if n_cols else m
        nonzero = block[:full] != 0
        values.append(block[:full][nonzero])
        counts.append(np.count_nonzero(nonzero, axis=1))
        mask[done:done + full] = np.packbits(nonzero, axis=1)
        done += full
        if n < m * n_cols:  # the file ended: check_idx_size names it
            break
    indptr = np.zeros(done + 1, np.int64)
    np.cumsum(np.concatenate(counts) if counts else np.zeros(0, np.int64), out=indptr[1:])
    raw = np.concatenate(values) if values else np.zeros(0, np.uint8)
    return SparseRows(raw, mask[:done], indptr, n_cols, 255.0), got


def find_file(root: Path, name: str) -> Optional[Path]:
    """Return ``root/name`` or ``root/name.gz`` (plain preferred), or None if neither exists."""
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def download_mnist_file(root: Path, name: str, mirrors: Optional[Tuple[str, ...]] = None) -> Path:
    """Download ``name.gz`` into ``root`` from ``mirrors`` (default MNIST_MIRRORS), verified before it lands."""
    urls = [f"{mirror}{name}.gz" for mirror in (MNIST_MIRRORS if mirrors is None else mirrors)]
    return _download.download_file(
        urls, root / f"{name}.gz", verify=lambda tmp: load_idx_file(tmp, name, gzipped=True)
    )


def _locate_all(root: Path, download: bool) -> Dict[str, Path]:
    """Find (or download) the four files; DataError naming what is missing (and why a download failed)."""
    if not root.is_dir() and not download:
        raise DataError(f"MNIST directory {str(root)!r} does not exist (and download=False)")
    paths = {name: found for name in MNIST_MD5 if (found := find_file(root, name)) is not None}
    missing = [name for name in MNIST_MD5 if name not in paths]
    if missing and not download:
        raise DataError(f"MNIST files missing in {str(root)!r} (download=False): " + expected(missing))
    for name in missing:
        try:
            paths[name] = download_mnist_file(root, name)
        except DataError as exc:
            what = "no MNIST files" if len(missing) == len(MNIST_MD5) else "MNIST files missing"
            raise DataError(f"{what} in {str(root)!r} (expected {expected(missing)}) and the download failed: "
                            f"{exc}") from exc
    return paths


def expected(names) -> str:
    """``"train-images-idx3-ubyte[.gz], ..."``."""
    return ", ".join(f"{m}[.gz]" for m in names)


def _split(images: np.ndarray, labels: np.ndarray, images_path: Path, labels_path: Path):
    """Images as float64 [0, 1] rows (uint8 kept, scaled on read: ``ScaledRows``), labels as int64, checked."""
    if len(images) != len(labels):
        raise DataError(
            f"{str(images_path)!r} has {len(images)} images but {str(labels_path)!r} has {len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{str(labels_path)!r}: label {labels.max()} is not a digit 0-9")
    rows = images if isinstance(images, ScaledRows) else ScaledRows(images.reshape(len(images), -1), 255.0)
    return rows, labels.astype(np.int64)


#: ``split`` option of :func:`load_mnist`
SPLITS = ("official", "validation")
N_VALIDATION = 10000  # mnist.pkl.gz's validation part: the last 10k official training images


def load_mnist(root: PathLike, download: bool = True, split: str = "official") -> Dataset:
    """Load MNIST from ``root``, file order.

    ``split="official"``: the official 60000 train / 10000 test split.
    ``split="validation"``: the split of ``mnist.pkl.gz`` that the paper's authors
    measured on: train on the first 50000 official training images, test on the last
    10000 of them (the official test set is not used; ``data.options.split``).

    Each of the four IDX files is read as ``root/<name>`` or ``root/<name>.gz``;
    the header, size and MD5 of the decompressed content are checked, and any
    problem is a DataError naming the file.  Missing files are downloaded (as
    ``.gz``, atomically, verified) when ``download`` is true.

    Returns a Dataset with ``x`` float64 in [0, 1] of shape (n, 784) (``ScaledRows``: the images stay
    uint8 and each row is scaled as it is read), ``y`` int64.
    """
    if split not in SPLITS:
        raise DataError(f"mnist: split={split!r} is not one of {list(SPLITS)}")
    ds = _load_official(root, download)
    if split == "official":
        return ds
    k = len(ds.x_train) - N_VALIDATION
    return Dataset("mnist", ds.x_train[:k], ds.y_train[:k], ds.x_train[k:], ds.y_train[k:], n_classes=10)


def _load_official(root: PathLike, download: bool) -> Dataset:
    """The official 60000 / 10000 split (``load_mnist``'s checks)."""
    root = Path(root).expanduser()
    paths = _locate_all(root, download)
    arrays = {name: load_idx_file(path, name, sparse="images" in name) for name, path in paths.items()}
    x_train, y_train = _split(arrays[TRAIN_IMAGES], arrays[TRAIN_LABELS], paths[TRAIN_IMAGES], paths[TRAIN_LABELS])
    x_test, y_test = _split(arrays[TEST_IMAGES], arrays[TEST_LABELS], paths[TEST_IMAGES], paths[TEST_LABELS])
    return Dataset("mnist", x_train, y_train, x_test, y_test, n_classes=10)
