"""Is a generated joke new, or a copy of one it was trained on? Find its nearest training joke.

Each joke becomes a TF-IDF vector over its words and word pairs (scikit-learn): a word counts
more the rarer it is across the training jokes, so two jokes are close when they share their
unusual words in the same order, not merely "the" and "a". Rows are scaled to unit length, so
the dot product of two rows is their cosine similarity: 1 for the same words, 0 for none shared.
The index lives in memory only and is built from the training files when it is needed.
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

    joke: str
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
        self._matrix = self._vectorizer.fit_transform(self.jokes)  # (jokes, features), sparse

    def __len__(self) -> int:
        return len(self.jokes)

    def nearest(self, texts: Sequence[str]) -> list[Nearest]:
        """For each text, its most similar training joke (a text of unknown words scores 0)."""
        if not texts:
            return []
        queries = self._vectorizer.transform(texts)  # (texts, features), rows of unit length
        similarity = (queries @ self._matrix.T).toarray()  # (texts, jokes): cosines
        best = similarity.argmax(axis=1)  # (texts,)
        return [
            Nearest(self.jokes[index], float(similarity[row, index]))
            for row, index in enumerate(best)
        ]
