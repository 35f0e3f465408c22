"""The tiny model the app tests serve: its sizes, its made-up training jokes, its folder.

The fixtures built from it (the model folder, the running server, the JokeWriter) are in
conftest.py; test modules import the constants and the fake classifier from here.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
from flax import nnx

from data.tokenizer import encode_batch, end_of_joke_id, train_tokenizer
from model.ablation import mean_head_outputs
from model.checkpoint import model_from_parameters, parameters_to_flat, save_model
from model.config import GPTConfig
from model.gpt import GPT
from model.roles import find_roles
from model.snapshots import Snapshot, Snapshots, quantize, save_snapshots

CONFIG = dict(block_size=64, n_layer=2, n_head=2, d_model=32, d_ff=64)
VOCAB_SIZE = 400
# What train.py records about its data, as model_data reads it back (no cleaning by the
# offensive-language model: the made-up jokes are harmless and the index builds faster).
TRAIN_CONFIG = dict(min_chars=10, max_chars=800, clean=False, val_fraction=0.05, text_column=None)


def joke_like_lines(count: int = 400) -> list[str]:
    """Made-up joke-shaped lines, enough for the tokenizer to learn some merges."""
    rng = random.Random(0)
    who = ["chicken", "duck", "robot", "ghost", "penguin", "pirate", "snail", "banana", "cat"]
    did = ["cross the road", "walk into a bar", "open a bakery", "call the doctor", "go to school"]
    why = ["it was bored", "the bar was closed", "nobody told it not to", "of the pun"]
    return [
        f"Why did the {rng.choice(who)} {rng.choice(did)}?\nBecause {rng.choice(why)}!"
        for _ in range(count)
    ]


def build_model_folder() -> Path:
    """A complete model folder with random weights, in a temporary folder removed at exit.

    Its metadata records the made-up jokes (written next to it) as the training data, and it
    ships mean head outputs (for mean ablation), head roles and training snapshots, as an
    exported folder does.
    """
    tokenizer = train_tokenizer(joke_like_lines(), vocab_size=VOCAB_SIZE)
    config = GPTConfig(vocab_size=tokenizer.get_vocab_size(), **CONFIG)
    model = GPT(config, rngs=nnx.Rngs(0))
    folder = Path(tempfile.mkdtemp(prefix="punchline-test-")) / "model"
    atexit.register(shutil.rmtree, folder.parent, ignore_errors=True)  # after the server stops
    jokes = folder.parent / "jokes.json"
    jokes.write_text(json.dumps([{"joke": joke} for joke in joke_like_lines()]))
    metadata = {"sources": [str(jokes)], "train_config": TRAIN_CONFIG}
    # The mean head outputs train.py ships, over some of the jokes: mean ablation works too.
    end = end_of_joke_id(tokenizer)
    some = [[end, *ids] for ids in encode_batch(tokenizer, joke_like_lines()[:32])]
    means = mean_head_outputs(model, some, pad_id=end)
    roles = find_roles(model, some, start_token=end)  # and the head roles it ships
    # Two made-up training snapshots (the weights shrunk towards 0, then as they are), for
    # attention over training.
    weights = {name: np.asarray(value) for name, value in parameters_to_flat(model).items()}
    snapshots = []
    for step, scale in ((3, 0.3), (10, 1.0)):
        tensors, scales = quantize({name: value * scale for name, value in weights.items()})
        shipped = Snapshot(step, step / 10, step * 1024, tensors, scales, roles)
        found = find_roles(model_from_parameters(model, shipped.weights()), some, end)
        snapshots.append(dataclasses.replace(shipped, roles=found))
    save_model(
        model, tokenizer, folder, metadata=metadata, head_means=means, head_roles=roles
    )  # fmt: skip
    save_snapshots(folder, Snapshots("made-up snapshots of the test model", snapshots))
    return folder


class FakeClassifier:
    """Stands in for data.offensive.is_offensive: flags the first `flagged` texts it sees."""

    def __init__(self, flagged: int):
        self.flagged = flagged
        self.texts: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.texts.extend(texts)
        return np.array([len(self.texts) <= self.flagged] * len(texts))
