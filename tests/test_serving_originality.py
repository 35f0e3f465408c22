"""serving/originality.py: is a joke new? Verdicts, the index of the tiny model's jokes."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import serving.originality
from data.corpus import model_data
from data.originality import MEMORISED_SIMILARITY, Nearest
from serving.originality import CLOSE, NEW, Originality, OriginalityCheck, judge
from ui import rendering


@pytest.fixture(scope="module")
def metadata(model_folder: Path) -> dict:
    return json.loads((model_folder / "metadata.json").read_text())


def test_the_verdict_turns_at_the_memorised_similarity():
    assert judge(Nearest("a known joke", MEMORISED_SIMILARITY)).verdict == CLOSE
    below = judge(Nearest("a known joke", MEMORISED_SIMILARITY - 1e-3))
    assert below == Originality(NEW, MEMORISED_SIMILARITY - 1e-3, "a known joke", None)
    # Sharing no word with any training joke: new, and no joke is "nearest".
    assert judge(Nearest("a known joke", 0.0)) == Originality(NEW, 0.0, None, None)


def test_a_training_joke_is_close_to_a_known_joke_and_a_made_up_one_is_new(
    metadata, training_jokes
):
    check = OriginalityCheck(metadata)
    assert check.wait(timeout=60)
    known = training_jokes[0]
    copied = check.check(known)
    assert copied.verdict == CLOSE and copied.joke == known
    assert copied.similarity == pytest.approx(1.0, abs=1e-5)
    made_up = check.check("Quantum accountants prefer pickled violins at midnight.")
    assert made_up.verdict == NEW and made_up.similarity < MEMORISED_SIMILARITY
    related = check.check("Why did the astronaut cross the galaxy? Because of the stars!")
    assert related.verdict == NEW and 0 < related.similarity < MEMORISED_SIMILARITY
    assert related.joke in training_jokes
    assert check.check("  ").note == "Originality check: the joke is empty."


def test_without_the_training_data_the_check_says_why(metadata, tmp_path):
    unrecorded = OriginalityCheck({})  # e.g. a model folder exported by hand
    missing = OriginalityCheck(metadata | {"sources": [str(tmp_path / "gone.json")]})
    assert unrecorded.wait(timeout=10) and missing.wait(timeout=10)
    assert unrecorded.check("a joke") == Originality.unknown(
        "Originality check unavailable: the model folder's metadata.json does not record its "
        "training data."
    )
    note = missing.check("a joke").note
    assert note.startswith("Originality check unavailable: the model's training data")
    assert "gone.json is not on this machine" in note
    html = rendering.render_originality(None, None, None, note)
    assert html.startswith('<p class="pl-origin pl-origin-note">Originality check unavailable')


def test_while_the_index_is_being_built_the_check_says_so(metadata, training_jokes, monkeypatch):
    gate = threading.Event()

    def slow_model_data(metadata: dict) -> object:
        gate.wait(timeout=10)
        return model_data(metadata)

    monkeypatch.setattr(serving.originality, "model_data", slow_model_data)
    check = OriginalityCheck(metadata)
    assert check.check("a joke").note == "Originality check: still indexing the training jokes."
    gate.set()
    assert check.wait(timeout=60) and check.check(training_jokes[1]).verdict == CLOSE
