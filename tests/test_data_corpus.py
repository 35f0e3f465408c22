from pathlib import Path

import numpy as np
import pytest

import data.batching
import data.corpus
from data.cleaning import CleaningConfig
from data.corpus import prepare_corpus
from data.errors import DataError
from data.tokenizer import decode, end_of_joke_id

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.exists(), reason="the shared joke corpora (../shared/data) are not here"
)
SMALL_VOCAB_SIZE = 400


@pytest.fixture
def joke_files(synthetic_jokes, tmp_path) -> list[str]:
    """Half the jokes in a CSV file, the other half (plus a duplicate) in a text file."""
    half = len(synthetic_jokes) // 2
    csv_path, txt_path = tmp_path / "jokes.csv", tmp_path / "more.txt"
    rows = [f'{index},"{joke}"' for index, joke in enumerate(synthetic_jokes[:half])]
    csv_path.write_text("ID,Joke\n" + "\n".join(rows) + "\n")
    txt_path.write_text("\n".join([*synthetic_jokes[half:], synthetic_jokes[0].upper()]) + "\n")
    return [str(csv_path), str(txt_path)]


def prepare(paths, tmp_path, **options):
    return prepare_corpus(
        paths, cache_dir=tmp_path / "cache", vocab_size=SMALL_VOCAB_SIZE, **options
    )


def test_prepare_corpus_from_files(joke_files, synthetic_jokes, tmp_path):
    corpus = prepare(joke_files, tmp_path)
    assert corpus.sources == joke_files
    assert corpus.report.total.read == len(synthetic_jokes) + 1
    assert corpus.report.total.duplicate == 1
    assert corpus.n_train_jokes + corpus.n_val_jokes == len(synthetic_jokes)
    assert corpus.n_val_jokes >= 1
    assert len(corpus.train_jokes) == corpus.n_train_jokes == corpus.train.n_jokes
    assert corpus.val.n_jokes == corpus.n_val_jokes
    assert set(corpus.train_jokes) < set(synthetic_jokes)
    tokens = corpus.train.tokens
    first_joke = tokens[corpus.train.starts[0] + 1 : corpus.train.starts[1]].tolist()
    assert decode(corpus.tokenizer, first_joke) == corpus.train_jokes[0]
    assert end_of_joke_id(corpus.tokenizer) == 0


def test_second_run_reuses_tokenizer_and_token_caches(joke_files, tmp_path, monkeypatch):
    first = prepare(joke_files, tmp_path)

    def fail(*args, **kwargs):
        raise AssertionError("work was repeated")

    monkeypatch.setattr(data.corpus, "train_tokenizer", fail)
    monkeypatch.setattr(data.batching, "encode_batch", fail)
    second = prepare(joke_files, tmp_path)
    assert second.tokenizer.to_str() == first.tokenizer.to_str()
    np.testing.assert_array_equal(second.train.tokens, first.train.tokens)
    np.testing.assert_array_equal(second.val.tokens, first.val.tokens)


def test_a_given_tokenizer_is_used_as_is(joke_files, joke_tokenizer, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("trained a tokenizer")

    monkeypatch.setattr(data.corpus, "train_tokenizer", fail)
    corpus = prepare(joke_files, tmp_path, tokenizer=joke_tokenizer)
    assert corpus.tokenizer is joke_tokenizer


def test_no_paths_means_the_built_in_jokes(tmp_path):
    corpus = prepare(None, tmp_path)
    assert corpus.sources == ["built-in: oneliners + pyjokes"]
    assert corpus.n_train_jokes > 3_000
    assert corpus.n_val_jokes > 100


def test_tiny_corpus_still_has_validation(tmp_path):
    path = tmp_path / "three.txt"
    path.write_text("A first little joke.\nA second little joke.\nA third little joke.\n")
    corpus = prepare([str(path)], tmp_path)
    assert corpus.n_val_jokes >= 1 and corpus.n_train_jokes >= 1


def test_nothing_left_after_cleaning_names_the_counts_and_the_fix(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("ha\nhe\nhi\n")
    with pytest.raises(DataError) as caught:
        prepare([str(path)], tmp_path, cleaning=CleaningConfig(min_chars=10))
    message = str(caught.value)
    assert "\n" not in message
    assert "read 3" in message and "3 too short" in message and "min_chars=10" in message


def test_drop_offensive_is_passed_through(tmp_path):
    path = tmp_path / "jokes.txt"
    path.write_text(
        "A perfectly clean joke about ducks.\n"
        "Another clean joke about geese.\n"
        "Shut up, you stupid fucking idiot.\n"
    )
    corpus = prepare([str(path)], tmp_path, cleaning=CleaningConfig(drop_offensive=True))
    assert corpus.report.total.offensive == 1
    assert corpus.n_train_jokes + corpus.n_val_jokes == 2


@requires_shared_data
def test_prepare_a_real_corpus_file(tmp_path):
    corpus = prepare([str(SHARED_DATA / "short-jokes" / "reddit-cleanjokes.csv")], tmp_path)
    assert corpus.n_train_jokes + corpus.n_val_jokes == corpus.report.total.kept > 1_400
    assert corpus.n_val_jokes == pytest.approx(0.05 * corpus.report.total.kept, rel=0.3)
