"""Tests for distspike.data.newsgroups (real bydate subset + synthetic corpora, no network)."""
from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest

from distspike.data import DataError, Dataset, load_dataset
from distspike.data import download as dl
from distspike.data import newsgroups as ng
from distspike.data import text
from distspike.data.stopwords import SMART_STOP_WORDS

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NEWS_DIR = DATA / "20news-bydate"
GROUPS = ("sci.electronics", "sci.med")


def _need_real_news() -> Path:
    if not all((NEWS_DIR / split / g).is_dir() for split in ng.SPLITS for g in GROUPS):
        pytest.skip(f"real 20news-bydate data (sci.electronics, sci.med) not found in {NEWS_DIR}")
    return NEWS_DIR


@pytest.fixture(scope="module")
def real_news() -> Dataset:
    return ng.load_newsgroups(_need_real_news(), download=False)


def make_corpus(root: Path, docs: dict) -> Path:
    """docs: {(split, group, doc_id): bytes}."""
    for (split, group, doc_id), text in docs.items():
        path = root / split / group / str(doc_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text)
    return root


TRAIN, TEST = ng.TRAIN_DIR, ng.TEST_DIR
SMALL = {
    (TRAIN, "sci.med", 10): b"doctor patient ten",
    (TRAIN, "sci.med", 9): b"doctor nine",
    (TRAIN, "sci.med", 100): b"Doctor hundred hundred",
    (TRAIN, "sci.electronics", 5): b"circuit voltage five",
    (TEST, "sci.med", 1): b"doctor zebraword",
    (TEST, "sci.electronics", 2): b"circuit circuit circuit circuit unseenterm",
}


# --------------------------------------------------------------------------- real data

def test_real_counts_labels_dtypes(real_news):
    d = real_news
    assert (d.n_train, d.n_test, d.n_classes) == (591 + 594, 393 + 396, 2)
    assert np.bincount(d.y_train).tolist() == [591, 594]
    assert np.bincount(d.y_test).tolist() == [393, 396]
    # grouped in `groups` order: all electronics (0) first, then med (1)
    assert (d.y_train[:591] == 0).all() and (d.y_train[591:] == 1).all()
    assert d.x_train.dtype == np.float64 and d.y_train.dtype == np.int64
    assert d.x_train.shape[1] == d.x_test.shape[1] == len(d.feature_names) > 1000


def test_real_default_is_binary_presence(real_news):
    for x in (real_news.x_train, real_news.x_test):
        assert set(np.unique(x).tolist()) == {0.0, 1.0}


def test_real_vocabulary_from_train_only(real_news):
    pattern = re.compile(ng.TOKEN_PATTERN)

    def tokens(split):
        out = set()
        for g in GROUPS:
            for p in (NEWS_DIR / split / g).iterdir():
                out.update(pattern.findall(ng.decode(p.read_bytes()).lower()))
        return out

    train_words, test_words = tokens(TRAIN), tokens(TEST)
    test_only = test_words - train_words
    assert test_only, "expected some words that occur only in the test split"
    vocab = set(real_news.feature_names)
    assert vocab == train_words
    assert not (test_only & vocab)


def test_real_order_is_numeric_doc_id():
    root = _need_real_news()
    docs = ng.list_documents(root / TRAIN / "sci.med")
    ids = [int(p.name) for p in docs]
    assert len(ids) == 594 and ids == sorted(ids)


def test_real_counts_max_scaling():
    d = ng.load_newsgroups(_need_real_news(), binary=False, scale="max", max_features=300, download=False)
    assert d.x_train.shape == (1185, 300)
    np.testing.assert_allclose(d.x_train.max(axis=0), 1.0)
    assert d.x_test.min() >= 0.0 and d.x_test.max() <= 1.0
    assert len(np.unique(d.x_train)) > 2  # not just presence


def test_load_dataset_dispatches_to_newsgroups():
    _need_real_news()
    d = load_dataset("newsgroups", DATA, max_features=50, download=False)
    assert d.name == "newsgroups" and d.x_train.shape == (1185, 50)


# --------------------------------------------------------------------------- synthetic

