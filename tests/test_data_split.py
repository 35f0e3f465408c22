import random

import pytest

from data.errors import DataError
from data.split import split_train_val

N_JOKES = 4_000
VAL_FRACTION = 0.05
FRACTION_TOLERANCE = 0.015


def numbered_jokes(start: int, stop: int) -> list[str]:
    return [f"Joke number {index} walks into a bar." for index in range(start, stop)]


def test_split_is_deterministic_and_independent_of_order():
    jokes = numbered_jokes(0, N_JOKES)
    train, val = split_train_val(jokes, VAL_FRACTION)
    assert split_train_val(jokes, VAL_FRACTION) == (train, val)
    shuffled = random.Random(0).sample(jokes, len(jokes))
    shuffled_train, shuffled_val = split_train_val(shuffled, VAL_FRACTION)
    assert set(shuffled_val) == set(val)
    assert set(shuffled_train) == set(train)


def test_split_keeps_order_and_loses_nothing():
    jokes = numbered_jokes(0, N_JOKES)
    train, val = split_train_val(jokes, VAL_FRACTION)
    assert sorted(train + val) == sorted(jokes)
    train_set, val_set = set(train), set(val)
    assert train == [joke for joke in jokes if joke in train_set]
    assert val == [joke for joke in jokes if joke in val_set]
    assert len(val) / len(jokes) == pytest.approx(VAL_FRACTION, abs=FRACTION_TOLERANCE)


def test_adding_a_source_never_moves_a_joke_across():
    old = numbered_jokes(0, N_JOKES)
    _, old_val = split_train_val(old, VAL_FRACTION)
    _, new_val = split_train_val(old + numbered_jokes(N_JOKES, 2 * N_JOKES), VAL_FRACTION)
    assert set(new_val) & set(old) == set(old_val)


def test_case_and_punctuation_variants_land_on_the_same_side():
    jokes = numbered_jokes(0, N_JOKES)
    _, val = split_train_val(jokes, VAL_FRACTION)
    variants = [joke.upper().replace(".", "!") for joke in jokes]
    _, variant_val = split_train_val(variants, VAL_FRACTION)
    assert [joke.upper().replace(".", "!") for joke in val] == variant_val


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fraction_outside_zero_one_is_an_error(fraction):
    with pytest.raises(DataError, match="between 0 and 1"):
        split_train_val(numbered_jokes(0, 10), fraction)


def test_tiny_corpora_still_get_both_sides():
    train, val = split_train_val(numbered_jokes(0, 2), VAL_FRACTION)
    assert (len(train), len(val)) == (1, 1)
    train, val = split_train_val(numbered_jokes(0, 3), 0.99)
    assert len(train) >= 1 and len(val) >= 1
    with pytest.raises(DataError, match="cannot be split"):
        split_train_val(numbered_jokes(0, 1), VAL_FRACTION)
