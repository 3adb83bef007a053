"""20 Newsgroups ("bydate" split) as bag-of-words features.

Layout read from ``root``::

    root/20news-bydate-train/<group>/<doc id>
    root/20news-bydate-test/<group>/<doc id>

Documents are ordered by group (in the order of ``groups``) then numeric doc id,
so the dataset order is deterministic; nothing is shuffled.

Feature default -- binary presence (0/1) features, no further scaling.
The paper's authors' Python driver that fed 20news to their spiking regressor was
not found.  What was found is their generic loader
(``get_20_newsgroups_dataset`` in petered/plato ``utils/datasets/newsgroups.py``,
later artemis), which reads a pre-stemmed copy, keeps the 2000 most common
training words, shuffles with a fixed seed and returns raw counts (optionally
``log(1 + count)``); nothing there says how its output was scaled for the
spiking net.  So the default is 0/1 presence: spiking input layers encode each
input as a firing rate, and 0/1 values lie in [0, 1] like MNIST pixels, so the
same ``eta`` / ``w_init`` / threshold settings carry over.  Raw counts are
heavy-tailed (one word can occur dozens of times in a post) and would send bursts
of spikes from a few inputs.  ``binary=False, scale="max"`` gives counts scaled
to [0, 1] instead.

The authors' preprocessing -- ``preprocess="cachopo", max_features=2000``: Ana
Cardoso-Cachopo's "stemmed" words (subject and body, letters only, no words under 3
letters, no SMART stop words, Porter stems; :mod:`distspike.data.text`) and a
vocabulary of the 2000 words with the most occurrences in the training part. One
difference stays: the authors' loader counted the occurrences over the training posts
of all 20 groups, this loader over those of ``groups``.

Splits (``split``) -- ``bydate`` (default): the official train / test directories, in
file order. The other two pool the ``n`` documents of both directories and test on
``ceil(test_fraction * n)`` of them (1974 -> 395 at 0.2, 247 at 1/8):

- ``random``: the pool in a random order (``numpy.random.default_rng(split_seed)``);
  the test part is the last ``n_test`` of it.
- ``ordered``: the training directory in a random order, then the test directory in
  another one (the same generator, drawn in that order, as the authors' loader
  shuffled its two files); the test part is the last ``n_test`` -- the latest posts,
  since bydate's test posts are later than its training posts -- and the training
  part keeps this order, so it ends on test-directory posts.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from . import download as _download
from . import text as _text
from .base import DataError, Dataset

PathLike = Union[str, os.PathLike]

NEWSGROUPS_URLS: Tuple[str, ...] = ("http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz",)
ARCHIVE_NAME = "20news-bydate.tar.gz"
TRAIN_DIR, TEST_DIR = "20news-bydate-train", "20news-bydate-test"
SPLITS = (TRAIN_DIR, TEST_DIR)
DEFAULT_GROUPS = ("sci.electronics", "sci.med")
TOKEN_PATTERN = r"[a-z][a-z0-9_']+"
SCALES = ("none", "max")
PREPROCESSES = ("tokens", "cachopo")
SPLIT_MODES = ("bydate", "random", "ordered")
_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


# ----------------------------------------------------------------------------- reading

def _check_groups(groups: Sequence[str]) -> Tuple[str, ...]:
    """Validate group names (non-empty, unique, plain directory names)."""
    if isinstance(groups, str):
        groups = (groups,)
    groups = tuple(groups)
    if not groups:
        raise DataError("groups must name at least one newsgroup, got ()")
    for group in groups:
        if not isinstance(group, str) or not _GROUP_RE.match(group) or ".." in group:
            raise DataError(f"invalid newsgroup name {group!r}")
    if len(set(groups)) != len(groups):
        raise DataError(f"duplicate newsgroup names in {groups!r}")
    return groups


def _doc_sort_key(path: Path) -> Tuple[int, int, str]:
    """Numeric doc ids in numeric order; any non-numeric names after them, by name."""
    name = path.name
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def decode(raw: bytes) -> str:
    """Decode a post as UTF-8, falling back to Latin-1 (which never fails)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def list_documents(group_dir: Path) -> List[Path]:
    """Regular, non-hidden files of ``group_dir`` sorted by numeric doc id."""
    if not group_dir.is_dir():
        raise DataError(f"newsgroup directory {str(group_dir)!r} does not exist")
    docs = sorted(
        (p for p in group_dir.iterdir() if p.is_file() and not p.name.startswith(".")),
        key=_doc_sort_key,
    )
    if not docs:
        raise DataError(f"newsgroup directory {str(group_dir)!r} contains no documents")
    return docs


def read_split(split_dir: Path, groups: Sequence[str]) -> Tuple[List[str], np.ndarray]:
    """Read all documents of ``groups`` under ``split_dir``; labels = index in ``groups``."""
    texts: List[str] = []
    labels: List[int] = []
    for label, group in enumerate(groups):
        for path in list_documents(split_dir / group):
            try:
                texts.append(decode(path.read_bytes()))
            except OSError as exc:
                raise DataError(f"cannot read {str(path)!r}: {exc}") from exc
            labels.append(label)
    return texts, np.asarray(labels, dtype=np.int64)