def test_synthetic_order_vocab_and_raw_counts(tmp_path):
    root = make_corpus(tmp_path, SMALL)
    d = ng.load_newsgroups(root, groups=("sci.med", "sci.electronics"), binary=False, download=False)
    vocab = d.feature_names
    assert "zebraword" not in vocab and "unseenterm" not in vocab
    assert vocab == tuple(sorted(vocab))
    # sci.med docs first, by numeric id 9, 10, 100; then sci.electronics
    assert d.y_train.tolist() == [0, 0, 0, 1]
    col = {w: i for i, w in enumerate(vocab)}
    assert d.x_train[:, col["nine"]].tolist() == [1, 0, 0, 0]
    assert d.x_train[:, col["ten"]].tolist() == [0, 1, 0, 0]
    assert d.x_train[2, col["hundred"]] == 2 and d.x_train[2, col["doctor"]] == 1  # lowercased
    assert d.x_test[1, col["circuit"]] == 4
    assert d.x_test[0].sum() == 1  # only "doctor" counted; zebraword ignored

    b = ng.load_newsgroups(root, groups=("sci.med", "sci.electronics"), download=False)
    assert b.x_train[2, col["hundred"]] == 1 and b.x_test[1, col["circuit"]] == 1

    m = ng.load_newsgroups(root, groups=("sci.med", "sci.electronics"), binary=False, scale="max", download=False)
    assert m.x_train[2, col["hundred"]] == 1.0
    assert m.x_test[1, col["circuit"]] == 1.0  # 4 / train max 1, clipped


def test_latin1_fallback_and_hidden_files(tmp_path):
    docs = dict(SMALL)
    docs[(TRAIN, "sci.med", 11)] = "caf\u00e9 na\u00efve".encode("latin-1")
    root = make_corpus(tmp_path, docs)
    (root / TRAIN / "sci.med" / ".DS_Store").write_bytes(b"\xff\xfe junk")
    d = ng.load_newsgroups(root, groups=("sci.med", "sci.electronics"), download=False)
    assert d.n_train == 5
    assert "caf\u00e9" not in d.feature_names and "caf" in d.feature_names  # tokenizer is [a-z]


def test_missing_group_dir_names_path(tmp_path):
    root = make_corpus(tmp_path, SMALL)
    with pytest.raises(DataError) as err:
        ng.load_newsgroups(root, groups=("sci.med", "sci.space"), download=False)
    assert str(root / TRAIN / "sci.space") in str(err.value)


def test_missing_root_names_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist") as err:
        ng.load_newsgroups(tmp_path / "absent", download=False)
    assert str(tmp_path / "absent") in str(err.value)


def test_bad_options(tmp_path):
    root = make_corpus(tmp_path, SMALL)
    with pytest.raises(DataError, match="'log'"):
        ng.load_newsgroups(root, groups=("sci.med",), scale="log", download=False)
    with pytest.raises(DataError, match=r"'\.\./etc'"):
        ng.load_newsgroups(root, groups=("../etc",), download=False)
    with pytest.raises(DataError, match="vocabulary"):
        ng.load_newsgroups(root, groups=("sci.med", "sci.electronics"), min_df=99, download=False)


# --------------------------------------------------------------------------- Cachopo's preprocessing

POST = ("From: someone@example.com (Some One)\nSubject: Re: The 3 oscillators!\nLines: 2\n\n"
        "Hello, World's 2nd-best op-amp circuits.\nThey are running here.\n")


def test_split_post_keeps_the_subject_and_the_body():
    body = "Hello, World's 2nd-best op-amp circuits.\nThey are running here.\n"
    assert text.split_post(POST) == ("Re: The 3 oscillators!", body)
    assert text.split_post("no header here\n\nsecond paragraph") == ("", "no header here\n\nsecond paragraph")
    assert text.split_post("Subject: only headers") == ("", "Subject: only headers")
    wrapped = "Subject: a long\n  subject\nFrom: x\n\nbody"
    assert text.split_post(wrapped) == ("a long", "body")
    dotted = "From: x\nSubject: Re: dB\nArticle-I.D.: gap.1pkveuINNduk\n\nbody"  # field names may hold dots
    assert text.split_post(dotted) == ("Re: dB", "body")


def test_all_terms_letters_only_lower_case_subject_first():
    assert text.all_terms(POST) == ["re", "the", "oscillators", "hello", "world", "s", "nd", "best", "op", "amp",
                                    "circuits", "they", "are", "running", "here"]
    assert text.all_terms("caf\u00e9 na\u00efve\tx1y") == ["caf", "na", "ve", "x", "y"]  # non-ASCII letters split


