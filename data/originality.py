"""Is a generated joke new, or a copy of one it was trained on? Find its nearest training joke.

Each joke becomes a TF-IDF vector over its words and word pairs (scikit-learn): a word counts
more the rarer it is across the training jokes, so two jokes are close when they share their
unusual words in the same order, not merely "the" and "a". Rows are scaled to unit length, so
the dot product of two rows is their cosine similarity: 1 for the same words, 0 for none shared.
The index lives in memory only and is built from the training files when it is needed; where
they are absent, data/originality_index.py gives the same similarities without the texts.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from data.errors import DataError

# At or above this similarity a generated joke counts as a copy of a training joke. Jokes that
# only share a template ("How many ... does it take to change a light bulb?") score 0.5 to 0.7.
MEMORISED_SIMILARITY = 0.8
# Words and word pairs: pairs make the score sensitive to word order, as copying is.
NGRAM_RANGE = (1, 2)


@dataclass(frozen=True)
class Nearest:
    """The training joke closest to a text, and how close (cosine similarity in [0, 1])."""

    joke: str | None  # None from an index that holds no text (data/originality_index.py)
    similarity: float

    @property
    def memorised(self) -> bool:
        return self.similarity >= MEMORISED_SIMILARITY


class JokeIndex:
    """Nearest-neighbour search over a fixed list of jokes by TF-IDF cosine similarity."""

    def __init__(self, jokes: Sequence[str]):
        if not jokes:
            raise DataError("no jokes to index; the originality check needs the training jokes")
        self.jokes = list(jokes)
        self._vectorizer = TfidfVectorizer(
            ngram_range=NGRAM_RANGE, sublinear_tf=True, dtype=np.float32
        )
        # (features, jokes), sparse, its columns of unit length: kept transposed, because a
        # query times the transpose of a (jokes, features) matrix converts all of it each time.
        self._by_feature = self._vectorizer.fit_transform(self.jokes).T.tocsr()

    def __len__(self) -> int:
        return len(self.jokes)

    def nearest(self, texts: Sequence[str]) -> list[Nearest]:
        """For each text, its most similar training joke (a text of unknown words scores 0)."""
        return [found[0] for found in self.neighbours(texts, 1)]

    def neighbours(self, texts: Sequence[str], count: int) -> list[list[Nearest]]:
        """For each text, its `count` most similar training jokes, most similar first."""
        if not texts:
            return []
        queries = self._vectorizer.transform(texts)  # (texts, features), rows of unit length
        return ranked((queries @ self._by_feature).toarray(), count, self.jokes)


def ranked(
    similarity: np.ndarray, count: int, jokes: Sequence[str] | None = None
) -> list[list[Nearest]]:
    """Each row's `count` most similar jokes, most similar first, from (texts, jokes) cosines.

    Ties go to the earlier joke, so that the first is always the row's argmax. Without `jokes`
    (an index that holds no text) each Nearest has no joke.
    """
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :count]  # (texts, count)
    return [
        [Nearest(None if jokes is None else jokes[i], float(similarity[row, i])) for i in best]
        for row, best in enumerate(order)
    ]
