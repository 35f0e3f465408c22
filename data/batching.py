"""Keep tokenized jokes in one memory-mapped stream, and read it as fixed-length windows.

The stream is END_OF_JOKE j1 END_OF_JOKE j2 ... END_OF_JOKE: every joke is preceded and followed
by the marker, so the model learns both how a joke starts (after a marker) and when it is over
(predicting the marker). `TokenStream.starts` says where each joke opens; training rows are cut
at those starts (data/packing.py). `eval_batches` reads the stream as consecutive windows that
cross joke boundaries: the validation figure of earlier releases, reported beside the
joke-by-joke one for comparison.

Tokenizing a large corpus takes seconds, so the stream is cached on disk under a key made of the
tokenizer and the jokes; a second run with the same inputs maps the file without tokenizing.
"""

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tokenizers import Tokenizer
from tqdm import tqdm

from data.fingerprint import fingerprint
from data.tokenizer import encode_batch, end_of_joke_id

# Bump when the file layout changes, so that old caches are not trusted.
CACHE_FORMAT = 2
# Jokes encoded per call: large enough for the Rust library to work in parallel, small enough
# to keep memory flat and the progress bar moving.
ENCODE_CHUNK_JOKES = 10_000
# Below this many jokes tokenizing takes well under a second and needs no progress bar.
PROGRESS_MIN_JOKES = 20_000
UINT16_TOKENS = 2**16
CHARS_DTYPE = np.uint32  # per-joke character counts


@dataclass
class TokenStream:
    """A packed token stream and where its jokes start."""

    tokens: np.ndarray  # 1-D uint16 or uint32 memmap: EOJ j1... EOJ j2... EOJ
    starts: np.ndarray  # int64 index of the END_OF_JOKE that opens each joke
    n_jokes: int
    # Characters of the jokes plus one per joke for its end marker: the denominator of bits per
    # character, so that the score does not depend on the tokenizer.
    n_chars: int
    joke_chars: np.ndarray  # (n_jokes,) the same count for each joke: its characters + 1
    # data/packing.py's rows of the epochs being read and every epoch's number of rows, so
    # that each epoch is packed once.
    epoch_rows_cache: dict = field(default_factory=dict, repr=False, compare=False)
    epoch_row_counts: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def lengths(self) -> np.ndarray:
        """(n_jokes,) tokens of each joke, its markers not counted."""
        return np.diff(self.starts, append=len(self.tokens) - 1) - 1


def tokenize_to_cache(jokes: list[str], tok: Tokenizer, cache_dir: Path, name: str) -> TokenStream:
    """Tokenize and pack `jokes` into `cache_dir/<key>/<name>.bin`, or map it if already there."""
    # The key covers the tokenizer and every joke, so any change to either makes a new entry.
    key = fingerprint(f"stream format {CACHE_FORMAT}\n{tok.to_str()}", jokes)
    directory = Path(cache_dir) / key
    bin_path, meta_path = directory / f"{name}.bin", directory / f"{name}.json"
    if not _is_complete(bin_path, meta_path):
        directory.mkdir(parents=True, exist_ok=True)
        _write_stream(jokes, tok, bin_path, meta_path)
    return _open_stream(bin_path, meta_path)


def _chars_path(bin_path: Path) -> Path:
    """Where each joke's character count is kept, beside its stream: NAME.chars.bin."""
    return bin_path.with_suffix(".chars.bin")


