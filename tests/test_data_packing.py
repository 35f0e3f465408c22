"""data/packing.py: rows of whole jokes, each from its own start, reshuffled every epoch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import data.packing
from data.batching import TokenStream, eval_batches, tokenize_to_cache
from data.errors import DataError
from data.packing import (
    OPEN_ROWS,
    epoch_rows,
    joke_batches,
    joke_chars,
    joke_sizes,
    pack,
    train_batch,
    train_windows,
    window_batches,
)
from data.tokenizer import end_of_joke_id

BATCH_SIZE = 8
BLOCK_SIZE = 32
SEED = 1234


@pytest.fixture
def stream(synthetic_jokes, joke_tokenizer, tmp_path) -> TokenStream:
    # Whole jokes of 15-25 tokens, and one longer than the context.
    long_joke = " ".join(synthetic_jokes[:6])
    return tokenize_to_cache([*synthetic_jokes, long_joke], joke_tokenizer, tmp_path, "train")


def jokes_of(batch) -> list[tuple[list[int], list[int]]]:
    """Each joke of a batch's rows: (inputs, targets), read back through the segments."""
    found = []
    for inputs, targets, positions, segments in zip(*batch, strict=True):
        for segment in range(1, segments.max() + 1):
            where = segments == segment
            assert positions[where].tolist() == list(range(where.sum()))  # from 0, in order
            found.append((inputs[where].tolist(), targets[where].tolist()))
        assert (inputs[segments == 0] == 0).all() and (segments[segments > 0] > 0).all()
    return found


def the_joke(stream: TokenStream, index: int) -> tuple[list[int], list[int]]:
    """Joke `index` as a row holds it: END_OF_JOKE and its tokens, then shifted by one."""
    start, size = int(stream.starts[index]), int(joke_sizes(stream, BLOCK_SIZE)[index])
    tokens = stream.tokens[start : start + size + 1].tolist()
    return tokens[:-1], tokens[1:]


def test_every_joke_of_a_row_starts_at_its_own_position_0(stream, joke_tokenizer):
    batch = train_batch(stream, step=0, batch_size=BATCH_SIZE, block_size=BLOCK_SIZE, seed=SEED)
    assert all(a.shape == (BATCH_SIZE, BLOCK_SIZE) and a.dtype == np.int32 for a in batch)
    found = jokes_of(batch)
    eoj = end_of_joke_id(joke_tokenizer)
    assert all(inputs[0] == eoj and eoj not in inputs[1:] for inputs, _ in found)
    whole = [targets for inputs, targets in found if len(inputs) < BLOCK_SIZE]
    assert whole and all(targets[-1] == eoj for targets in whole)  # each joke learns its end
    assert max(batch.segments.max(axis=1)) > 1  # rows hold several jokes side by side
    known = [the_joke(stream, i) for i in range(stream.n_jokes)]
    assert all(joke in known for joke in found)


def test_an_epoch_reads_every_joke_once_in_a_new_order_each_time(stream):
    sizes = joke_sizes(stream, BLOCK_SIZE)
    assert sizes.max() == BLOCK_SIZE  # the long joke keeps its first BLOCK_SIZE positions
    epochs = [epoch_rows(stream, BLOCK_SIZE, SEED, epoch) for epoch in range(2)]
    for rows in epochs:
        assert sorted(itertools.chain(*rows)) == list(range(stream.n_jokes))
        assert all(sizes[row].sum() <= BLOCK_SIZE for row in rows)
        fill = sizes.sum() / (len(rows) * BLOCK_SIZE)
        assert fill > 0.9  # little padding

    def neighbours(rows):
        return {pair for row in rows for pair in itertools.pairwise(row)}

    assert len(neighbours(epochs[0]) & neighbours(epochs[1])) < 0.2 * len(neighbours(epochs[0]))


