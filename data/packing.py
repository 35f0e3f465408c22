"""Rows of whole jokes, each from its own start: training and validation batches that look
like writing.

The app always writes a joke from END_OF_JOKE at position 0 with nothing before it. So every
joke in a row here starts the same way: its END_OF_JOKE sits at position 0 *of that joke*
(`positions` restart at each joke) and attention never crosses from one joke into another
(`segments` tell the model which joke each token belongs to; see `model/attention.py`). Rows
hold several short jokes side by side, so that little of a row is padding, yet each joke is
read exactly as if it were alone. A joke longer than the context keeps its first
`block_size` targets: the app cannot write more than that either.

Training: the order of the jokes is reshuffled every epoch, so no two jokes always sit side by
side, and a batch is still a pure function of (seed, step): resuming at step k draws exactly
the batches an uninterrupted run would have drawn, with no sampler state to save.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from data.batching import TokenStream, eval_batches
from data.errors import DataError

# Rows kept open while packing: a joke goes into the first open row with room for it. More
# open rows fill rows better (less padding) and cost a little more time per epoch; with 8,
# about 2% of a row of 128 tokens is padding on the joke corpora.
OPEN_ROWS = 8


class Batch(NamedTuple):
    """One batch of rows, every array int32 of shape (rows, block_size)."""

    inputs: np.ndarray  # token ids; each joke opens with END_OF_JOKE at its position 0
    targets: np.ndarray  # the token that follows each input (END_OF_JOKE after a joke's last)
    positions: np.ndarray  # where each token sits in its own joke: 0, 1, 2, ...
    segments: np.ndarray  # which joke of the row a token belongs to: 1, 2, ...; 0 is padding


def joke_sizes(stream: TokenStream, block_size: int) -> np.ndarray:
    """(n_jokes,) positions each joke takes in a row: its END_OF_JOKE and its tokens, at most
    `block_size` (a longer joke keeps its start)."""
    return np.minimum(stream.lengths + 1, block_size)


def pack(sizes: np.ndarray, order: np.ndarray, block_size: int) -> list[list[int]]:
    """Which jokes go into each row, in the given order: rows of whole jokes, few gaps.

    Bounded-space first fit: a joke goes into the first of at most OPEN_ROWS open rows with
    room for it; when none has room, the fullest open row is closed and a new one opened.
    """
    rows: list[list[int]] = []
    open_rows: list[tuple[int, list[int]]] = []  # (room left, jokes)
    for joke in order.tolist():
        size = int(sizes[joke])
        slot = next((i for i, (room, _) in enumerate(open_rows) if room >= size), None)
        if slot is None:
            if len(open_rows) == OPEN_ROWS:
                fullest = min(range(len(open_rows)), key=lambda i: open_rows[i][0])
                rows.append(open_rows.pop(fullest)[1])
            open_rows.append((block_size, []))
            slot = len(open_rows) - 1
        room, jokes = open_rows[slot]
        open_rows[slot] = (room - size, [*jokes, joke])
    rows.extend(jokes for _, jokes in open_rows)
    return rows


def fill_rows(stream: TokenStream, rows: list[list[int]], block_size: int) -> Batch:
    """The arrays of `rows` (lists of joke indices), padded with zeros (segment 0)."""
    shape = (len(rows), block_size)
    inputs, targets, positions, segments = (np.zeros(shape, np.int32) for _ in range(4))
    sizes = joke_sizes(stream, block_size)
    for r, jokes in enumerate(rows):
        column = 0
        for segment, joke in enumerate(jokes, start=1):
            start, size = int(stream.starts[joke]), int(sizes[joke])
            span = slice(column, column + size)
            # The stream holds END_OF_JOKE joke END_OF_JOKE: inputs from the opening marker,
            # targets one token later (so the last target is the closing marker).
            inputs[r, span] = stream.tokens[start : start + size]
            targets[r, span] = stream.tokens[start + 1 : start + 1 + size]
            positions[r, span] = np.arange(size)
            segments[r, span] = segment
            column += size
    return Batch(inputs, targets, positions, segments)


def epoch_rows(stream: TokenStream, block_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The rows of one training epoch: every joke once, in an order drawn from (seed, epoch).

    Each epoch is packed once: the rows of the last two epochs packed are kept (a batch may
    end one epoch and start the next), and every epoch's number of rows is remembered.
    """
    cache, counts = stream.epoch_rows_cache, stream.epoch_row_counts
    key = (block_size, seed, epoch)
    if key not in cache:
        order = np.random.default_rng([seed, epoch]).permutation(stream.n_jokes)
        cache[key] = pack(joke_sizes(stream, block_size), order, block_size)
        counts[key] = len(cache[key])
        for older in list(cache)[:-2]:
            del cache[older]
    return cache[key]


def epoch_length(stream: TokenStream, block_size: int, seed: int, epoch: int) -> int:
    """How many rows epoch `epoch` has (packing it once, the first time it is asked)."""
    key = (block_size, seed, epoch)
    if key not in stream.epoch_row_counts:
        epoch_rows(stream, block_size, seed, epoch)
    return stream.epoch_row_counts[key]


