"""Offensive-language classifier behind `--clean`: alt-profanity-check's model, in numpy.

alt-profanity-check (MIT) ships a scikit-learn model as joblib pickles, and this project loads no
pickles at run time: unpickling can run arbitrary code. `export_offensive_model.py` converted the
package's model once into `offensive_model.json`, and this module recomputes its probability:

    x = l2_normalise(word_counts * idf)                                  TF-IDF features
    p = mean over folds k of sigmoid(-(a_k * (w_k . x + c_k) + b_k))     calibrated linear SVMs
"""

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from data.errors import DataError

MODEL_PATH = Path(__file__).with_name("offensive_model.json")
# The package's own `predict` labels a text offensive when its probability is above one half.
OFFENSIVE_THRESHOLD = 0.5
MODEL_FORMAT = "punchline-offensive-v1"


@dataclass
class OffensiveModel:
    """TF-IDF features and a calibrated linear classifier, averaged over cross-validation folds."""

    token_pattern: re.Pattern[str]
    vocabulary: dict[str, int]
    idf: np.ndarray  # (n_terms,)
    weights: np.ndarray  # (n_folds, n_terms)
    intercepts: np.ndarray  # (n_folds,)
    sigmoid_a: np.ndarray  # (n_folds,)
    sigmoid_b: np.ndarray  # (n_folds,)

    @classmethod
    def load(cls, path: Path) -> "OffensiveModel":
        """Read the JSON written by export_offensive_model.py (the format is described there)."""
        spec = json.loads(path.read_text(encoding="utf-8"))
        if spec.get("format") != MODEL_FORMAT:
            raise DataError(
                f"{path}: not a {MODEL_FORMAT} file; run python -m data.export_offensive_model"
            )
        terms = spec["vocabulary"].split(" ")
        document_frequency = np.asarray(spec["document_frequency"], dtype=np.float64)
        folds = spec["folds"]
        return cls(
            token_pattern=re.compile(spec["token_pattern"]),
            vocabulary={term: index for index, term in enumerate(terms)},
            # scikit-learn's smoothed idf: as if one extra document contained every term once.
            idf=np.log((1 + spec["n_documents"]) / (1 + document_frequency)) + 1,
            weights=np.asarray([fold["weights"] for fold in folds]) * spec["weight_scale"],
            intercepts=np.asarray([fold["intercept"] for fold in folds]),
            sigmoid_a=np.asarray([fold["sigmoid_a"] for fold in folds]),
            sigmoid_b=np.asarray([fold["sigmoid_b"] for fold in folds]),
        )

    def probability(self, texts: Sequence[str]) -> np.ndarray:
        """Probability that each text is offensive, shape (len(texts),)."""
        n_texts = len(texts)
        documents, terms = self._term_occurrences(texts)
        n_terms = len(self.vocabulary)
        # Count each (document, term) pair once: the sparse term-count matrix in coordinates.
        pairs, counts = np.unique(documents * n_terms + terms, return_counts=True)
        documents, terms = pairs // n_terms, pairs % n_terms
        values = counts * self.idf[terms]
        norms = np.sqrt(np.bincount(documents, weights=values**2, minlength=n_texts))
        # A text with no known words has no entries, so it gets the bare intercepts, as in sklearn.
        values = values / norms[documents]
        fold_scores = [
            np.bincount(documents, weights=values * weights[terms], minlength=n_texts)
            for weights in self.weights
        ]
        decisions = np.stack(fold_scores) + self.intercepts[:, None]
        # Each fold's calibrator maps a decision d to sigmoid(-(a*d + b)) = 1 / (1 + exp(a*d + b)).
        exponents = self.sigmoid_a[:, None] * decisions + self.sigmoid_b[:, None]
        return (1 / (1 + np.exp(exponents))).mean(axis=0)

    def _term_occurrences(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(document index, term index) for every vocabulary word occurrence in the texts.

        Words outside the vocabulary are skipped. That includes the English stop words that
        scikit-learn's vectorizer removes, since none of them made it into the vocabulary.
        """
        documents: list[int] = []
        terms: list[int] = []
        lookup = self.vocabulary.get
        for document, text in enumerate(texts):
            for word in self.token_pattern.findall(text.lower()):
                term = lookup(word)
                if term is not None:
                    documents.append(document)
                    terms.append(term)
        return np.asarray(documents, dtype=np.int64), np.asarray(terms, dtype=np.int64)


@functools.cache
def _default_model() -> OffensiveModel:
    return OffensiveModel.load(MODEL_PATH)


def offensive_probability(texts: Sequence[str]) -> np.ndarray:
    """Probability in [0, 1] that each text is offensive, as alt-profanity-check's predict_prob."""
    return _default_model().probability(texts)


def is_offensive(
    texts: Sequence[str], threshold: float = OFFENSIVE_THRESHOLD
) -> npt.NDArray[np.bool_]:
    """True for each text whose offensive probability is above `threshold`."""
    return offensive_probability(texts) > threshold