def test_pack_keeps_the_order_when_nothing_else_fits():
    sizes = np.array([3, 3, 3, 3])
    assert pack(sizes, np.arange(4), 6) == [[0, 1], [2, 3]]
    # A small joke goes back to an earlier open row that still has room.
    assert pack(np.array([4, 4, 2]), np.arange(3), 6) == [[0, 2], [1]]
    assert OPEN_ROWS >= 2


def test_a_batch_is_a_function_of_seed_and_step_across_epochs(stream):
    rows_per_epoch = len(epoch_rows(stream, BLOCK_SIZE, SEED, 0))

    def batch(step, seed=SEED):
        return train_batch(stream, step, BATCH_SIZE, BLOCK_SIZE, seed)

    later = 3 * rows_per_epoch // BATCH_SIZE + 1  # in the fourth epoch
    first = batch(later).inputs.copy()
    batch(0)  # reading another epoch in between changes nothing
    np.testing.assert_array_equal(batch(later).inputs, first)
    assert not np.array_equal(batch(5).inputs, batch(6).inputs)
    assert not np.array_equal(batch(5).inputs, batch(5, seed=SEED + 1).inputs)
    # The rows of steps 0, 1, ... are epoch 0's rows, then epoch 1's, with no gap.
    steps = (rows_per_epoch + BATCH_SIZE - 1) // BATCH_SIZE + 1
    read = np.concatenate([batch(step).segments.max(axis=1) for step in range(steps)])
    counts = [
        len(row)
        for row in [
            *epoch_rows(stream, BLOCK_SIZE, SEED, 0),
            *epoch_rows(stream, BLOCK_SIZE, SEED, 1),
        ]
    ]
    assert read.tolist() == counts[: len(read)]


def test_process_slices_concatenate_to_the_global_batch(stream):
    whole = train_batch(stream, 3, BATCH_SIZE, BLOCK_SIZE, SEED)
    slices = [train_batch(stream, 3, BATCH_SIZE, BLOCK_SIZE, SEED, i, 4) for i in range(4)]
    for name, array in whole._asdict().items():
        np.testing.assert_array_equal(np.concatenate([getattr(s, name) for s in slices]), array)
    with pytest.raises(DataError, match="does not split over 3 processes"):
        train_batch(stream, 3, BATCH_SIZE, BLOCK_SIZE, SEED, 0, 3)
    with pytest.raises(DataError, match=r"outside 0\.\.3"):
        train_batch(stream, 3, BATCH_SIZE, BLOCK_SIZE, SEED, 4, 4)


def test_a_corpus_smaller_than_a_batch_still_fills_it(joke_tokenizer, tmp_path):
    stream = tokenize_to_cache(["Hi there, friend.", "Bye now."], joke_tokenizer, tmp_path, "tiny")
    batch = train_batch(stream, 0, BATCH_SIZE, 64, SEED)
    assert batch.inputs.shape == (BATCH_SIZE, 64)
    assert (batch.segments.max(axis=1) == 2).all()  # every row: both jokes (one epoch each)


def test_a_stream_without_jokes_cannot_be_batched(joke_tokenizer, tmp_path):
    stream = tokenize_to_cache([], joke_tokenizer, tmp_path, "empty")
    with pytest.raises(DataError, match="no jokes"):
        train_batch(stream, 0, BATCH_SIZE, BLOCK_SIZE, SEED)


def test_validation_reads_every_joke_once_in_order(stream):
    batches = list(joke_batches(stream, BATCH_SIZE, BLOCK_SIZE))
    found = [joke for batch in batches for joke in jokes_of(batch)]
    assert sorted(found) == sorted(the_joke(stream, i) for i in range(stream.n_jokes))
    assert (batches[-1].segments == 0).any()  # the last batch is padded to the fixed shape
    assert joke_chars(stream, BLOCK_SIZE) < stream.n_chars  # the long joke counts its share
    whole = stream.joke_chars[:-1].sum()
    assert joke_chars(stream, BLOCK_SIZE) > whole