# ----------------------------------------------------------------------------- features

def _vectorize(train: List[str], test: List[str], binary: bool, min_df, max_features):
    """Bag-of-words counts with a vocabulary fitted on ``train`` only."""
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(
        lowercase=True,
        token_pattern=TOKEN_PATTERN,
        min_df=min_df,
        max_features=max_features,
        binary=binary,
        dtype=np.float64,
    )
    try:
        x_train = vectorizer.fit_transform(train).toarray()
    except ValueError as exc:  # empty vocabulary, bad min_df / max_features ...
        raise DataError(
            f"cannot build a vocabulary (min_df={min_df!r}, max_features={max_features!r}): {exc}"
        ) from exc
    x_test = vectorizer.transform(test).toarray()
    return x_train, x_test, tuple(vectorizer.get_feature_names_out())


def _vectorize_cachopo(train: List[str], test: List[str], binary: bool, max_features):
    """Cachopo's stemmed words, the ``max_features`` most frequent training words as vocabulary."""
    train_docs = [_text.stemmed_terms(t) for t in train]
    test_docs = [_text.stemmed_terms(t) for t in test]
    vocab = _text.top_words(train_docs, max_features)
    if not vocab:
        raise DataError("cannot build a vocabulary: the training documents hold no words")
    return _text.count_matrix(train_docs, vocab, binary), _text.count_matrix(test_docs, vocab, binary), vocab


def _features(train, test, preprocess, binary, min_df, max_features):
    """``(x_train, x_test, vocabulary)`` of the texts under ``preprocess``."""
    if preprocess == "tokens":
        return _vectorize(train, test, binary, min_df, max_features)
    if min_df != 1:
        raise DataError(f"min_df={min_df!r} applies to preprocess='tokens' only; use max_features with 'cachopo'")
    if max_features is not None and (isinstance(max_features, bool) or not isinstance(max_features, int)
                                     or max_features < 1):
        raise DataError(f"max_features={max_features!r} must be a positive integer or null")
    return _vectorize_cachopo(train, test, binary, max_features)


# ----------------------------------------------------------------------------- splits

def n_test_of(n: int, test_fraction: float) -> int:
    """Test documents of a pooled split: ``ceil(test_fraction * n)`` (1974 at 0.2 -> 395)."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise DataError(f"test_fraction={test_fraction!r} must be a number strictly between 0 and 1")
    n_test = math.ceil(round(test_fraction * n, 9))
    if not 0 < n_test < n:
        raise DataError(f"test_fraction={test_fraction!r} leaves no training or no test document of {n}")
    return n_test


def split_order(n_train: int, n_test: int, split: str, seed: int) -> np.ndarray:
    """Indices into the pool (training directory, then test directory) in the split's order."""
    rng = np.random.default_rng(seed)
    if split == "random":
        return rng.permutation(n_train + n_test)
    first = rng.permutation(n_train)  # (n_train,)
    return np.concatenate([first, n_train + rng.permutation(n_test)])


def resplit(train, y_train, test, y_test, split: str, test_fraction: float, seed: int):
    """``(train, y_train, test, y_test)`` of ``split`` (see module docstring); 'bydate' as given."""
    if split not in SPLIT_MODES:
        raise DataError(f"unknown split {split!r}; expected one of {SPLIT_MODES}")
    if split == "bydate":
        return train, y_train, test, y_test
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"split_seed={seed!r} must be a non-negative integer")
    texts, labels = train + test, np.concatenate([y_train, y_test])
    order = split_order(len(train), len(test), split, seed)
    cut = len(order) - n_test_of(len(order), test_fraction)
    tr, te = order[:cut], order[cut:]
    return [texts[i] for i in tr], labels[tr], [texts[i] for i in te], labels[te]


def _scale(x_train: np.ndarray, x_test: np.ndarray, scale: str) -> None:
    """Scale features in place.  'max': divide each column by its training max;
    test values above that max are clipped to 1 so both splits lie in [0, 1]."""
    if scale == "none":
        return
    col_max = x_train.max(axis=0) if len(x_train) else np.ones(x_train.shape[1])
    col_max[col_max == 0] = 1.0
    x_train /= col_max
    x_test /= col_max
    np.minimum(x_test, 1.0, out=x_test)


# ----------------------------------------------------------------------------- download

def _member_target(member: tarfile.TarInfo, wanted: set) -> Optional[Tuple[str, str, str]]:
    """``(split, group, doc)`` if ``member`` is a wanted regular file, else None.

    Only exactly ``<split>/<group>/<doc>`` names match, so absolute paths, ``..``
    components, links and devices are never extracted.
    """
    if not member.isfile():
        return None
    parts = PurePosixPath(member.name).parts
    if len(parts) != 3 or (parts[0], parts[1]) not in wanted:
        return None
    if parts[2] in ("", ".", "..") or "\\" in parts[2]:
        return None
    return parts[0], parts[1], parts[2]


