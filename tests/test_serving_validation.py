"""serving/validation.py: every value a visitor or program sends is checked on its own."""

from __future__ import annotations

import math

import pytest
from tiny_app import VOCAB_SIZE

from serving.errors import RequestError
from serving.limits import RANDOM_SEEDS
from serving.validation import clean_prompt, validate_settings

SIZES = dict(vocab_size=VOCAB_SIZE, block_size=64)
GOOD = dict(temperature=0.8, top_k=50, top_p=0.95, max_new_tokens=20, seed=7)


@pytest.mark.parametrize(
    "changes",
    [
        dict(temperature=0, top_k=0, top_p=1, max_new_tokens=1, seed=0),
        dict(temperature=2, top_k=VOCAB_SIZE, top_p=1e-6, max_new_tokens=64, seed=2**31 - 1),
        dict(top_k=5.0, max_new_tokens=10.0, seed=3.0),  # whole numbers sent as floats
    ],
)
def test_settings_at_the_edges_of_their_ranges_are_accepted(changes):
    settings = validate_settings(**(GOOD | changes), **SIZES)
    assert settings.seed == int((GOOD | changes)["seed"])
    assert isinstance(settings.top_k, int) and isinstance(settings.max_new_tokens, int)


BAD_INPUTS = [
    ("temperature", 2.5, "temperature must be a number from 0 to 2; got 2.5"),
    ("temperature", -0.1, "temperature must be a number from 0 to 2"),
    ("temperature", math.nan, "temperature must be a number from 0 to 2; got nan"),
    ("temperature", math.inf, "temperature must be a number from 0 to 2; got inf"),
    ("temperature", "hot", "temperature must be a number from 0 to 2; got 'hot'"),
    ("temperature", True, "temperature must be a number"),
    ("top_k", -1, f"top_k must be a whole number from 0 to {VOCAB_SIZE}"),
    ("top_k", VOCAB_SIZE + 1, f"top_k must be a whole number from 0 to {VOCAB_SIZE}"),
    ("top_k", 2.5, "top_k must be a whole number"),
    ("top_p", 0, "top_p must be a number greater than 0 and at most 1; got 0"),
    ("top_p", 1.01, "top_p must be a number greater than 0 and at most 1"),
    ("top_p", -math.inf, "top_p must be a number greater than 0 and at most 1"),
    ("max_new_tokens", 0, "max_new_tokens must be a whole number from 1 to 64; got 0"),
    ("max_new_tokens", 65, "max_new_tokens must be a whole number from 1 to 64"),
    ("max_new_tokens", None, "max_new_tokens must be a whole number from 1 to 64; got None"),
    ("seed", 1.5, "seed must be a whole number from 0 to 2147483647, or -1 for a random seed"),
    ("seed", -2, "seed must be a whole number from 0 to 2147483647, or -1"),
    ("seed", 2**31, "seed must be a whole number from 0 to 2147483647"),
    ("seed", "42", "seed must be a whole number"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD_INPUTS)
def test_each_bad_setting_is_named_with_its_range(name, value, message):
    with pytest.raises(RequestError) as caught:
        validate_settings(**(GOOD | {name: value}), **SIZES)
    assert message in caught.value.message


def test_error_messages_never_echo_markup():
    with pytest.raises(RequestError) as caught:
        validate_settings(**(GOOD | {"temperature": "<img src=x onerror=alert(1)>"}), **SIZES)
    assert "<img" not in caught.value.message and "&lt;img" in caught.value.message


def test_seed_minus_one_draws_a_random_seed_that_can_be_retyped():
    seeds = {validate_settings(**(GOOD | {"seed": -1}), **SIZES).seed for _ in range(20)}
    assert len(seeds) > 1 and all(0 <= s < RANDOM_SEEDS for s in seeds)


def test_prompts_are_cleaned_but_every_script_and_emoji_is_kept():
    assert clean_prompt(None) == ("", [])
    assert clean_prompt("   \n ") == ("", [])
    assert clean_prompt("Why did the 🐔 过马路 ") == ("Why did the 🐔 过马路", [])
    text, notes = clean_prompt("a\x00b\x07c\r\nd\te\ud800")
    assert text == "abc\nd\te" and notes == ["Removed 3 control character(s) from your words."]


def test_prompts_that_are_too_long_or_not_text_are_refused():
    with pytest.raises(RequestError, match="prompt is 1,001 characters long; the limit is 1,000"):
        clean_prompt("x" * 1001)
    with pytest.raises(RequestError, match="prompt must be text; got 42"):
        clean_prompt(42)
