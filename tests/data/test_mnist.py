"""Tests for distspike.data.mnist and the atomic downloader (no network access)."""
from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from distspike.data import DataError, Dataset, load_dataset
from distspike.data import download as dl
from distspike.data import mnist

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MNIST_DIR = DATA / "mnist"
NAMES = tuple(mnist.MNIST_MD5)


def _need_real_mnist() -> Path:
    if not all((MNIST_DIR / f"{n}.gz").is_file() for n in NAMES):
        pytest.skip(f"real MNIST .gz files not found in {MNIST_DIR}")
    return MNIST_DIR


@pytest.fixture(scope="module")
def real_mnist() -> Dataset:
    return mnist.load_mnist(_need_real_mnist(), download=False)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def serve_from(files: dict):
    """A fake ``urlopen`` serving ``files[basename of url]`` (bytes or Exception)."""

    def _open(url, timeout):
        item = files.get(url.rsplit("/", 1)[-1])
        if item is None:
            raise urllib.error.URLError(f"no such file {url}")
        if isinstance(item, Exception):
            raise item
        return io.BytesIO(item)

    return _open


# --------------------------------------------------------------------------- real data

def test_real_mnist_shapes_dtypes_ranges(real_mnist):
    d = real_mnist
    assert (d.n_train, d.n_test, d.n_features, d.n_classes) == (60000, 10000, 784, 10)
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert d.x_train.dtype == np.float64 and d.y_train.dtype == np.int64
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    assert 0.0 <= d.x_test.min() and d.x_test.max() <= 1.0


def test_real_mnist_labels(real_mnist):
    d = real_mnist
    assert np.bincount(d.y_train, minlength=10).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(d.y_test, minlength=10).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert d.y_train[:5].tolist() == [5, 0, 4, 1, 9]  # official file order, no shuffle
    assert d.y_test[:3].tolist() == [7, 2, 1]


def test_load_dataset_dispatches_to_mnist(real_mnist):
    d = load_dataset("mnist", DATA, download=False)
    np.testing.assert_array_equal(d.y_train, real_mnist.y_train)
    assert d.subset(100, 10).x_train.shape == (100, 784)


def test_validation_split_is_mnist_pkl_gz_s(real_mnist):
    """``split=validation``: train on the first 50k official training images, test on the last 10k."""
    d = load_dataset("mnist", DATA, download=False, split="validation")
    assert (d.n_train, d.n_test) == (50000, 10000)
    np.testing.assert_array_equal(d.x_train, real_mnist.x_train[:50000])
    np.testing.assert_array_equal(d.x_test, real_mnist.x_train[50000:])
    np.testing.assert_array_equal(d.y_test, real_mnist.y_train[50000:])
    assert np.bincount(d.y_test, minlength=10).tolist() == [  # the counts of mnist.pkl.gz's validation set
        991, 1064, 990, 1030, 983, 915, 967, 1090, 1009, 961]


def test_unknown_split_is_one_clear_error():
    with pytest.raises(DataError, match="split='test' is not one of"):
        mnist.load_mnist(Path("/nonexistent"), download=False, split="test")


# --------------------------------------------------------------------------- corrupt files

def _copy_real(tmp_path: Path) -> Path:
    src = _need_real_mnist()
    root = tmp_path / "mnist"
    root.mkdir()
    for name in NAMES:
        shutil.copy(src / f"{name}.gz", root / f"{name}.gz")
    return root


def test_flipped_byte_fails_checksum_naming_file(tmp_path):
    root = _copy_real(tmp_path)
    gz = root / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(gz.read_bytes()))
    data[100] ^= 0x01  # a label byte, not the header
    gz.unlink()
    plain = root / "t10k-labels-idx1-ubyte"
    plain.write_bytes(bytes(data))
    with pytest.raises(DataError, match="MD5") as err:
        mnist.load_mnist(root, download=False)
    assert str(plain) in str(err.value)


def test_corrupt_gzip_names_file(tmp_path):
    root = _copy_real(tmp_path)
    gz = root / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    gz.write_bytes(bytes(raw))
    with pytest.raises(DataError) as err:
        mnist.load_mnist(root, download=False)
    assert str(gz) in str(err.value)


def test_truncated_plain_file(tmp_path):
    root = _copy_real(tmp_path)
    gz = root / "t10k-labels-idx1-ubyte.gz"
    data = gzip.decompress(gz.read_bytes())
    gz.unlink()
    plain = root / "t10k-labels-idx1-ubyte"
    plain.write_bytes(data[:-100])
    with pytest.raises(DataError, match="truncated") as err:
        mnist.load_mnist(root, download=False)
    assert str(plain) in str(err.value)