def test_stemmed_terms_drop_short_and_stop_words_then_stem():
    # re, s, nd, op: under 3 letters; the, they, are, here: SMART stop words
    assert text.stemmed_terms(POST) == ["oscil", "world", "amp", "circuit", "run"]  # hello, best: stop words too
    assert text.stemmed_terms("Subject: x\n\nResources caresses ponies generalization") == [
        "resourc", "caress", "poni", "gener"]


def test_smart_stop_list_is_the_524_entry_list():
    assert len(SMART_STOP_WORDS) == 523  # 524 entries, "would" twice
    assert {"would", "the", "yourselves", "zero", "a"} <= SMART_STOP_WORDS
    assert not any("'" in w for w in SMART_STOP_WORDS) and "circuit" not in SMART_STOP_WORDS


def test_top_words_rank_by_occurrences_ties_by_name():
    docs = [["b", "a", "c", "c"], ["c", "b", "d"], ["a"]]
    assert text.top_words(docs, 1) == ("c",)
    assert text.top_words(docs, 2) == ("a", "c")  # a and b tie at 2: a wins
    assert text.top_words(docs, None) == ("a", "b", "c", "d")
    x = text.count_matrix(docs, ("a", "c"), binary=False)
    np.testing.assert_array_equal(x, [[1, 2], [0, 1], [1, 0]])
    np.testing.assert_array_equal(text.count_matrix(docs, ("a", "c"), binary=True), [[1, 1], [0, 1], [1, 0]])


STEMMED = {
    (TRAIN, "sci.med", 1): b"Subject: doctors\n\nThe doctors treated patients",
    (TRAIN, "sci.med", 2): b"Subject: Re: doctor\n\npatient patient doctor",
    (TRAIN, "sci.electronics", 3): b"Subject: circuits\n\ncircuit voltage voltages on it",
    (TEST, "sci.med", 4): b"Subject: x\n\ndoctor zebra",
    (TEST, "sci.electronics", 5): b"Subject: y\n\nvoltage unseen",
}


def test_cachopo_vocabulary_is_the_most_frequent_training_stems(tmp_path):
    root = make_corpus(tmp_path, STEMMED)
    d = ng.load_newsgroups(root, groups=("sci.med", "sci.electronics"), preprocess="cachopo", binary=False,
                           max_features=3, download=False)
    # doctor 4, patient 3, circuit 2, voltag 2 (tie: circuit wins), treat 1; from the training part only
    assert d.feature_names == ("circuit", "doctor", "patient")
    col = {w: i for i, w in enumerate(d.feature_names)}
    assert d.x_train[:, col["doctor"]].tolist() == [2, 2, 0]
    assert d.x_test.tolist() == [[0, 1, 0], [0, 0, 0]]
    b = ng.load_newsgroups(root, groups=("sci.med", "sci.electronics"), preprocess="cachopo", download=False)
    assert "zebra" not in b.feature_names and "voltag" in b.feature_names and b.x_train.max() == 1.0


def test_pooled_splits_sizes_and_order():
    train, test = [f"tr{i}" for i in range(10)], [f"te{i}" for i in range(5)]
    y_train, y_test = np.zeros(10, np.int64), np.ones(5, np.int64)
    assert ng.n_test_of(1974, 0.2) == 395 and ng.n_test_of(1974, 0.125) == 247 and ng.n_test_of(15, 0.2) == 3
    tr, ytr, te, yte = ng.resplit(train, y_train, test, y_test, "ordered", 0.2, 1234)
    assert len(tr) == 12 and len(te) == 3
    assert all(t.startswith("te") for t in te) and all(t.startswith("tr") for t in tr[:10])  # test = the latest
    assert sorted(tr[:10]) == sorted(train) and sorted(tr[10:] + te) == sorted(test)
    assert (yte == 1).all() and ytr.tolist() == [0] * 10 + [1] * 2
    order = ng.split_order(10, 5, "ordered", 1234)
    rng = np.random.default_rng(1234)
    np.testing.assert_array_equal(order, np.concatenate([rng.permutation(10), 10 + rng.permutation(5)]))
    tr2, _, te2, _ = ng.resplit(train, y_train, test, y_test, "random", 0.2, 1234)
    assert len(te2) == 3 and sorted(tr2 + te2) == sorted(train + test)
    np.testing.assert_array_equal(ng.split_order(10, 5, "random", 1234), np.random.default_rng(1234).permutation(15))
    assert ng.resplit(train, y_train, test, y_test, "random", 0.2, 1234)[0] == tr2  # deterministic
    assert ng.resplit(train, y_train, test, y_test, "random", 0.2, 7)[0] != tr2
    assert ng.resplit(train, y_train, test, y_test, "bydate", 0.2, 1234)[0] is train


