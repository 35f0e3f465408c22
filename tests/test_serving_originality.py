"""serving/originality.py: is a joke new? Verdicts, the index of the tiny model's jokes."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

import serving.originality
from data.corpus import model_data
from data.originality import MEMORISED_SIMILARITY, JokeIndex, Nearest
from data.originality_index import index_arrays
from model.checkpoint import save_originality_index
from serving.originality import (
    CLEAN_CANDIDATES,
    CLOSE,
    NEW,
    NONE_CLEAN,
    TEXT_ABSENT,
    Originality,
    OriginalityCheck,
    judge,
)
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


def missing_note(metadata: dict) -> str:
    """What the check says where the training files are absent and the folder has no index."""
    check = OriginalityCheck(metadata)
    assert check.wait(timeout=10)
    return check.check("a joke").note


@pytest.fixture
def shipped(model_folder: Path, training_jokes, tmp_path) -> Path:
    """A copy of the tiny model folder with the text-free index that train.py ships."""
    folder = Path(shutil.copytree(model_folder, tmp_path / "model"))
    save_originality_index(folder, index_arrays(training_jokes))
    return folder


def test_without_the_training_files_the_shipped_index_judges_but_shows_no_joke(
    metadata, training_jokes, shipped, tmp_path
):
    gone = metadata | {"sources": [str(tmp_path / "gone.json")]}
    check, full = OriginalityCheck(gone, shipped), OriginalityCheck(metadata, shipped)
    assert check.wait(timeout=60) and full.wait(timeout=60)
    copied = check.check(training_jokes[0])
    assert copied == Originality(CLOSE, pytest.approx(1.0, abs=1e-5), None, TEXT_ABSENT)
    assert check.check(training_jokes[0], clean=True) == copied  # no text, nothing to clean
    related = "Why did the astronaut cross the galaxy? Because of the stars!"
    judged = check.check(related)
    assert judged.similarity == pytest.approx(full.check(related).similarity, abs=0.05)
    assert judged.verdict == NEW and judged.joke is None
    assert check.check("zzqx vvbn") == Originality(NEW, 0.0, None, None)  # nothing to hide
    assert full.check(training_jokes[0]).joke == training_jokes[0]  # the files win when here


def test_a_folder_without_an_index_or_with_a_damaged_one_is_unavailable(
    metadata, model_folder, shipped, tmp_path
):
    gone = metadata | {"sources": [str(tmp_path / "gone.json")]}
    older = OriginalityCheck(gone, model_folder)  # exported before the index existed
    (shipped / "originality_index.npz").write_bytes(b"not a zip file")
    damaged = OriginalityCheck(gone, shipped)
    assert older.wait(timeout=10) and damaged.wait(timeout=10)
    assert older.check("a joke").note == missing_note(gone)
    note = damaged.check("a joke").note
    assert note.startswith(missing_note(gone)[:-1] + ", and the model folder's index cannot be")
    assert "originality_index.npz cannot be read (not an .npz archive): build it again" in note


def test_clean_mode_shows_the_nearest_clean_joke_and_keeps_the_true_similarity(
    metadata, training_jokes, monkeypatch
):
    check = OriginalityCheck(metadata)
    assert check.wait(timeout=60)
    known = training_jokes[0]
    ranked = JokeIndex(training_jokes).neighbours([known], CLEAN_CANDIDATES)[0]
    crude = {ranked[0].joke, ranked[1].joke}  # the joke itself and its nearest neighbour
    seen: list[str] = []

    def fake_is_unfit(texts: list[str]) -> list[bool]:
        seen.extend(texts)
        return [text in crude for text in texts]

    monkeypatch.setattr(serving.originality, "is_unfit", fake_is_unfit)
    assert check.check(known) == Originality(CLOSE, pytest.approx(1.0, abs=1e-5), known, None)
    assert not seen  # clean mode off: nothing is classified
    cleaned = check.check(known, clean=True)
    assert cleaned == Originality(CLOSE, pytest.approx(1.0, abs=1e-5), ranked[2].joke, None)
    assert seen == [ranked[0].joke, ranked[1].joke, ranked[2].joke]  # nearest first, then stop

    monkeypatch.setattr(serving.originality, "is_unfit", lambda texts: [True] * len(texts))
    hidden = check.check(known, clean=True)
    assert hidden == Originality(CLOSE, pytest.approx(1.0, abs=1e-5), None, NONE_CLEAN)
    assert check.check("zzqx vvbn", clean=True) == Originality(NEW, 0.0, None, None)
