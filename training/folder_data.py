"""The command line shared by the tools that recompute what a model folder ships beside its
weights from the data it was trained on (training/head_analyses.py,
training/originality_index.py): a folder, optionally where its data files moved, and the
folder's model and jokes read back, or a one-line error."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from tokenizers import Tokenizer

from data.corpus import SplitJokes, model_data
from data.errors import DataError
from model.checkpoint import CheckpointError, load_model
from model.gpt import GPT


class FolderData(NamedTuple):
    folder: str
    model: GPT
    tokenizer: Tokenizer
    metadata: dict[str, Any]
    jokes: SplitJokes  # the folder's training and validation jokes, read again
    args: argparse.Namespace  # every argument, a tool's own included


def read_folder_and_data(
    prog: str,
    description: str,
    argv: Sequence[str] | None,
    extra: Sequence[tuple[str, dict[str, Any]]] = (),
) -> FolderData | None:
    """Parse `FOLDER [--data FILE ...]` (and the tool's `extra` arguments: name and
    add_argument's keywords) and read the folder and its jokes; None after printing the error
    when either cannot be used."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("folder", help="model folder, such as checkpoints/punchline")
    parser.add_argument("--data", nargs="*", help="data files, if they moved since training")
    for name, options in extra:
        parser.add_argument(name, **options)
    args = parser.parse_args(argv)
    try:
        # Loading checks the manifest first: signing the folder again must not bless damage.
        model, tokenizer, metadata = load_model(args.folder)
        jokes = model_data(metadata, args.data)
    except (CheckpointError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    return FolderData(args.folder, model, tokenizer, metadata, jokes, args)
