"""The mean head outputs a model folder ships for mean ablation (model/knockout.py).

train.py computes them at export from the run's first validation jokes. For a folder
exported before they existed, or to recompute them:

    python -m training.head_means checkpoints/punchline

reads the folder's validation jokes again from the data it names in metadata.json (the
files must be there), and adds head_means.safetensors to the folder, signed in its manifest.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from data.batching import TokenStream
from data.corpus import model_data
from data.errors import DataError
from data.tokenizer import encode_batch, end_of_joke_id
from model.ablation import mean_head_outputs
from model.checkpoint import CheckpointError, load_model, save_head_means

MEAN_JOKES = 256  # validation jokes (the first ones) whose head outputs are averaged


def stream_jokes(stream: TokenStream, count: int = MEAN_JOKES) -> list[list[int]]:
    """The first `count` jokes of a token stream, each with the end-of-joke token opening it."""
    return [
        stream.tokens[start : start + 1 + length].astype(np.int32).tolist()
        for start, length in zip(stream.starts[:count], stream.lengths[:count], strict=True)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.head_means",
        description="Compute each attention head's mean output over the first validation "
        "jokes of a model folder (the replacement of mean ablation in the app's knockout) "
        "and add it to the folder. Needs the training data the folder names.",
    )
    parser.add_argument("folder", help="model folder, such as checkpoints/punchline")
    parser.add_argument("--data", nargs="*", help="data files, if they moved since training")
    args = parser.parse_args(argv)
    try:
        model, tokenizer, metadata = load_model(args.folder)
        validation = model_data(metadata, args.data).val[:MEAN_JOKES]
    except (CheckpointError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    end = end_of_joke_id(tokenizer)
    jokes = [[end, *ids] for ids in encode_batch(tokenizer, validation)]
    means = mean_head_outputs(model, jokes, pad_id=end)
    save_head_means(args.folder, means)
    heads = f"{means.shape[0]} x {means.shape[1]} heads"
    print(f"{args.folder}: mean outputs of {heads} over {len(jokes)} validation jokes written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
