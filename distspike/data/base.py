"""Common container and error type for the data loaders."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Optional

import numpy as np


class DataError(ValueError):
    """A dataset could not be found, downloaded, verified or parsed.

    Messages always quote the offending path, URL or value.
    """


class ScaledRows:
    """A read-only float64 matrix stored as integers: row ``k`` is ``raw[k].astype(float64) / divisor``.

    MNIST's 70,000 images take 55 MB as uint8 and 439 MB as float64; training reads
    one row at a time, so the rows are scaled when read, each to exactly the values
    the whole matrix scaled at once (``x = raw.astype(float64); x /= divisor``) would
    hold. Indexing with an integer gives a float64 row; with a slice, mask or index
    array, another ``ScaledRows`` (a view for slices); ``np.asarray`` materialises the
    float64 matrix, for consumers that need all of it at once.
    """

    dtype = np.dtype(np.float64)
    ndim = 2

    def __init__(self, raw: np.ndarray, divisor: float):
        if raw.ndim != 2 or raw.dtype.kind not in "iu":
            raise ValueError(f"ScaledRows needs a 2-D integer matrix, got {raw.dtype} of shape {raw.shape}")
        self.raw, self.divisor = raw, float(divisor)

    @property
    def shape(self) -> tuple:
        return self.raw.shape

    @property
    def size(self) -> int:
        return self.raw.size

    def __len__(self) -> int:
        return self.raw.shape[0]

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self._scale(self.raw[key])
        if isinstance(key, tuple):  # elements or columns: scaled the same way
            return self._scale(self.raw[key])[()]
        return ScaledRows(self.raw[key], self.divisor)

    def __iter__(self):
        for k in range(self.raw.shape[0]):
            yield self._scale(self.raw[k])

    def _scale(self, raw):
        out = np.asarray(raw).astype(np.float64)
        out /= self.divisor
        return out

    def __array__(self, dtype=None, copy=None):
        x = self._scale(self.raw)
        return x if dtype is None else x.astype(dtype)

    def min(self) -> float:
        return float(self._scale(self.raw.min()))

    def max(self) -> float:
        return float(self._scale(self.raw.max()))

    def chunks(self, rows: int = 4096):
        """The scaled matrix in C-contiguous float64 blocks of at most ``rows`` rows, in order."""
        for k in range(0, self.raw.shape[0], rows):
            yield self._scale(self.raw[k:k + rows])

    def __repr__(self) -> str:
        return f"ScaledRows({self.raw.dtype} {self.raw.shape} / {self.divisor:g})"


class SparseRows(ScaledRows):
    """A ``ScaledRows`` matrix that stores only each row's nonzero integers, and a bit per element.

    Row ``k`` holds ``raw[indptr[k]:indptr[k + 1]]``, in column order, at the columns whose bit
    is set in ``mask[k]`` (``np.packbits`` of ``row != 0``), and zeros elsewhere; read, it is
    scaled as ``ScaledRows`` scales it (zeros stay ``0.0``), so every value, row, block and
    digest is bit for bit that of the dense matrix. An MNIST image has some 150 nonzero pixels
    of 784: the 70,000 take 17 MB this way (98 bytes of bits and 150 of values each) against
    55 MB as a dense uint8 matrix. A slice is a view (no copy), an index array or mask a
    gathered copy.
    """

    def __init__(self, raw: np.ndarray, mask: np.ndarray, indptr: np.ndarray, n_cols: int, divisor: float):
        n_cols = int(n_cols)
        if (raw.ndim != 1 or raw.dtype.kind not in "iu" or indptr.ndim != 1 or mask.dtype != np.uint8
                or mask.shape != (indptr.shape[0] - 1, (n_cols + 7) // 8)):
            raise ValueError(f"SparseRows needs 1-D integer values, a 1-D indptr and a packed uint8 mask of "
                             f"one row per row, got {raw.dtype} {raw.shape}, {indptr.shape}, {mask.dtype} "
                             f"{mask.shape} for {n_cols} columns")
        self.raw, self.mask, self.indptr = raw, mask, indptr
        self.n_cols, self.divisor = n_cols, float(divisor)

    @property
    def shape(self) -> tuple:
        return (self.indptr.shape[0] - 1, self.n_cols)

    @property
    def size(self) -> int:
        return self.shape[0] * self.n_cols

    def __len__(self) -> int:
        return self.indptr.shape[0] - 1

    def _values(self) -> np.ndarray:
        """The stored integers of these rows, in order."""
        return self.raw[int(self.indptr[0]):int(self.indptr[-1])]

    def _dense(self) -> np.ndarray:
        """The integer matrix, dense, in the storage's integer type."""
        out = np.zeros(self.shape, self.raw.dtype)
        out[np.unpackbits(self.mask, axis=1, count=self.n_cols).view(bool)] = self._values()
        return out

    def _row(self, k: int) -> np.ndarray:
        n = len(self)
        if not -n <= k < n:
            raise IndexError(f"index {k} is out of bounds for axis 0 with size {n}")
        k %= n
        a, b = self.indptr[k:k + 2].tolist()
        out = np.zeros(self.n_cols, np.float64)
        out[np.unpackbits(self.mask[k], count=self.n_cols).view(bool)] = self.raw[a:b]
        out /= self.divisor
        return out

    def _rows(self, key) -> "SparseRows":
        """Rows ``key`` (slice, index array or boolean mask) as a SparseRows: a view for a unit-step slice."""
        n = len(self)
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                stop = max(start, stop)
                return SparseRows(self.raw, self.mask[start:stop], self.indptr[start:stop + 1], self.n_cols,
                                  self.divisor)
            key = np.arange(start, stop, step)
        sel = np.arange(n)[np.asarray(key)]  # numpy's checks and semantics of the index (masks, negatives)
        if sel.ndim != 1:
            raise IndexError(f"SparseRows takes 1-D row indices, got shape {sel.shape}")
        lengths = self.indptr[sel + 1] - self.indptr[sel]
        indptr = np.zeros(len(sel) + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        take = np.repeat(self.indptr[sel] - indptr[:-1], lengths) + np.arange(indptr[-1])
        return SparseRows(self.raw[take], self.mask[sel], indptr, self.n_cols, self.divisor)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self._row(int(key))
        if isinstance(key, tuple):  # elements or columns: scaled the same way
            first, rest = key[0], key[1:]
            if isinstance(first, (int, np.integer)):
                return self._row(int(first))[rest][()]
            return np.asarray(self._rows(first))[(slice(None), *rest)][()]
        return self._rows(key)

    def __iter__(self):
        for k in range(len(self)):
            yield self._row(k)

    def __array__(self, dtype=None, copy=None):
        x = self._scale(self._dense())
        return x if dtype is None else x.astype(dtype)

    def _extreme(self, fn) -> float:
        values = self._values()
        if values.shape[0] < self.size:  # some zeros are implicit
            values = np.append(values, np.zeros(1, values.dtype))
        return float(self._scale(fn(values)))

    def min(self) -> float:
        return self._extreme(np.min)

    def max(self) -> float:
        return self._extreme(np.max)

    def chunks(self, rows: int = 4096):
        """The scaled matrix in C-contiguous float64 blocks of at most ``rows`` rows, in order."""
        for k in range(0, len(self), rows):
            yield self._scale(self._rows(slice(k, k + rows))._dense())

    def __repr__(self) -> str:
        return f"SparseRows({self.raw.dtype} {self.shape}, {self.raw.shape[0]} nonzero / {self.divisor:g})"


def _as_features(name: str, field: str, x: np.ndarray) -> np.ndarray:
    """Return ``x`` as a C-contiguous float64 matrix (or a ``ScaledRows`` one, as it is), or raise DataError."""
    if isinstance(x, ScaledRows):
        return x  # integers scaled: 2-D and finite by construction
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise DataError(f"dataset {name!r}: {field} must be 2-D (n, d), got shape {x.shape}")
    if not np.isfinite(x).all():
        row, col = np.argwhere(~np.isfinite(x))[0]
        raise DataError(f"dataset {name!r}: {field}[{row}, {col}]={float(x[row, col])!r} is not a finite number")
    return x


def _as_labels(name: str, field: str, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Return ``y`` as an int64 vector of labels in [0, n_classes), or raise DataError."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"dataset {name!r}: {field} must be 1-D (n,), got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"dataset {name!r}: {field} must have an integer dtype, got {y.dtype}")
    y = np.ascontiguousarray(y, dtype=np.int64)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(
            f"dataset {name!r}: {field} has labels in [{y.min()}, {y.max()}], "
            f"outside [0, {n_classes}) for n_classes={n_classes}"
        )
    return y


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test classification dataset held in memory, in file order.

    ``x_*`` are float64 ``(n, d)`` matrices (numpy arrays, or ``ScaledRows`` scaling integers on read), ``y_*`` int64 ``(n,)`` label vectors with
    values in ``[0, n_classes)``.  Samples are kept in the order of the source files:
    training is online in dataset order, so nothing here shuffles.
    (``eq=False``: numpy arrays have no meaningful ``==`` for dataclass equality.)
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    feature_names: Optional[tuple] = None

    def __post_init__(self) -> None:
        if not isinstance(self.n_classes, (int, np.integer)) or self.n_classes < 1:
            raise DataError(f"dataset {self.name!r}: n_classes must be a positive int, got {self.n_classes!r}")
        set_ = object.__setattr__  # frozen: normalise dtypes once, here
        set_(self, "n_classes", int(self.n_classes))
        set_(self, "x_train", _as_features(self.name, "x_train", self.x_train))
        set_(self, "x_test", _as_features(self.name, "x_test", self.x_test))
        set_(self, "y_train", _as_labels(self.name, "y_train", self.y_train, self.n_classes))
        set_(self, "y_test", _as_labels(self.name, "y_test", self.y_test, self.n_classes))
        self._check_consistency()
        if self.feature_names is not None:
            set_(self, "feature_names", tuple(self.feature_names))
            if len(self.feature_names) != self.n_features:
                raise DataError(
                    f"dataset {self.name!r}: {len(self.feature_names)} feature_names "
                    f"for {self.n_features} features"
                )

    def _check_consistency(self) -> None:
        """Raise DataError if sample counts or feature dimensions disagree."""
        if len(self.x_train) != len(self.y_train):
            raise DataError(
                f"dataset {self.name!r}: x_train has {len(self.x_train)} rows but y_train has {len(self.y_train)}"
            )
        if len(self.x_test) != len(self.y_test):
            raise DataError(
                f"dataset {self.name!r}: x_test has {len(self.x_test)} rows but y_test has {len(self.y_test)}"
            )
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise DataError(
                f"dataset {self.name!r}: x_train has {self.x_train.shape[1]} features "
                f"but x_test has {self.x_test.shape[1]}"
            )

    @property
    def n_features(self) -> int:
        """Input dimension ``d``."""
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        """Number of training samples."""
        return int(len(self.y_train))

    @property
    def n_test(self) -> int:
        """Number of test samples."""
        return int(len(self.y_test))

    def subset(self, n_train: Optional[int] = None, n_test: Optional[int] = None) -> "Dataset":
        """Return a Dataset with the first ``n_train`` / ``n_test`` samples (None = all).

        File order is kept (no shuffling).  Asking for more samples than exist, or a
        negative count, raises DataError.  The arrays are views, not copies.
        """
        n_tr = _check_count(self.name, "n_train", n_train, self.n_train)
        n_te = _check_count(self.name, "n_test", n_test, self.n_test)
        return dataclasses.replace(
            self,
            x_train=self.x_train[:n_tr],
            y_train=self.y_train[:n_tr],
            x_test=self.x_test[:n_te],
            y_test=self.y_test[:n_te],
        )

    def digest(self) -> str:
        """SHA-256 of the arrays in order (checkpoints record it; a resume checks the data are the same)."""
        h = hashlib.sha256()
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(f"{a.dtype.str}{a.shape}".encode())
            for block in (a.chunks(1024) if isinstance(a, ScaledRows) else (a,)):  # the same bytes, in 6 MB blocks
                h.update(np.ascontiguousarray(block).data)
        return h.hexdigest()

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, "
            f"n_features={self.n_features}, n_classes={self.n_classes})"
        )


def _check_count(name: str, field: str, n: Optional[int], available: int) -> int:
    """Validate a subset size; None means all ``available`` samples."""
    if n is None:
        return available
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise DataError(f"dataset {name!r}: {field} must be an int or None, got {n!r}")
    if n < 0 or n > available:
        raise DataError(f"dataset {name!r}: {field}={n} is outside [0, {available}]")
    return int(n)
