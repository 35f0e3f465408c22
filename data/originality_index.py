"""The originality check without the training texts: an index a model folder can ship.

A Hugging Face Space has the model folder but not the training files, whose licences forbid
copying the jokes. This index keeps no text, only which hashed word n-grams each training joke
holds, enough to give the similarities of data/originality.py again but not the nearest joke:

    hashed_features     the size of the hash space (a scalar)
    jokes               how many training jokes were indexed (a scalar)
    columns             the hashed n-grams that occur, ascending, each as the gap from the last
    document_frequency  for each of those, how many jokes hold it
    rows                for each (n-gram, joke) pair, by n-gram then joke: the joke's gap from
                        the n-gram's previous joke (from 0 for its first)
    counts              for each pair, how often the joke holds the n-gram (at most 255)

Each word and word pair is hashed (scikit-learn's HashingVectorizer) into one of 2**28 columns
instead of being looked up in a vocabulary; the TF-IDF weights, the row norms and so the cosine
similarities follow from the counts exactly as TfidfVectorizer computes them. The one difference
from the full check is two n-grams sharing a column, mostly an n-gram of the text that no
training joke holds (ignored by the full check) landing in one that a training joke holds. That
is rare: over the shipped model's 3,345 validation jokes the similarities differ by 0.0001 on
average and 0.044 at most, and the verdicts all agree. Gaps are small numbers and the file is
compressed: 5.4 MB for 64,000 jokes, built in 2 s.

No text, but no secret either: hashing a list of words and word pairs tells which of them a
column may stand for, so which words each training joke holds could be guessed from the file.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

from data.errors import DataError
from data.originality import NGRAM_RANGE, Nearest, ranked

HASHED_FEATURES = 2**28  # fewer columns make a slightly smaller file, more n-grams share one
ARRAYS = ("hashed_features", "jokes", "columns", "document_frequency", "rows", "counts")
MAX_COUNT = 255  # counts are stored as uint8; 1 + log(count) barely changes beyond


def _hasher(features: int) -> HashingVectorizer:
    """Word and word-pair counts, tokenised as TfidfVectorizer does in data/originality.py."""
    return HashingVectorizer(
        ngram_range=NGRAM_RANGE,
        n_features=features,
        alternate_sign=False,
        norm=None,
        dtype=np.float32,
    )


def _smallest(values: np.ndarray) -> np.ndarray:
    """The values as the smallest unsigned type that holds them: uint16 for most gaps."""
    return values.astype(np.min_scalar_type(int(values.max(initial=0))))


def index_arrays(jokes: Sequence[str], features: int = HASHED_FEATURES) -> dict[str, np.ndarray]:
    """The text-free index of `jokes`, as the arrays a model folder stores (module docstring)."""
    if not jokes:
        raise DataError("no jokes to index; the originality index needs the training jokes")
    counts = _hasher(features).transform(jokes).tocsr()  # (jokes, features), sparse
    if not counts.nnz:
        raise DataError("the training jokes hold no words to index")
    # Only the columns that occur, renumbered: a matrix with 2**28 columns would need 2**28
    # column pointers once transposed.
    columns, compact = np.unique(counts.indices, return_inverse=True)
    by_column = sp.csr_matrix(
        (counts.data, compact, counts.indptr), shape=(len(jokes), len(columns))
    ).tocsc()
    by_column.sort_indices()
    frequency = np.diff(by_column.indptr)
    rows = by_column.indices.astype(np.int64)
    gaps = np.diff(rows, prepend=0)
    gaps[by_column.indptr[:-1]] = rows[by_column.indptr[:-1]]  # each n-gram's first joke
    return {
        "hashed_features": np.array(features, np.int64),
        "jokes": np.array(len(jokes), np.int64),
        "columns": _smallest(np.diff(columns, prepend=0)),
        "document_frequency": _smallest(frequency),
        "rows": _smallest(gaps),
        "counts": np.minimum(by_column.data, MAX_COUNT).astype(np.uint8),
    }


class HashedJokeIndex:
    """Nearest-neighbour search by TF-IDF cosine similarity over jokes it does not hold.

    Gives the similarities of data/originality.JokeIndex on the same jokes (up to hash
    collisions) and the rank of the nearest joke, but never a joke's text.
    """

    def __init__(self, arrays: dict[str, np.ndarray]):
        missing = [name for name in ARRAYS if name not in arrays]
        if missing:
            raise DataError(f"the originality index lacks {', '.join(missing)}")
        features, jokes = int(arrays["hashed_features"]), int(arrays["jokes"])
        frequency = arrays["document_frequency"].astype(np.int64)
        columns = np.cumsum(arrays["columns"], dtype=np.int64)
        gaps, counts = arrays["rows"].astype(np.int64), arrays["counts"]
        starts = np.concatenate([[0], np.cumsum(frequency)])
        fits = len(columns) == len(frequency) > 0 and frequency.min() >= 1
        if not (fits and starts[-1] == len(gaps) == len(counts)):
            raise DataError("the originality index's arrays do not fit together")
        # Each n-gram's joke numbers, from the running sum of gaps restarted at each n-gram.
        running = np.cumsum(gaps)
        rows = running - np.repeat(running[starts[:-1]] - gaps[starts[:-1]], frequency)
        if not (rows.min() >= 0 and rows.max() < jokes):
            raise DataError(f"the originality index names jokes outside its {jokes:,}")
        if not (np.all(np.diff(columns) > 0) and columns[-1] < features):
            raise DataError("the originality index's n-gram columns are not in order")
        self._hasher = _hasher(features)
        self._columns = columns
        self._idf = (np.log((1 + jokes) / (1 + frequency)) + 1).astype(np.float32)
        weights = (1 + np.log(counts.astype(np.float32))) * np.repeat(self._idf, frequency)
        matrix = sp.csc_matrix((weights, rows, starts), shape=(jokes, len(columns)))
        # (columns, jokes), each joke of unit length; transposed as in data/originality.py.
        self._by_column = normalize(matrix.tocsr()).T.tocsr()
        self._jokes = jokes

    def __len__(self) -> int:
        return self._jokes

    def neighbours(self, texts: Sequence[str], count: int) -> list[list[Nearest]]:
        """For each text, its `count` most similar training jokes (similarities only), most
        similar first, as data/originality.JokeIndex.neighbours ranks them."""
        if not texts:
            return []
        counts = self._hasher.transform(texts).tocsr()  # (texts, features), sparse
        # An n-gram of no training joke has no column: ignored, as a vocabulary would ignore it.
        found = np.searchsorted(self._columns, counts.indices).clip(max=len(self._columns) - 1)
        known = self._columns[found] == counts.indices
        texts_of = np.repeat(np.arange(len(texts)), np.diff(counts.indptr))
        columns = found[known]
        weights = (1 + np.log(counts.data[known])) * self._idf[columns]
        queries = sp.csr_matrix(
            (weights, (texts_of[known], columns)), shape=(len(texts), len(self._columns))
        )
        return ranked((normalize(queries) @ self._by_column).toarray(), count)