def test_bad_preprocess_and_split_options(tmp_path):
    root = make_corpus(tmp_path, STEMMED)
    kw = dict(groups=("sci.med", "sci.electronics"), download=False)
    for bad, match in ((dict(preprocess="lemma"), "'lemma'"), (dict(split="kfold"), "'kfold'"),
                       (dict(split="random", test_fraction=1.5), "test_fraction=1.5"),
                       (dict(split="random", test_fraction=0.99), "leaves no"),
                       (dict(split="random", split_seed=-1), "split_seed=-1"),
                       (dict(preprocess="cachopo", min_df=2), "min_df=2"),
                       (dict(preprocess="cachopo", max_features=0), "max_features=0")):
        with pytest.raises(DataError, match=match):
            ng.load_newsgroups(root, **kw, **bad)


def test_real_cachopo_protocols():
    root = _need_real_news()
    real_tokens_2000 = ng.load_newsgroups(root, max_features=2000, download=False).feature_names
    d = ng.load_newsgroups(root, preprocess="cachopo", max_features=2000, split="ordered", download=False)
    assert (d.n_train, d.n_test, d.n_features) == (1579, 395, 2000)
    assert set(np.unique(d.x_train).tolist()) == {0.0, 1.0}
    assert np.bincount(np.concatenate([d.y_train, d.y_test])).tolist() == [591 + 393, 594 + 396]
    assert {"circuit", "electron", "doctor", "patient", "medicin"} <= set(d.feature_names)
    assert "the" not in d.feature_names  # a stop word
    assert "edu" not in d.feature_names and "edu" in real_tokens_2000  # From: ...edu headers dropped


# --------------------------------------------------------------------------- download

def _tar_gz(members: dict, extra=()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buf.getvalue()


def test_download_extracts_only_chosen_groups_safely(tmp_path, monkeypatch):
    members = {f"{split}/{group}/{doc}": text for (split, group, doc), text in SMALL.items()}
    members[f"{TRAIN}/rec.autos/1"] = b"car"
    members[f"{TEST}/rec.autos/2"] = b"car"
    members["../evil"] = b"x"
    members[f"{TRAIN}/sci.med/../../evil2"] = b"x"
    members["/tmp/evil3"] = b"x"
    link = tarfile.TarInfo(f"{TRAIN}/sci.med/777")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive = _tar_gz(members, extra=[link])
    urls = []

    def _open(url, timeout):
        urls.append(url)
        return io.BytesIO(archive)

    monkeypatch.setattr(dl, "urlopen", _open)
    root = tmp_path / "data" / "20news-bydate"
    d = ng.load_newsgroups(root, groups=("sci.med", "sci.electronics"), download=True)
    assert urls == list(ng.NEWSGROUPS_URLS)
    assert d.n_train == 4 and d.n_test == 2
    assert not (root / TRAIN / "rec.autos").exists()
    assert not (root / TRAIN / "sci.med" / "777").exists()
    assert not any(p.name.startswith("evil") for p in tmp_path.rglob("*"))
    assert sorted(p.name for p in root.iterdir()) == sorted([TEST, TRAIN, ng.ARCHIVE_NAME])
    # the cached archive is reused for another group, without the network
    monkeypatch.setattr(dl, "urlopen", lambda url, timeout: pytest.fail("network used"))
    d2 = ng.load_newsgroups(root, groups=("sci.med", "rec.autos"), download=True)
    assert d2.n_train == 4 and d2.n_test == 2


def test_bad_download_leaves_no_archive(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "urlopen", lambda url, timeout: io.BytesIO(b"<html>moved</html>"))
    with pytest.raises(DataError) as err:
        ng.load_newsgroups(tmp_path, download=True)
    assert ng.NEWSGROUPS_URLS[0] in str(err.value)
    assert list(tmp_path.iterdir()) == []
