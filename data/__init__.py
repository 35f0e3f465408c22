"""Punchline's data pipeline: from joke files to batches of token ids.

1. Load: read jokes from CSV, TSV, JSON, JSON Lines or text files, gzipped or not, skipping and
   counting the rows that do not parse (loaders.py). Without files, use the jokes built into
   the `oneliners` and `pyjokes` packages.
2. Clean: repair broken encodings and markup, tidy whitespace, and drop empty, too short, too
   long, duplicate and (with --clean) offensive jokes, counting each (cleaning.py, offensive.py).
3. Split: send about 5% of the jokes to validation, chosen by a hash of each joke's text, so the
   split never changes from run to run (split.py).
4. Tokenize: train a byte-level BPE tokenizer on the training jokes, with a special token that
   marks the end of a joke (tokenizer.py).
5. Pack: join the tokenized jokes into one stream separated by that token, cached on disk
   (batching.py), and lay whole jokes side by side in rows, each from its own start, for
   training and evaluation (packing.py).

prepare_corpus (corpus.py) runs steps 1 to 5 and returns everything training needs; split_jokes
runs steps 1 to 3, and model_data re-reads the jokes a model folder was trained on.
originality.py finds the training joke nearest to a generated one.
"""

from data.batching import TokenStream, eval_batches, eval_chars, tokenize_to_cache
from data.cleaning import CleaningConfig, CleaningReport, clean
from data.corpus import Corpus, SplitJokes, model_data, prepare_corpus, split_jokes
from data.errors import DataError
from data.loaders import Source, default_corpus, load_sources
from data.offensive import is_offensive, offensive_probability
from data.packing import (
    Batch,
    joke_batches,
    joke_chars,
    train_batch,
    train_windows,
    window_batches,
)
from data.split import split_train_val
from data.tokenizer import (
    END_OF_JOKE,
    decode,
    encode,
    end_of_joke_id,
    load_tokenizer,
    token_strings,
    train_tokenizer,
)

__all__ = [
    "END_OF_JOKE",
    "Batch",
    "CleaningConfig",
    "CleaningReport",
    "Corpus",
    "DataError",
    "Source",
    "SplitJokes",
    "TokenStream",
    "clean",
    "decode",
    "default_corpus",
    "encode",
    "end_of_joke_id",
    "eval_batches",
    "eval_chars",
    "is_offensive",
    "joke_batches",
    "joke_chars",
    "load_sources",
    "load_tokenizer",
    "model_data",
    "offensive_probability",
    "prepare_corpus",
    "split_jokes",
    "split_train_val",
    "token_strings",
    "tokenize_to_cache",
    "train_batch",
    "train_tokenizer",
    "train_windows",
    "window_batches",
]