def train_batch(
    stream: TokenStream,
    step: int,
    batch_size: int,
    block_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Batch:
    """The rows of training step `step` that belong to this process.

    Every process draws the same global batch (batch_size rows) and keeps its own
    batch_size // process_count rows, so the global batch does not depend on how many
    processes share it. Step k reads rows k*batch_size ... (k+1)*batch_size - 1 of the
    sequence epoch 0, epoch 1, ...; a batch may end one epoch and start the next.
    """
    rows_per_process = _rows_per_process(stream, batch_size, process_index, process_count)
    first = step * batch_size + process_index * rows_per_process  # in the sequence of rows
    epoch, offset = 0, first
    # Epochs differ slightly in their number of rows, so walk them (each is packed once).
    while offset >= (length := epoch_length(stream, block_size, seed, epoch)):
        offset -= length
        epoch += 1
    chosen: list[list[int]] = []
    while len(chosen) < rows_per_process:
        rows = epoch_rows(stream, block_size, seed, epoch)
        chosen.extend(rows[offset : offset + rows_per_process - len(chosen)])
        epoch, offset = epoch + 1, 0
    return fill_rows(stream, chosen, block_size)


def train_windows(
    stream: TokenStream,
    step: int,
    batch_size: int,
    block_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Batch:
    """The earlier releases' training rows, kept to measure what whole jokes bring (the
    ablation's small-windows row): windows of the stream at offsets drawn from (seed, step).

    A window crosses joke boundaries and is one segment with positions 0..block_size-1, so
    almost every window starts in the middle of a joke, and the stream's jokes, packed once in
    a fixed order, always sit beside the same neighbours. The same global batch is split over
    the processes as in `train_batch`.
    """
    rows_per_process = _rows_per_process(stream, batch_size, process_index, process_count)
    if len(stream.tokens) <= block_size:
        raise DataError(
            f"the token stream holds {len(stream.tokens)} tokens, too few for windows of "
            f"{block_size}; use more jokes or a smaller --block-size"
        )
    offsets = np.random.default_rng([seed, step]).integers(
        0, len(stream.tokens) - block_size, size=batch_size
    )
    mine = offsets[process_index * rows_per_process :][:rows_per_process]
    # Each window read once, one token longer: inputs are its start, targets one token later.
    windows = np.stack([stream.tokens[o : o + block_size + 1] for o in mine]).astype(np.int32)
    inputs, targets = np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])
    positions = np.broadcast_to(np.arange(block_size, dtype=np.int32), inputs.shape).copy()
    return Batch(inputs, targets, positions, np.ones_like(inputs))


def _rows_per_process(
    stream: TokenStream, batch_size: int, process_index: int, process_count: int
) -> int:
    """How many rows of the global batch each process keeps, or DataError saying what to fix."""
    if not 0 <= process_index < process_count:
        raise DataError(
            f"process index {process_index} is outside 0..{process_count - 1}; "
            "pass the index of this process among process_count processes"
        )
    if batch_size % process_count:
        raise DataError(
            f"batch size {batch_size} does not split over {process_count} processes; "
            f"pass a multiple of {process_count}"
        )
    if stream.n_jokes == 0:
        raise DataError("the token stream holds no jokes; check the corpus")
    return batch_size // process_count


def jokes_within(stream: TokenStream, block_size: int, max_tokens: int | None) -> int:
    """How many jokes, from the first, validation reads: all, or those within `max_tokens`
    targets (at least one)."""
    if max_tokens is None:
        return stream.n_jokes
    within = np.searchsorted(np.cumsum(joke_sizes(stream, block_size)), max_tokens, "right")
    return min(stream.n_jokes, max(1, int(within)))


def joke_batches(
    stream: TokenStream, batch_size: int, block_size: int, max_tokens: int | None = None
) -> Iterator[Batch]:
    """Validation the way the app writes: every joke (or those within `max_tokens` targets)
    from its own start, packed in file order, in batches of a fixed shape (padded rows last)."""
    count = jokes_within(stream, block_size, max_tokens)
    rows = pack(joke_sizes(stream, block_size), np.arange(count), block_size)
    for first in range(0, len(rows), batch_size):
        chunk = rows[first : first + batch_size]
        yield fill_rows(stream, chunk + [[]] * (batch_size - len(chunk)), block_size)


def joke_chars(stream: TokenStream, block_size: int, max_tokens: int | None = None) -> float:
    """Characters that `joke_batches` predicts, for bits per character.

    A whole joke counts its characters and one for its end; a joke longer than the context
    counts the share of them that its kept targets cover.
    """
    count = jokes_within(stream, block_size, max_tokens)
    covered = joke_sizes(stream, block_size)[:count] / (stream.lengths[:count] + 1)
    return float((stream.joke_chars[:count] * covered).sum())


def window_batches(
    stream: TokenStream, batch_size: int, block_size: int, max_tokens: int | None = None
) -> Iterator[Batch]:
    """The earlier releases' validation: consecutive windows that cross joke boundaries
    (`eval_batches`), as Batches whose rows are one segment each (padding is segment 0)."""
    positions = np.broadcast_to(np.arange(block_size, dtype=np.int32), (batch_size, block_size))
    for x, y, mask in eval_batches(stream, batch_size, block_size, max_tokens):
        yield Batch(x, y, positions.copy(), mask.astype(np.int32))
