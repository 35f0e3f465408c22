"""Convert alt-profanity-check's pickled model into the pickle-free `offensive_model.json`.

A developer runs this by hand, once per version of alt-profanity-check (pinned in
requirements.txt), and commits the JSON it writes:

    python -m data.export_offensive_model

This is the only place in the project that reads a pickle: the joblib files shipped inside the
installed alt-profanity-check package, loaded by that package's own import. At run time
`data/offensive.py` reads only the JSON. The script finishes by comparing the two models'
probabilities on jokes from ../shared/data (or the built-in jokes when that is absent).

The JSON holds, with the vocabulary in column order as one space-separated string (its words
match \\w\\w+, so they contain no spaces):
- the document frequency of each word and the document count, from which offensive.py recomputes
  scikit-learn's smoothed idf exactly;
- per cross-validation fold, the LinearSVC weights as integers in units of WEIGHT_SCALE, its
  intercept, and the sigmoid calibrator's a and b.
"""

import json
import math
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
from sklearn.exceptions import InconsistentVersionWarning

from data.loaders import default_corpus, load_sources
from data.offensive import MODEL_FORMAT, MODEL_PATH, OFFENSIVE_THRESHOLD, OffensiveModel

# Weights are stored rounded to this step; the resulting probability error is printed below.
WEIGHT_SCALE = 1e-4
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
N_CHECK_TEXTS = 5000
PACKAGE_VERSION = metadata.version("alt-profanity-check")


def main() -> None:
    with warnings.catch_warnings():
        # The pickles were made with an older scikit-learn; the comparison below checks that the
        # exported numbers still reproduce the installed package's predictions.
        warnings.simplefilter("ignore", InconsistentVersionWarning)
        from profanity_check import profanity_check

    spec = _export(profanity_check.vectorizer, profanity_check.model)
    MODEL_PATH.write_text(json.dumps(spec, separators=(",", ":")), encoding="utf-8")
    print(f"wrote {MODEL_PATH} ({MODEL_PATH.stat().st_size / 1024:.0f} KiB)")

    texts = _check_texts()
    original = profanity_check.predict_prob(texts)
    exported = OffensiveModel.load(MODEL_PATH).probability(texts)
    difference = np.abs(original - exported).max()
    flips = ((original > OFFENSIVE_THRESHOLD) != (exported > OFFENSIVE_THRESHOLD)).sum()
    print(f"max |p_original - p_exported| over {len(texts)} texts: {difference:.2e}")
    print(f"labels that differ at threshold {OFFENSIVE_THRESHOLD}: {flips}")


def _export(vectorizer, model) -> dict:
    terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
    n_documents, document_frequency = _document_frequencies(vectorizer.idf_)
    folds = []
    for fold in model.calibrated_classifiers_:
        (calibrator,) = fold.calibrators
        folds.append(
            {
                "weights": np.rint(fold.estimator.coef_[0] / WEIGHT_SCALE).astype(int).tolist(),
                "intercept": float(fold.estimator.intercept_[0]),
                "sigmoid_a": float(calibrator.a_),
                "sigmoid_b": float(calibrator.b_),
            }
        )
    return {
        "format": MODEL_FORMAT,
        "source": f"alt-profanity-check {PACKAGE_VERSION} (MIT licence), profanity_check/data",
        "token_pattern": vectorizer.token_pattern,
        "vocabulary": " ".join(terms),
        "n_documents": n_documents,
        "document_frequency": document_frequency,
        "weight_scale": WEIGHT_SCALE,
        "folds": folds,
    }


def _document_frequencies(idf: np.ndarray) -> tuple[int, list[int]]:
    """Invert scikit-learn's idf = ln((1 + n) / (1 + df)) + 1 back to the integers n and df.

    exp(idf - 1) = (1 + n) / (1 + df), so its ratio to the rarest word's value is
    (1 + df) / (1 + df_min); the smallest df_min that makes every such ratio an integer wins.
    """
    ratio = np.exp(idf - 1)
    relative = ratio.max() / ratio
    for rarest in range(1, len(idf)):
        one_plus_df = relative * (1 + rarest)
        if np.allclose(one_plus_df, np.rint(one_plus_df), rtol=0, atol=1e-6):
            n_documents = round(ratio.max() * (1 + rarest)) - 1
            return n_documents, (np.rint(one_plus_df).astype(int) - 1).tolist()
    raise RuntimeError("the vectorizer's idf values are not scikit-learn's smoothed idf")


def _check_texts() -> list[str]:
    """An evenly spread, deterministic sample of real jokes to compare the models on."""
    if SHARED_DATA.exists():
        texts = [text for source in load_sources([str(SHARED_DATA)]) for text in source.texts]
    else:
        texts = default_corpus().texts
    step = max(1, math.ceil(len(texts) / N_CHECK_TEXTS))
    return ["", *texts[::step]]


if __name__ == "__main__":
    main()