def test_truncated_gzip_file(tmp_path):
    root = _copy_real(tmp_path)
    gz = root / "t10k-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:1000])
    with pytest.raises(DataError, match="gzip") as err:
        mnist.load_mnist(root, download=False)
    assert str(gz) in str(err.value)


# --------------------------------------------------------------------------- parser

def test_parse_idx_roundtrip_and_errors():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(arr)
    np.testing.assert_array_equal(mnist.parse_idx(data, "x", ndim=3), arr)
    with pytest.raises(DataError, match="magic.*"):
        mnist.parse_idx(b"\x00\x01" + data[2:], "f.idx")
    with pytest.raises(DataError, match="'f.idx'.*truncated"):
        mnist.parse_idx(data[:-1], "f.idx")
    with pytest.raises(DataError, match="trailing"):
        mnist.parse_idx(data + b"\x00", "f.idx")
    with pytest.raises(DataError, match="1-D"):
        mnist.parse_idx(data, "f.idx", ndim=1)
    with pytest.raises(DataError, match="truncated"):
        mnist.parse_idx(data[:2], "f.idx")


def _fake_mnist(monkeypatch, n_train=5, n_test=3):
    """Small random MNIST-like files; checksum table patched to match them."""
    rng = np.random.default_rng(0)
    arrays = {
        mnist.TRAIN_IMAGES: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        mnist.TRAIN_LABELS: rng.integers(0, 10, n_train, dtype=np.uint8),
        mnist.TEST_IMAGES: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        mnist.TEST_LABELS: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    blobs = {name: idx_bytes(a) for name, a in arrays.items()}
    for name, blob in blobs.items():
        monkeypatch.setitem(mnist.MNIST_MD5, name, hashlib.md5(blob).hexdigest())
    return arrays, blobs


@pytest.mark.parametrize("gzipped", [True, False])
def test_gz_and_plain_files_load(tmp_path, monkeypatch, gzipped):
    arrays, blobs = _fake_mnist(monkeypatch)
    for name, blob in blobs.items():
        if gzipped:
            (tmp_path / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (tmp_path / name).write_bytes(blob)
    d = mnist.load_mnist(tmp_path, download=False)
    assert d.x_train.shape == (5, 784) and d.x_test.shape == (3, 784)
    np.testing.assert_allclose(d.x_train, arrays[mnist.TRAIN_IMAGES].reshape(5, -1) / 255.0)
    np.testing.assert_array_equal(d.y_test, arrays[mnist.TEST_LABELS])
    assert d.y_train.dtype == np.int64


def test_image_label_count_mismatch(tmp_path, monkeypatch):
    _, blobs = _fake_mnist(monkeypatch)
    labels = idx_bytes(np.zeros(4, dtype=np.uint8))
    monkeypatch.setitem(mnist.MNIST_MD5, mnist.TRAIN_LABELS, hashlib.md5(labels).hexdigest())
    blobs[mnist.TRAIN_LABELS] = labels
    for name, blob in blobs.items():
        (tmp_path / name).write_bytes(blob)
    with pytest.raises(DataError, match="5 images.*4 labels"):
        mnist.load_mnist(tmp_path, download=False)


# --------------------------------------------------------------------------- missing / download

def test_missing_dir_without_download(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as err:
        mnist.load_mnist(missing, download=False)
    assert str(missing) in str(err.value)


def test_missing_file_without_download(tmp_path, monkeypatch):
    _, blobs = _fake_mnist(monkeypatch)
    for name, blob in list(blobs.items())[:3]:
        (tmp_path / name).write_bytes(blob)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        mnist.load_mnist(tmp_path, download=False)


def _listing(root: Path) -> list:
    return sorted(p.name for p in root.iterdir())


def test_download_falls_back_to_next_mirror(tmp_path, monkeypatch):
    arrays, blobs = _fake_mnist(monkeypatch)
    gz = {f"{n}.gz": gzip.compress(b) for n, b in blobs.items()}
    opened = []

    def _open(url, timeout):
        opened.append(url)
        if url.startswith(mnist.MNIST_MIRRORS[0]):
            raise urllib.error.URLError("mirror down")
        return serve_from(gz)(url, timeout)

    monkeypatch.setattr(dl, "urlopen", _open)
    root = tmp_path / "new" / "mnist"
    d = mnist.load_mnist(root, download=True)
    assert _listing(root) == sorted(f"{n}.gz" for n in NAMES)  # no .part leftovers
    assert len(opened) == 8  # 4 files x (failed mirror + good mirror)
    np.testing.assert_array_equal(d.y_train, arrays[mnist.TRAIN_LABELS])
    # second load uses the cached files, no network
    monkeypatch.setattr(dl, "urlopen", serve_from({}))
    mnist.load_mnist(root, download=True)


def test_download_real_bytes_are_verified(tmp_path, monkeypatch):
    src = _need_real_mnist()
    monkeypatch.setattr(dl, "urlopen", serve_from({f"{n}.gz": (src / f"{n}.gz").read_bytes() for n in NAMES}))
    d = mnist.load_mnist(tmp_path, download=True)
    assert (d.n_train, d.n_test) == (60000, 10000)
    assert _listing(tmp_path) == sorted(f"{n}.gz" for n in NAMES)


def test_bad_download_leaves_no_file(tmp_path, monkeypatch):
    _, blobs = _fake_mnist(monkeypatch)
    bad = {f"{n}.gz": gzip.compress(b[:-1] + bytes([b[-1] ^ 1])) for n, b in blobs.items()}  # bad md5
    monkeypatch.setattr(dl, "urlopen", serve_from(bad))
    with pytest.raises(DataError) as err:
        mnist.load_mnist(tmp_path, download=True)
    msg = str(err.value)
    for mirror in mnist.MNIST_MIRRORS:  # every mirror tried and listed
        assert mirror in msg
    assert "MD5" in msg
    assert _listing(tmp_path) == []


def test_download_not_gzip_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "urlopen", serve_from({f"{n}.gz": b"<html>not found</html>" for n in NAMES}))
    with pytest.raises(DataError, match="gzip"):
        mnist.load_mnist(tmp_path, download=True)
    assert _listing(tmp_path) == []


def test_download_file_atomic_and_scheme_check(tmp_path, monkeypatch):
    dest = tmp_path / "sub" / "f.bin"
    monkeypatch.setattr(dl, "urlopen", serve_from({"f.bin": b"payload"}))
    seen = []

    def verify(tmp):
        seen.append(tmp)
        assert tmp.parent == dest.parent and tmp != dest and not dest.exists()

    assert dl.download_file(["https://example.invalid/f.bin"], dest, verify=verify) == dest
    assert dest.read_bytes() == b"payload" and len(seen) == 1 and not seen[0].exists()
    with pytest.raises(DataError, match="file:///etc/passwd"):
        dl.download_file(["file:///etc/passwd"], tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(DataError, match="no URLs"):
        dl.download_file([], tmp_path / "y")


def test_failed_download_says_what_is_expected_and_creates_no_directory(tmp_path, monkeypatch):
    """No internet: one message naming the directory, the files and the download failure; no empty dirs."""
    monkeypatch.setattr(dl, "urlopen", serve_from({}))
    root = tmp_path / "cache" / "distspike" / "data" / "mnist"
    with pytest.raises(DataError) as err:
        mnist.load_mnist(root, download=True)
    msg = str(err.value)
    assert msg.startswith(f"no MNIST files in {str(root)!r} (expected train-images-idx3-ubyte[.gz], ")
    assert "t10k-labels-idx1-ubyte[.gz]) and the download failed: " in msg and "URLError" in msg
    assert list(tmp_path.iterdir()) == []


def test_failed_download_keeps_an_existing_directory(tmp_path, monkeypatch):
    _, blobs = _fake_mnist(monkeypatch)
    (tmp_path / mnist.TRAIN_IMAGES).write_bytes(blobs[mnist.TRAIN_IMAGES])
    monkeypatch.setattr(dl, "urlopen", serve_from({}))
    with pytest.raises(DataError, match=r"^MNIST files missing in .*train-labels-idx1-ubyte\[\.gz\]"):
        mnist.load_mnist(tmp_path, download=True)
    assert _listing(tmp_path) == [mnist.TRAIN_IMAGES]


def test_images_stay_uint8_and_rows_scale_exactly(tmp_path, monkeypatch):
    """The images are kept as uint8 (``ScaledRows``); every read gives the float64 values and digest that
    scaling the whole matrix at once (``x = raw.astype(float64); x /= 255``) gave."""
    arrays, blobs = _fake_mnist(monkeypatch)
    for name, blob in blobs.items():
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(blob))
    d = mnist.load_mnist(tmp_path, download=False)
    assert d.x_train.raw.dtype == np.uint8 and d.x_train.dtype == np.float64
    x = arrays[mnist.TRAIN_IMAGES].reshape(5, -1).astype(np.float64)
    x /= 255.0
    assert np.array_equal(np.asarray(d.x_train), x)
    assert all(np.array_equal(d.x_train[k], x[k]) and d.x_train[k].dtype == np.float64 for k in range(5))
    assert np.array_equal(np.asarray(d.x_train[1:4]), x[1:4]) and np.array_equal(list(d.x_train), x)
    assert d.x_train[2, 7] == x[2, 7] and d.x_train.max() == x.max()
    plain = Dataset("mnist", x, d.y_train, np.asarray(d.x_test), d.y_test, n_classes=10)
    assert plain.digest() == d.digest()
