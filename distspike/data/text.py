"""Ana Cardoso-Cachopo's "stemmed" preprocessing of newsgroup posts, and a count vocabulary.

Her page ("Datasets for single-label text categorization", ana.cachopo.org) builds the
``20ng-*-stemmed.txt`` files that the paper's authors loaded, from the bydate split, in
four steps, each applied to the output of the one before:

- all-terms: tabs and line breaks become spaces, everything but the letters a-z / A-Z
  becomes a space, letters are lower-cased, runs of spaces become one; "the
  title/subject of each document is simply added in the beginning of the document's
  text" (so of the headers only the Subject is kept);
- no-short: words under 3 characters are dropped;
- no-stop: the 524 SMART stop words are dropped (:mod:`distspike.data.stopwords`);
- stemmed: Porter's stemmer is applied to the remaining words (here the Snowball
  project's ``porter`` algorithm, PyPI ``snowballstemmer``).

Not reproduced: she also removed attachments, PGP keys and duplicate posts; for
sci.electronics and sci.med her files hold exactly the bydate counts (591 / 393 and
594 / 396 documents), so no post of these two groups was dropped.

The authors' loader keeps the ``n`` words with the most occurrences in the training
posts (:func:`top_words`). Pure functions: no I/O here.
"""
from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .base import DataError
from .stopwords import SMART_STOP_WORDS

NON_LETTERS = re.compile(r"[^A-Za-z]+")
HEADER_LINE = re.compile(r"^([!-9;-~]+):(.*)$")  # a field name: printable, no space or colon (RFC 822)
MIN_LENGTH = 3


def split_post(text: str) -> Tuple[str, str]:
    """``(subject, body)`` of a post: headers end at the first blank line.

    A first block whose lines are not all ``Name: value`` headers (or their indented
    continuation lines) is not a header: then the subject is ``""`` and the whole
    text is the body.
    """
    head, sep, body = text.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    if not sep or not all(HEADER_LINE.match(ln) or ln[:1] in (" ", "\t") for ln in lines):
        return "", text
    subject = next((m.group(2) for m in map(HEADER_LINE.match, lines) if m and m.group(1).lower() == "subject"), "")
    return subject.strip(), body


def all_terms(text: str) -> List[str]:
    """Cachopo's "all-terms" words of a post: its subject, then its body, letters only, lower case."""
    subject, body = split_post(text)
    return NON_LETTERS.sub(" ", subject + " " + body).lower().split()


@lru_cache(maxsize=1)
def porter_stemmer() -> Callable[[str], str]:
    """Porter's stemmer (snowballstemmer's ``porter``), memoised per word."""
    try:
        import snowballstemmer
    except ImportError as exc:  # a dependency of the package; only a broken install lacks it
        raise DataError("preprocess='cachopo' needs the 'snowballstemmer' package "
                        "(pip install snowballstemmer)") from exc
    stem = snowballstemmer.stemmer("porter").stemWord
    return lru_cache(maxsize=None)(stem)


def stemmed_terms(text: str, stop_words: frozenset = SMART_STOP_WORDS) -> List[str]:
    """Cachopo's "stemmed" words of a post: all-terms, no words under 3 letters, no stop words, stemmed."""
    stem = porter_stemmer()
    return [stem(w) for w in all_terms(text) if len(w) >= MIN_LENGTH and w not in stop_words]


def top_words(docs: Iterable[Sequence[str]], n: Optional[int]) -> Tuple[str, ...]:
    """The ``n`` words with the most occurrences in ``docs`` (all if ``n`` is None), sorted by name.

    Ties at the cut go to the alphabetically first words (the authors' loader left them
    to an unstable sort).
    """
    counts = Counter(w for doc in docs for w in doc)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(sorted(w for w, _ in ranked[: len(ranked) if n is None else n]))


def count_matrix(docs: Sequence[Sequence[str]], vocabulary: Sequence[str], binary: bool) -> np.ndarray:
    """``(len(docs), len(vocabulary))`` float64 word counts (0/1 presence if ``binary``); other words ignored."""
    col = {w: j for j, w in enumerate(vocabulary)}
    x = np.zeros((len(docs), len(vocabulary)), dtype=np.float64)
    for i, doc in enumerate(docs):
        for j in (col[w] for w in doc if w in col):
            x[i, j] += 1.0
    return np.minimum(x, 1.0) if binary else x
