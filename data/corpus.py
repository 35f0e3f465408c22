"""The data pipeline's entry point: from file paths to packed token streams ready to train on."""

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from data.batching import TokenStream, tokenize_to_cache
from data.cleaning import CleaningConfig, CleaningReport, clean
from data.errors import DataError
from data.fingerprint import fingerprint
from data.loaders import BUILT_IN_CORPUS, default_corpus, load_sources
from data.offensive import OFFENSIVE_THRESHOLD
from data.split import DEFAULT_VAL_FRACTION, split_train_val
from data.tokenizer import DEFAULT_VOCAB_SIZE, load_tokenizer, train_tokenizer

DEFAULT_CACHE_DIR = Path(".cache/punchline")
# Bump when tokenizer training changes, so that cached tokenizers are retrained.
TOKENIZER_CACHE_FORMAT = 1


@dataclass
class Corpus:
    """Everything training needs from the data, plus the report of what cleaning dropped."""

    train: TokenStream
    val: TokenStream
    tokenizer: Tokenizer
    report: CleaningReport
    sources: list[str]
    n_train_jokes: int
    n_val_jokes: int
    # The cleaned training jokes themselves, for checking generated jokes for originality; the
    # only copy of the texts the pipeline keeps.
    train_jokes: list[str]


def prepare_corpus(
    paths: Sequence[str] | None,
    *,
    text_column: str | None = None,
    cleaning: CleaningConfig | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    tokenizer: Tokenizer | None = None,
) -> Corpus:
    """Load, clean, split, tokenize and pack jokes; no paths means the built-in jokes.

    A tokenizer is trained on the training split (or `tokenizer` is used as given, when
    fine-tuning a model that already has one). Both the trained tokenizer and the token streams
    are cached under `cache_dir`, so a second run with the same data skips that work.
    """
    jokes = split_jokes(
        paths, text_column=text_column, cleaning=cleaning, val_fraction=val_fraction
    )
    if tokenizer is None:
        tokenizer = _cached_tokenizer(jokes.train, vocab_size, Path(cache_dir) / "tokenizers")
    return Corpus(
        train=tokenize_to_cache(jokes.train, tokenizer, cache_dir, "train"),
        val=tokenize_to_cache(jokes.val, tokenizer, cache_dir, "val"),
        tokenizer=tokenizer,
        report=jokes.report,
        sources=jokes.sources,
        n_train_jokes=len(jokes.train),
        n_val_jokes=len(jokes.val),
        train_jokes=jokes.train,
    )


@dataclass
class SplitJokes:
    """Cleaned jokes on both sides of the split, and where they came from."""

    train: list[str]
    val: list[str]
    report: CleaningReport
    sources: list[str]


def split_jokes(
    paths: Sequence[str] | None,
    *,
    text_column: str | None = None,
    cleaning: CleaningConfig | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
) -> SplitJokes:
    """Steps 1 to 3 of the pipeline (load, clean, split) without tokenizing."""
    cleaning = cleaning or CleaningConfig()
    sources = load_sources(paths, text_column) if paths else [default_corpus()]
    jokes, report = clean(sources, cleaning)
    if not jokes:
        raise DataError(_nothing_left_message(report, cleaning))
    train, val = split_train_val(jokes, val_fraction)
    return SplitJokes(train, val, report, [source.path for source in sources])


def model_data(metadata: dict[str, Any], paths: Sequence[str] | None = None) -> SplitJokes:
    """The jokes a model folder was trained and validated on, read again from its sources.

    `metadata.json` records the source files and the cleaning and split settings, so the same
    jokes come back as long as the files are still at those paths (or at `paths`, when given).
    The texts themselves are never stored in a model folder: the corpora's licences forbid
    copying them.
    """
    sources, config = metadata.get("sources"), metadata.get("train_config")
    if not config or not (sources or paths):
        raise DataError(
            "the model folder's metadata.json does not record its training data; "
            "export the model with train.py, or pass the data files with --data"
        )
    if not paths:
        missing = [path for path in sources if path != BUILT_IN_CORPUS and not Path(path).is_file()]
        if missing:
            raise DataError(
                f"the model's training data {missing[0]} is not on this machine; run from the "
                f"folder it was trained in, or pass the data files with --data"
            )
        paths = None if sources == [BUILT_IN_CORPUS] else sources
    cleaning = CleaningConfig(
        min_chars=config["min_chars"],
        max_chars=config["max_chars"],
        drop_offensive=config["clean"],
        offensive_threshold=config.get("offensive_threshold", OFFENSIVE_THRESHOLD),
        # Models trained before the sensitive-topic filter record no clean_topics: their data
        # was read without it.
        drop_sensitive=config["clean"] and config.get("clean_topics", False),
    )
    return split_jokes(
        paths,
        text_column=config.get("text_column"),
        cleaning=cleaning,
        val_fraction=config["val_fraction"],
    )


def _cached_tokenizer(train_jokes: list[str], vocab_size: int, directory: Path) -> Tokenizer:
    """The tokenizer trained on these jokes with this vocabulary size, trained only once."""
    header = f"tokenizer format {TOKENIZER_CACHE_FORMAT}, vocabulary {vocab_size}"
    path = directory / f"{fingerprint(header, train_jokes)}.json"
    if path.is_file():
        return load_tokenizer(path)
    tokenizer = train_tokenizer(train_jokes, vocab_size)
    directory.mkdir(parents=True, exist_ok=True)
    # Saved under a temporary name and renamed, so an interrupted save is never loaded.
    descriptor, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
    os.close(descriptor)
    tokenizer.save(temporary)
    os.replace(temporary, path)
    return tokenizer


def _nothing_left_message(report: CleaningReport, config: CleaningConfig) -> str:
    """Say how many records were read, which rules dropped them, and what to change."""
    total = report.total
    fixes = {
        "malformed": "check the files' format, or pass --text-column",
        "empty": "check that --text-column names the joke text",
        "too_short": f"lower the minimum length (min_chars={config.min_chars})",
        "too_long": f"raise the maximum length (max_chars={config.max_chars})",
        "duplicate": "add jokes that are not duplicates",
        "offensive": "add cleaner jokes, or train without --clean",
    }
    drops = {rule: getattr(total, rule) for rule in fixes if getattr(total, rule)}
    if not drops:
        paths = ", ".join(row.path for row in report.sources)
        return f"no jokes in {paths}; check that the files hold jokes"
    dropped = ", ".join(f"{count:,} {rule.replace('_', ' ')}" for rule, count in drops.items())
    commonest = max(drops, key=drops.get)
    return (
        f"no jokes left after cleaning: read {total.read:,}, dropped {dropped}; {fixes[commonest]}"
    )
