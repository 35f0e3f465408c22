import numpy as np
import pytest

import data.batching
from data.batching import (
    TokenStream,
    eval_batches,
    eval_chars,
    tokenize_to_cache,
    train_batch,
)
from data.errors import DataError
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


def test_train_batch_shapes_shift_and_windows(stream, joke_tokenizer):
    x, y = train_batch(stream, step=0, batch_size=BATCH_SIZE, block_size=BLOCK_SIZE, seed=SEED)
    assert x.shape == y.shape == (BATCH_SIZE, BLOCK_SIZE)
    assert x.dtype == y.dtype == np.int32
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    # Every row is a window of the stream read as a circle, and windows cross joke boundaries.
    circle = np.asarray(stream.tokens[:-1])
    twice = np.concatenate([circle, circle])
    for row, target in zip(x, y, strict=True):
        start = next(s for s in range(len(circle)) if (twice[s : s + BLOCK_SIZE] == row).all())
        np.testing.assert_array_equal(twice[start + 1 : start + BLOCK_SIZE + 1], target)
    assert (x == end_of_joke_id(joke_tokenizer)).any(axis=1).mean() > 0.5


def test_train_batch_is_a_function_of_seed_and_step(stream):
    def batch(step, seed=SEED):
        return train_batch(stream, step, BATCH_SIZE, BLOCK_SIZE, seed)

    np.testing.assert_array_equal(batch(5)[0], batch(5)[0])
    assert not np.array_equal(batch(5)[0], batch(6)[0])
    assert not np.array_equal(batch(5)[0], batch(5, seed=SEED + 1)[0])


def test_process_slices_concatenate_to_the_global_batch(stream):
    global_x, global_y = train_batch(stream, 3, BATCH_SIZE, BLOCK_SIZE, SEED)
    process_count = 4
    slices = [
        train_batch(stream, 3, BATCH_SIZE, BLOCK_SIZE, SEED, index, process_count)
        for index in range(process_count)
    ]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in slices]), global_x)
    np.testing.assert_array_equal(np.concatenate([y for _, y in slices]), global_y)
    with pytest.raises(DataError, match="does not split over 3 processes"):
        train_batch(stream, 3, BATCH_SIZE, BLOCK_SIZE, SEED, 0, 3)


def test_tiny_stream_still_gives_full_blocks(joke_tokenizer, tmp_path):
    stream = tokenize_to_cache(["Hi there, friend.", "Bye now."], joke_tokenizer, tmp_path, "tiny")
    block_size = 4 * len(stream.tokens)
    x, y = train_batch(stream, 0, BATCH_SIZE, block_size, SEED)
    assert x.shape == y.shape == (BATCH_SIZE, block_size)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    # Each block is a window of the corpus listed over and over.
    repeated = np.tile(stream.tokens[:-1], 6)
    period = len(stream.tokens) - 1
    windows = [repeated[start : start + block_size].tolist() for start in range(period)]
    assert all(row.tolist() in windows for row in x)


def test_stream_without_jokes_cannot_be_batched(joke_tokenizer, tmp_path):
    stream = tokenize_to_cache([], joke_tokenizer, tmp_path, "empty")
    assert stream.tokens.tolist() == [end_of_joke_id(joke_tokenizer)]
    with pytest.raises(DataError, match="no jokes"):
        train_batch(stream, 0, BATCH_SIZE, BLOCK_SIZE, SEED)


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
