import numpy as np
import pytest

import data.batching
from data.batching import TokenStream, eval_batches, eval_chars, tokenize_to_cache
from data.tokenizer import decode, end_of_joke_id

BATCH_SIZE = 8
BLOCK_SIZE = 16
SEED = 1234


@pytest.fixture
def stream(synthetic_jokes, joke_tokenizer, tmp_path) -> TokenStream:
    return tokenize_to_cache(synthetic_jokes, joke_tokenizer, tmp_path, "train")


def test_stream_layout(stream, synthetic_jokes, joke_tokenizer):
    eoj = end_of_joke_id(joke_tokenizer)
    tokens = np.asarray(stream.tokens)
    assert tokens.dtype == np.uint16
    assert tokens[0] == eoj and tokens[-1] == eoj
    assert (tokens == eoj).sum() == len(synthetic_jokes) + 1
    assert stream.starts.dtype == np.int64
    assert (tokens[stream.starts] == eoj).all()
    ends = [*stream.starts[1:], len(tokens) - 1]
    jokes = [
        decode(joke_tokenizer, tokens[s + 1 : e].tolist())
        for s, e in zip(stream.starts, ends, strict=True)
    ]
    assert jokes == synthetic_jokes
    assert stream.n_jokes == len(synthetic_jokes)
    assert stream.n_chars == sum(len(joke) + 1 for joke in synthetic_jokes)
    assert stream.joke_chars.tolist() == [len(joke) + 1 for joke in synthetic_jokes]
    assert stream.lengths.tolist() == [e - s - 1 for s, e in zip(stream.starts, ends, strict=True)]


def test_literal_end_marker_in_a_joke_does_not_split_it(joke_tokenizer, tmp_path):
    jokes = ["one <|endofjoke|> joke", "two"]
    stream = tokenize_to_cache(jokes, joke_tokenizer, tmp_path, "train")
    assert stream.n_jokes == len(stream.starts) == 2


def test_second_call_maps_the_cache_without_tokenizing(
    stream, synthetic_jokes, joke_tokenizer, tmp_path, monkeypatch
):
    (bin_path,) = tmp_path.glob("*/train.bin")
    modified = bin_path.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(data.batching, "encode_batch", fail)
    again = tokenize_to_cache(synthetic_jokes, joke_tokenizer, tmp_path, "train")
    assert isinstance(again.tokens, np.memmap)
    np.testing.assert_array_equal(again.tokens, stream.tokens)
    assert bin_path.stat().st_mtime_ns == modified


def test_other_jokes_get_another_cache_entry(stream, synthetic_jokes, joke_tokenizer, tmp_path):
    tokenize_to_cache(synthetic_jokes[:-1], joke_tokenizer, tmp_path, "train")
    assert len(list(tmp_path.glob("*/train.bin"))) == 2


def test_interrupted_write_leaves_nothing_that_is_trusted(
    synthetic_jokes, joke_tokenizer, tmp_path, monkeypatch
):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(data.batching, "encode_batch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            tokenize_to_cache(synthetic_jokes, joke_tokenizer, tmp_path, "train")
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []
    stream = tokenize_to_cache(synthetic_jokes, joke_tokenizer, tmp_path, "train")
    assert stream.n_jokes == len(synthetic_jokes)


def test_truncated_stream_file_is_rewritten(synthetic_jokes, joke_tokenizer, tmp_path):
    expected = np.array(
        tokenize_to_cache(synthetic_jokes, joke_tokenizer, tmp_path, "train").tokens
    )
    (bin_path,) = tmp_path.glob("*/train.bin")
    bin_path.write_bytes(bin_path.read_bytes()[:10])
    again = tokenize_to_cache(synthetic_jokes, joke_tokenizer, tmp_path, "train")
    np.testing.assert_array_equal(again.tokens, expected)


def test_eval_batches_predict_every_token_exactly_once(stream):
    batches = list(eval_batches(stream, BATCH_SIZE, BLOCK_SIZE))
    for x, y, mask in batches:
        assert x.shape == y.shape == mask.shape == (BATCH_SIZE, BLOCK_SIZE)
        assert x.dtype == y.dtype == np.int32 and mask.dtype == np.float32
    inputs = np.concatenate([x[mask == 1] for x, _, mask in batches])
    targets = np.concatenate([y[mask == 1] for _, y, mask in batches])
    np.testing.assert_array_equal(inputs, stream.tokens[:-1])
    np.testing.assert_array_equal(targets, stream.tokens[1:])
    assert batches[-1][2].sum() < BATCH_SIZE * BLOCK_SIZE  # the last batch is padded
    assert eval_chars(stream) == stream.n_chars


def test_eval_batches_with_a_token_cap(stream):
    cap = 3 * BLOCK_SIZE + 5
    batches = list(eval_batches(stream, BATCH_SIZE, BLOCK_SIZE, max_tokens=cap))
    assert len(batches) == 1
    _, y, mask = batches[0]
    assert mask.sum() == cap
    np.testing.assert_array_equal(y[mask == 1], stream.tokens[1 : cap + 1])
    expected_chars = stream.n_chars * cap / (len(stream.tokens) - 1)
    assert eval_chars(stream, max_tokens=cap) == pytest.approx(expected_chars)