def test_a_capped_validation_reads_the_whole_jokes_within_the_cap(stream):
    sizes = joke_sizes(stream, BLOCK_SIZE)
    cap = int(sizes[:5].sum()) + 3  # five jokes and part of a sixth
    found = [
        joke
        for batch in joke_batches(stream, BATCH_SIZE, BLOCK_SIZE, cap)
        for joke in jokes_of(batch)
    ]
    assert sorted(found) == sorted(the_joke(stream, i) for i in range(5))
    assert joke_chars(stream, BLOCK_SIZE, cap) == stream.joke_chars[:5].sum()
    assert len(list(joke_batches(stream, BATCH_SIZE, BLOCK_SIZE, 1))) == 1  # at least one joke


def test_window_batches_are_the_earlier_windows(stream):
    for windows, (x, y, mask) in zip(
        window_batches(stream, BATCH_SIZE, BLOCK_SIZE),
        eval_batches(stream, BATCH_SIZE, BLOCK_SIZE),
        strict=True,
    ):
        np.testing.assert_array_equal(windows.inputs, x)
        np.testing.assert_array_equal(windows.targets, y)
        np.testing.assert_array_equal(windows.segments, mask)
        assert (windows.positions == np.arange(BLOCK_SIZE)).all()


def test_each_epoch_is_packed_once_however_far_a_run_goes(stream, monkeypatch):
    packed = []
    real_pack = data.packing.pack

    def counted_pack(*args):
        packed.append(1)
        return real_pack(*args)

    monkeypatch.setattr(data.packing, "pack", counted_pack)
    rows_per_epoch = len(
        real_pack(joke_sizes(stream, BLOCK_SIZE), np.arange(stream.n_jokes), BLOCK_SIZE)
    )
    steps_per_epoch = rows_per_epoch // BATCH_SIZE
    resumed_at = 5 * steps_per_epoch  # a resumed run: epochs 0 to 5 are counted once
    for step in range(resumed_at, resumed_at + 3 * steps_per_epoch):
        train_batch(stream, step, BATCH_SIZE, BLOCK_SIZE, SEED)
    assert len(packed) <= 9  # epochs 0..8, each packed once


def test_windows_are_slices_of_the_stream_drawn_from_seed_and_step(stream):
    batch = train_windows(stream, 5, BATCH_SIZE, BLOCK_SIZE, SEED)
    assert all(a.shape == (BATCH_SIZE, BLOCK_SIZE) and a.dtype == np.int32 for a in batch)
    tokens = np.asarray(stream.tokens).tolist()
    for inputs, targets in zip(batch.inputs.tolist(), batch.targets.tolist(), strict=True):
        offset = next(
            o for o in range(len(tokens) - BLOCK_SIZE) if tokens[o : o + BLOCK_SIZE] == inputs
        )
        assert targets == tokens[offset + 1 : offset + 1 + BLOCK_SIZE]  # one token later
    assert (batch.positions == np.arange(BLOCK_SIZE)).all() and (batch.segments == 1).all()
    again = train_windows(stream, 5, BATCH_SIZE, BLOCK_SIZE, SEED)
    other = train_windows(stream, 6, BATCH_SIZE, BLOCK_SIZE, SEED)
    np.testing.assert_array_equal(again.inputs, batch.inputs)
    assert not np.array_equal(other.inputs, batch.inputs)
    slices = [train_windows(stream, 5, BATCH_SIZE, BLOCK_SIZE, SEED, i, 4) for i in range(4)]
    np.testing.assert_array_equal(np.concatenate([s.inputs for s in slices]), batch.inputs)


def test_windows_longer_than_the_stream_are_refused(joke_tokenizer, tmp_path):
    stream = tokenize_to_cache(["Hi there, friend."], joke_tokenizer, tmp_path, "short")
    with pytest.raises(DataError, match="too few for windows of 64"):
        train_windows(stream, 0, BATCH_SIZE, 64, SEED)
