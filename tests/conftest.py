"""Fixtures shared by the data tests: made-up jokes and a small tokenizer trained on them."""

import itertools

import pytest
from tokenizers import Tokenizer

from data.tokenizer import train_tokenizer

N_SYNTHETIC_JOKES = 300
SMALL_VOCAB_SIZE = 400


@pytest.fixture(scope="session")
def synthetic_jokes() -> list[str]:
    """Distinct jokes from one template: enough text to train a small tokenizer quickly."""
    animals = ["cat", "dog", "owl", "yak", "emu", "eel", "bee"]
    places = ["road", "river", "café", "library", "moon"]
    combinations = itertools.cycle(itertools.product(animals, places))
    return [
        f"Why did the {animal} cross the {place}? To visit joke number {index}!"
        for index, (animal, place) in enumerate(itertools.islice(combinations, N_SYNTHETIC_JOKES))
    ]


@pytest.fixture(scope="session")
def joke_tokenizer(synthetic_jokes: list[str]) -> Tokenizer:
    return train_tokenizer(synthetic_jokes, vocab_size=SMALL_VOCAB_SIZE)