def extract_groups(archive: Path, root: Path, groups: Sequence[str]) -> None:
    """Safely extract only ``groups`` (both splits) from ``archive`` into ``root``.

    Files go to a staging directory inside ``root`` first; each complete group
    directory is then moved into place with ``os.replace`` (existing ones are kept).
    """
    wanted = {(split, group) for split in SPLITS for group in groups}
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".20news-extract-", dir=root))
    try:
        found = set()
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    target = _member_target(member, wanted)
                    if target is None:
                        continue
                    out = staging.joinpath(*target)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    found.add(target[:2])
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{str(archive)!r}: cannot extract newsgroups archive ({exc})") from exc
        if wanted - found:
            missing = sorted(f"{s}/{g}" for s, g in wanted - found)
            raise DataError(f"{str(archive)!r} has no documents for {', '.join(missing)}")
        for split, group in sorted(wanted):
            dest = root / split / group
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / split / group, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _verify_archive(path: Path) -> None:
    """Reject a download that is not a readable gzipped tar with bydate members."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            names = tar.getnames()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{str(path)!r}: not a valid .tar.gz archive ({exc})") from exc
    if not any(PurePosixPath(n).parts[:1] == (TRAIN_DIR,) for n in names):
        raise DataError(f"{str(path)!r}: archive has no {TRAIN_DIR}/ directory")


def download_newsgroups(root: PathLike, groups: Sequence[str] = DEFAULT_GROUPS) -> None:
    """Fetch ``20news-bydate.tar.gz`` into ``root`` (if absent) and extract ``groups``."""
    root = Path(root).expanduser()
    archive = root / ARCHIVE_NAME
    if not archive.is_file():
        _download.download_file(NEWSGROUPS_URLS, archive, verify=_verify_archive)
    extract_groups(archive, root, _check_groups(groups))


def _missing_dirs(root: Path, groups: Sequence[str]) -> List[Path]:
    return [root / split / group for split in SPLITS for group in groups if not (root / split / group).is_dir()]


# ----------------------------------------------------------------------------- public

def load_newsgroups(
    root: PathLike,
    groups: Sequence[str] = DEFAULT_GROUPS,
    binary: bool = True,
    min_df: Union[int, float] = 1,
    max_features: Optional[int] = None,
    scale: str = "none",
    download: bool = True,
    preprocess: str = "tokens",
    split: str = "bydate",
    test_fraction: float = 0.2,
    split_seed: int = 1234,
) -> Dataset:
    """Load the 20 Newsgroups bydate train/test split for ``groups`` as bag-of-words.

    Args:
        root: directory holding ``20news-bydate-train/`` and ``20news-bydate-test/``.
        groups: newsgroups to use; label = index in this tuple.
        binary: 0/1 word-presence features (default, see module docstring) instead
            of raw counts.
        min_df, max_features: vocabulary filters, as in sklearn's CountVectorizer,
            applied to the training split only.
        scale: 'none' (values as counted) or 'max' (divide each column by its
            training-set max; test values clipped to 1) -> values in [0, 1].
        download: if group directories are missing, fetch the official archive
            into ``root`` and extract only ``groups``.
        preprocess: 'tokens' (lowercase matches of ``[a-z][a-z0-9_']+``, headers
            included) or 'cachopo' (the authors' stemmed words, module docstring;
            ``max_features`` then ranks words by occurrences, ``min_df`` must be 1).
        split: 'bydate', 'random' or 'ordered' (module docstring); ``test_fraction``
            and ``split_seed`` apply to the last two.

    The vocabulary (``feature_names``) comes from the training part only.  Under
    'bydate', documents are ordered by group then numeric doc id.
    """
    groups = _check_groups(groups)
    for key, value, allowed in (("scale", scale, SCALES), ("preprocess", preprocess, PREPROCESSES),
                                ("split", split, SPLIT_MODES)):
        if value not in allowed:
            raise DataError(f"unknown {key} {value!r}; expected one of {allowed}")
    root = Path(root).expanduser()
    missing = _missing_dirs(root, groups)
    if missing and download:
        download_newsgroups(root, groups)
        missing = _missing_dirs(root, groups)
    if missing:
        where = f"directory {str(root)!r} does not exist" if not root.is_dir() else "missing: " + ", ".join(
            repr(str(m)) for m in missing
        )
        raise DataError(f"20 Newsgroups data not found ({where}; download={download})")
    train_texts, y_train = read_split(root / TRAIN_DIR, groups)
    test_texts, y_test = read_split(root / TEST_DIR, groups)
    train_texts, y_train, test_texts, y_test = resplit(train_texts, y_train, test_texts, y_test, split,
                                                       test_fraction, split_seed)
    x_train, x_test, vocab = _features(train_texts, test_texts, preprocess, binary, min_df, max_features)
    _scale(x_train, x_test, scale)
    return Dataset("newsgroups", x_train, y_train, x_test, y_test, n_classes=len(groups), feature_names=vocab)
