"""What a model folder ships about its attention heads, for the explainer.

- head_means.safetensors: each head's mean output over the first validation jokes, the
  replacement of mean ablation (model/knockout.py);
- head_roles.json: each head's role scores on probe texts, its role and a thumbnail of its
  pattern (model/roles.py).

train.py computes both at export. For a folder exported before they existed, or to
recompute them:

    python -m training.head_analyses checkpoints/punchline

reads the folder's validation jokes again from the data it names in metadata.json (the
files must be there), and adds both files to the folder, signed in its manifest.
"""

from __future__ import annotations

import sys

import numpy as np
from tokenizers import Tokenizer

from data.batching import TokenStream
from data.tokenizer import encode_batch, end_of_joke_id
from model.ablation import mean_head_outputs
from model.checkpoint import save_head_means, save_head_roles
from model.gpt import GPT
from model.roles import HeadRoles, find_roles
from training.folder_data import read_folder_and_data

MEAN_JOKES = 256  # validation jokes (the first ones) whose head outputs are averaged


def stream_jokes(stream: TokenStream, count: int = MEAN_JOKES) -> list[list[int]]:
    """The first `count` jokes of a token stream, each with the end-of-joke token opening it."""
    return [
        stream.tokens[start : start + 1 + length].astype(np.int32).tolist()
        for start, length in zip(stream.starts[:count], stream.lengths[:count], strict=True)
    ]


def head_analyses(
    model: GPT, tokenizer: Tokenizer, jokes: list[list[int]]
) -> tuple[np.ndarray, HeadRoles]:
    """(mean head outputs, head roles) over validation `jokes` (token ids, each opening with
    the end-of-joke token, as stream_jokes gives them)."""
    end = end_of_joke_id(tokenizer)
    return mean_head_outputs(model, jokes, pad_id=end), find_roles(model, jokes, end)


def main(argv: list[str] | None = None) -> int:
    read = read_folder_and_data(
        "python -m training.head_analyses",
        "Compute what the explainer shows about a model folder's attention heads (each "
        "head's mean output over the first validation jokes, for mean ablation; each head's "
        "role, from probe texts) and add it to the folder. Needs the training data the "
        "folder names.",
        argv,
    )
    if read is None:
        return 1
    folder, model, tokenizer = read.folder, read.model, read.tokenizer
    end = end_of_joke_id(tokenizer)
    jokes = [[end, *ids] for ids in encode_batch(tokenizer, read.jokes.val[:MEAN_JOKES])]
    means, roles = head_analyses(model, tokenizer, jokes)
    save_head_means(folder, means)
    save_head_roles(folder, roles)
    found = [role for row in roles.roles for role in row if role]
    summary = ", ".join(f"{found.count(r)} {r}" for r in dict.fromkeys(found)) or "no roles"
    print(
        f"{folder}: mean outputs over {len(jokes)} validation jokes and head roles "
        f"({summary}; {int(roles.sinks.sum())} sinks) written"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
