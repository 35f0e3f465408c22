import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models

from data.errors import DataError
from data.tokenizer import (
    END_OF_JOKE,
    decode,
    encode,
    end_of_joke_id,
    load_tokenizer,
    token_strings,
    train_tokenizer,
)

AWKWARD_TEXTS = [
    "",
    "plain ascii",
    "emoji 😂🤦‍♀️ and flags 🇳🇴",
    "中文笑话 and 日本語",
    "control \x00\x01\x1f\x7f and \r\n\t line ends",
    "\u0301 a lone combining mark, e\u0301 and é",
    "  leading and trailing spaces  ",
    "\ufeffbyte order mark and \u200b zero width",
]


def test_end_of_joke_is_special_token_zero(joke_tokenizer):
    assert end_of_joke_id(joke_tokenizer) == 0
    assert joke_tokenizer.id_to_token(0) == END_OF_JOKE


def test_vocabulary_size_is_respected(synthetic_jokes):
    vocab_size = 300
    assert train_tokenizer(synthetic_jokes, vocab_size).get_vocab_size() <= vocab_size
    with pytest.raises(DataError, match="below 257"):
        train_tokenizer(synthetic_jokes, vocab_size=256)


@pytest.mark.parametrize("text", AWKWARD_TEXTS)
def test_round_trip_of_awkward_text(joke_tokenizer, text):
    assert decode(joke_tokenizer, encode(joke_tokenizer, text)) == text


@settings(max_examples=150, deadline=None)
@given(text=st.text())
def test_round_trip_of_any_text(joke_tokenizer, text):
    ids = encode(joke_tokenizer, text)
    assert end_of_joke_id(joke_tokenizer) not in ids
    assert decode(joke_tokenizer, ids) == text


def test_literal_end_of_joke_in_text_is_not_the_special_token(joke_tokenizer, tmp_path):
    text = f"a joke that mentions {END_OF_JOKE} in the middle"
    ids = encode(joke_tokenizer, text)
    assert end_of_joke_id(joke_tokenizer) not in ids
    assert decode(joke_tokenizer, ids) == text
    path = tmp_path / "tokenizer.json"
    joke_tokenizer.save(str(path))
    reloaded = load_tokenizer(path)
    assert encode(reloaded, text) == ids


def test_saved_tokenizer_loads_and_encodes_the_same(joke_tokenizer, synthetic_jokes, tmp_path):
    path = tmp_path / "tokenizer.json"
    joke_tokenizer.save(str(path))
    reloaded = load_tokenizer(path)
    assert [encode(reloaded, joke) for joke in synthetic_jokes[:20]] == [
        encode(joke_tokenizer, joke) for joke in synthetic_jokes[:20]
    ]


def test_missing_damaged_and_foreign_tokenizer_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_tokenizer(tmp_path / "absent.json")
    damaged = tmp_path / "damaged.json"
    damaged.write_text('{"version": "1.0", "model": ')
    with pytest.raises(DataError, match="damaged tokenizer file") as caught:
        load_tokenizer(damaged)
    assert str(damaged) in str(caught.value) and "\n" not in str(caught.value)
    path = tmp_path / "foreign.json"
    Tokenizer(models.BPE()).save(str(path))
    with pytest.raises(DataError, match="no <\\|endofjoke\\|> token"):
        load_tokenizer(path)


def test_token_strings_are_readable(joke_tokenizer):
    ids = [end_of_joke_id(joke_tokenizer), *encode(joke_tokenizer, "Why did the cat cross")]
    strings = token_strings(joke_tokenizer, ids)
    assert strings[0] == END_OF_JOKE
    assert "".join(strings[1:]) == "Why did the cat cross"
    assert " cat" in strings or " the" in strings  # a merged token keeps its leading space


def test_token_strings_agree_with_the_decoder(joke_tokenizer):
    ids = range(1, joke_tokenizer.get_vocab_size())
    for token_id, string in zip(ids, token_strings(joke_tokenizer, ids), strict=True):
        decoded = decode(joke_tokenizer, [token_id])
        if "\ufffd" not in decoded:  # the decoder cannot show part of a character
            assert string == decoded


def test_token_strings_show_partial_characters_as_byte_escapes(joke_tokenizer):
    text = "中😂"  # unseen in training, so every byte is a token of its own
    strings = token_strings(joke_tokenizer, encode(joke_tokenizer, text))
    assert strings == [f"\\x{byte:02x}" for byte in text.encode("utf-8")]