def eval_batches(
    stream: TokenStream, batch_size: int, block_size: int, max_tokens: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Consecutive, non-overlapping windows over the stream, as (x, y, mask) batches.

    Every token after the first is a target exactly once (only the first `max_tokens` targets
    when it is given), so the summed loss is the stream's exact negative log-likelihood. Shapes
    are fixed at (batch_size, block_size) so a compiled evaluation step is reused; padding
    positions have mask 0.
    """
    n_targets = eval_targets(stream, max_tokens)
    tokens = stream.tokens
    window_starts = range(0, n_targets, block_size)
    for first in range(0, len(window_starts), batch_size):
        x = np.zeros((batch_size, block_size), dtype=np.int32)
        y = np.zeros((batch_size, block_size), dtype=np.int32)
        mask = np.zeros((batch_size, block_size), dtype=np.float32)
        for row, start in enumerate(window_starts[first : first + batch_size]):
            length = min(block_size, n_targets - start)
            x[row, :length] = tokens[start : start + length]
            y[row, :length] = tokens[start + 1 : start + length + 1]
            mask[row, :length] = 1
        yield x, y, mask


def eval_targets(stream: TokenStream, max_tokens: int | None = None) -> int:
    """How many tokens `eval_batches` predicts: all but the first, or at most `max_tokens`."""
    n_targets = len(stream.tokens) - 1
    return n_targets if max_tokens is None else min(n_targets, max_tokens)


def eval_chars(stream: TokenStream, max_tokens: int | None = None) -> float:
    """Characters covered by `eval_batches(stream, ..., max_tokens)`, for bits per character.

    Uncapped, the targets are exactly the jokes' tokens and one END_OF_JOKE per joke, so this is
    `n_chars` exactly. A capped evaluation covers a prefix of the stream, and its characters are
    estimated in proportion to the tokens covered.
    """
    return stream.n_chars * eval_targets(stream, max_tokens) / (len(stream.tokens) - 1)


def _is_complete(bin_path: Path, meta_path: Path) -> bool:
    """True when both files are there and agree: the metadata is written last (see below)."""
    if not (bin_path.is_file() and meta_path.is_file()):
        return False
    try:
        meta = json.loads(meta_path.read_text())
        expected_size = meta["n_tokens"] * np.dtype(meta["dtype"]).itemsize
    except (ValueError, KeyError, TypeError):
        return False
    chars = _chars_path(bin_path)
    return (
        meta.get("format") == CACHE_FORMAT
        and bin_path.stat().st_size == expected_size
        and chars.is_file()
        and chars.stat().st_size == meta["n_jokes"] * np.dtype(CHARS_DTYPE).itemsize
    )


def _write_stream(jokes: list[str], tok: Tokenizer, bin_path: Path, meta_path: Path) -> None:
    """Write the stream, then its metadata, each to a temporary file renamed into place.

    A rename is atomic, so an interrupted run leaves either no file or a complete one; and
    since the metadata appears only after the stream, a stream without metadata is never
    trusted.
    """
    eoj = end_of_joke_id(tok)
    dtype = np.uint16 if tok.get_vocab_size() <= UINT16_TOKENS else np.uint32
    n_tokens = 0
    progress = tqdm(
        total=len(jokes),
        desc=f"tokenizing {bin_path.stem}",
        unit=" jokes",
        disable=len(jokes) < PROGRESS_MIN_JOKES,
    )
    with _atomic_file(bin_path) as file:
        for first in range(0, len(jokes), ENCODE_CHUNK_JOKES):
            chunk = jokes[first : first + ENCODE_CHUNK_JOKES]
            packed = [token for ids in encode_batch(tok, chunk) for token in (eoj, *ids)]
            np.asarray(packed, dtype=dtype).tofile(file)
            n_tokens += len(packed)
            progress.update(len(chunk))
        np.asarray([eoj], dtype=dtype).tofile(file)
        n_tokens += 1
    progress.close()
    # Each joke's characters, written before the metadata (which makes the entry trusted).
    with _atomic_file(_chars_path(bin_path)) as file:
        np.asarray([len(joke) + 1 for joke in jokes], dtype=CHARS_DTYPE).tofile(file)
    meta = {
        "format": CACHE_FORMAT,
        "dtype": np.dtype(dtype).name,
        "n_tokens": n_tokens,
        "n_jokes": len(jokes),
        "n_chars": sum(len(joke) for joke in jokes) + len(jokes),
        "end_of_joke_id": eoj,
    }
    with _atomic_file(meta_path) as file:
        file.write(json.dumps(meta, indent=2).encode())


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file written under a temporary name and renamed to `path` only on success."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            yield file
    except BaseException:
        os.unlink(temporary)
        raise
    os.replace(temporary, path)


def _open_stream(bin_path: Path, meta_path: Path) -> TokenStream:
    meta = json.loads(meta_path.read_text())
    tokens = np.memmap(bin_path, dtype=meta["dtype"], mode="r")
    # END_OF_JOKE never occurs inside a joke (see tokenizer.py), so the markers are the starts;
    # the final one closes the last joke and opens nothing.
    starts = np.flatnonzero(tokens[:-1] == meta["end_of_joke_id"]).astype(np.int64)
    return TokenStream(
        tokens=tokens,
        starts=starts,
        n_jokes=meta["n_jokes"],
        n_chars=meta["n_chars"],
        joke_chars=np.fromfile(_chars_path(bin_path), dtype=CHARS_DTYPE).astype(np.int64),
    )
