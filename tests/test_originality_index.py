"""data/originality_index.py: the text-free index a model folder ships gives the similarities of
the full originality check, is signed like every file of the folder, and the shipped model has
one that matches its training jokes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data.corpus import model_data
from data.errors import DataError
from data.originality import JokeIndex
from data.originality_index import HashedJokeIndex, index_arrays
from model.checkpoint import (
    ORIGINALITY_INDEX,
    CheckpointError,
    load_model,
    load_originality_index,
    save_model,
    save_originality_index,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "punchline"
SHARED_DATA = ROOT.parent / "shared" / "data"
requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.exists(), reason="the shared joke corpora (../shared/data) are not here"
)
TOLERANCE = 0.05  # the most a similarity may differ from the full check's


def similarities(index: JokeIndex | HashedJokeIndex, texts: list[str]) -> np.ndarray:
    return np.array([found[0].similarity for found in index.neighbours(texts, 1)])


@pytest.fixture(scope="module")
def jokes(model_folder: Path) -> tuple[list[str], list[str]]:
    """The tiny model's training and validation jokes."""
    data = model_data(json.loads((model_folder / "metadata.json").read_text()))
    return data.train, data.val


@pytest.fixture
def folder(model_folder: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model folder, to add an index to (the session's one is shared)."""
    return Path(shutil.copytree(model_folder, tmp_path / "model"))


def test_the_hashed_index_gives_the_full_checks_similarities_without_the_text(jokes):
    train, val = jokes
    arrays = index_arrays(train)
    assert all(array.dtype.kind in "iu" for array in arrays.values())  # numbers, no text
    hashed, full = HashedJokeIndex(arrays), JokeIndex(train)
    assert len(hashed) == len(train)
    made_up = [
        "Quantum accountants prefer pickled violins at midnight.",
        "Why did the astronaut cross the galaxy? Because of the stars!",
        "zzqx vvbn",  # no word of any training joke: 0 for both
    ]
    texts = [*val, *made_up, train[0]]
    difference = np.abs(similarities(hashed, texts) - similarities(full, texts))
    assert difference.max() <= TOLERANCE, difference.max()
    # The nearest joke is the same one, ranked the same way, but the index cannot say which.
    copied = hashed.neighbours([train[0]], 3)[0]
    assert copied[0].similarity == pytest.approx(1.0, abs=1e-5) and copied[0].joke is None
    assert [n.similarity for n in copied] == sorted((n.similarity for n in copied), reverse=True)


def test_a_damaged_index_is_refused_with_the_reason(jokes):
    arrays = index_arrays(jokes[0])
    with pytest.raises(DataError, match="lacks counts"):
        HashedJokeIndex({k: v for k, v in arrays.items() if k != "counts"})
    with pytest.raises(DataError, match="do not fit together"):
        HashedJokeIndex(arrays | {"counts": arrays["counts"][:-1]})
    with pytest.raises(DataError, match="names jokes outside"):
        HashedJokeIndex(arrays | {"jokes": np.array(3)})
    with pytest.raises(DataError, match="no jokes to index"):
        index_arrays([])


def test_the_index_travels_with_the_folder_and_is_signed(folder, jokes):
    assert load_originality_index(folder) is None  # a folder exported without one
    save_originality_index(folder, index_arrays(jokes[0]))
    assert ORIGINALITY_INDEX in json.loads((folder / "manifest.json").read_text())
    load_model(folder)  # the manifest checks it
    arrays = load_originality_index(folder)
    assert len(HashedJokeIndex(arrays)) == len(jokes[0])

    path = folder / ORIGINALITY_INDEX
    signed = path.read_bytes()
    path.write_bytes(signed[:-100])
    with pytest.raises(CheckpointError, match=r"originality_index\.npz does not match"):
        load_model(folder)
    with pytest.raises(CheckpointError, match=r"cannot be read .*training\.originality_index"):
        load_originality_index(folder)
    path.unlink()  # an index the manifest lists may not go missing unnoticed
    with pytest.raises(CheckpointError, match=r"originality_index\.npz"):
        load_model(folder)
    path.write_bytes(signed)
    load_model(folder)


def test_exporting_again_drops_the_index_of_other_jokes(folder, jokes):
    save_originality_index(folder, index_arrays(jokes[0]))
    model, tokenizer, metadata = load_model(folder)
    save_model(model, tokenizer, folder, metadata)
    assert not (folder / ORIGINALITY_INDEX).exists()
    save_model(model, tokenizer, folder, metadata, originality_index=index_arrays(jokes[1]))
    load_model(folder)  # signed with the folder
    assert len(HashedJokeIndex(load_originality_index(folder))) == len(jokes[1])


def test_the_shipped_model_ships_an_index_of_its_training_jokes():
    _, _, metadata = load_model(SHIPPED)  # checks the index's sha256 too
    index = HashedJokeIndex(load_originality_index(SHIPPED))
    assert len(index) == metadata["train_jokes"]
    assert (SHIPPED / ORIGINALITY_INDEX).stat().st_size < 6_000_000


@pytest.mark.slow
@requires_shared_data
def test_the_shipped_index_matches_the_full_check_on_validation_jokes():
    _, _, metadata = load_model(SHIPPED)
    data = model_data(metadata)
    hashed, full = HashedJokeIndex(load_originality_index(SHIPPED)), JokeIndex(data.train)
    texts = data.val[:200]
    difference = np.abs(similarities(hashed, texts) - similarities(full, texts))
    worst, mean = difference.max(), difference.mean()
    print(f"\n{len(texts)} validation jokes: |difference| max {worst:.4f}, mean {mean:.4f}")
    assert worst <= TOLERANCE
    assert mean <= 0.005  # collisions are rare: most similarities are equal
