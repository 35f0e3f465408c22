"""Checking every value a visitor or program sends, before the model sees any of it.

Gradio hands an endpoint whatever JSON a client posted: strings for numbers, nested lists, a
number with 5,000 digits. Each check accepts only what the page's own controls can send and
raises RequestError naming the field, what it must be and (shortened) what came instead.
"""

from __future__ import annotations

import html
import math
import reprlib
import secrets
import unicodedata
from typing import Any

from model.generate import SamplingSettings
from serving.errors import RequestError
from serving.limits import MAX_PROMPT_CHARS, MAX_SEED, RANDOM_SEEDS


class _ShortRepr(reprlib.Repr):
    """repr() of whatever was sent, cut short: little work for huge or deeply nested values."""

    def __init__(self) -> None:
        super().__init__()  # (keyword arguments for the limits need Python 3.12)
        self.maxlevel, self.maxstring, self.maxother = 2, 40, 40

    def repr_int(self, x: int, level: int) -> str:
        # Python refuses to turn an integer of more than 4,300 digits into text.
        if x.bit_length() > 256:
            return f"an integer of about {int(x.bit_length() * math.log10(2)):,} digits"
        return super().repr_int(x, level)


_REPR = _ShortRepr()


def _shown(value: Any) -> str:
    # Error messages are rendered as HTML in the browser: never echo markup back.
    text = _REPR.repr(value)
    return html.escape(text if len(text) <= 40 else text[:39] + "…", quote=False)


def _checked(name: str, value: Any, allowed: str, ok: Any, whole: bool = False) -> float:
    """`value` if it is a finite number (whole if asked) for which ok(value) holds."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    # Integers are compared as they are: math.isfinite(10**400) would overflow converting to float.
    finite = number and (isinstance(value, int) or math.isfinite(value))
    if not (finite and (not whole or value == int(value)) and ok(value)):
        kind = "a whole number" if whole else "a number"
        raise RequestError(f"{name} must be {kind} {allowed}; got {_shown(value)}")
    return value


def validate_settings(
    temperature: Any, top_k: Any, top_p: Any, max_new_tokens: Any, seed: Any, *,
    vocab_size: int, block_size: int,
) -> SamplingSettings:  # fmt: skip
    """Check every sampling setting; a seed of -1 is replaced by a random one."""
    t = _checked("temperature", temperature, "from 0 to 2", lambda v: 0 <= v <= 2)
    k = _checked(
        "top_k", top_k, f"from 0 to {vocab_size} (0 keeps every token)",
        lambda v: 0 <= v <= vocab_size, whole=True,
    )  # fmt: skip
    p = _checked("top_p", top_p, "greater than 0 and at most 1", lambda v: 0 < v <= 1)
    n = _checked(
        "max_new_tokens", max_new_tokens, f"from 1 to {block_size}",
        lambda v: 1 <= v <= block_size, whole=True,
    )  # fmt: skip
    s = _checked(
        "seed", seed, f"from 0 to {MAX_SEED}, or -1 for a random seed",
        lambda v: -1 <= v <= MAX_SEED, whole=True,
    )  # fmt: skip
    return SamplingSettings(
        temperature=float(t),
        top_k=int(k),
        top_p=float(p),
        max_new_tokens=int(n),
        seed=secrets.randbelow(RANDOM_SEEDS) if s == -1 else int(s),
    )


def validate_clean(clean: Any) -> bool:
    """Clean mode is on or off: only true or false, so that "false" (a string) cannot mean on."""
    return validate_flag("clean", clean)


def clean_prompt(prompt: Any) -> tuple[str, list[str]]:
    """Opening words ready for the tokenizer, and notes on anything that was changed.

    Emoji and every script are kept (the tokenizer reads bytes); control characters other
    than newline and tab, and lone surrogates, are removed because they cannot be typed and
    cannot be shown. Trailing spaces are dropped: the tokenizer glues a space to the word after
    it, so a prompt ending in a space would start the model off on an unusual token.
    """
    if prompt is None:
        return "", []
    if not isinstance(prompt, str):
        raise RequestError(f"prompt must be text; got {_shown(prompt)}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RequestError(
            f"prompt is {len(prompt):,} characters long; the limit is {MAX_PROMPT_CHARS:,} "
            "characters"
        )
    text = prompt.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cs"))
    notes = []
    if len(kept) < len(text):
        notes.append(f"Removed {len(text) - len(kept)} control character(s) from your words.")
    kept = kept.rstrip(" \t")
    return (kept if kept.strip() else ""), notes


def validate_step(step: Any, written: int) -> int:
    """A written token's index: 0 is the first token the model wrote, `written` - 1 the last."""
    if written == 0:
        raise RequestError(
            "this joke has no written tokens to analyse: the model ended it at once; "
            "try another seed"
        )
    allowed = f"from 0 (the first written token) to {written - 1} (the last)"
    return int(_checked("step", step, allowed, lambda v: 0 <= v < written, whole=True))


def validate_heads(heads: Any, n_layer: int, n_head: int) -> list[tuple[int, int]]:
    """Heads as a list of [layer, head] pairs, counted from 0, each named once."""
    shape = f"a list of [layer, head] pairs, layer 0 to {n_layer - 1}, head 0 to {n_head - 1}"
    if not isinstance(heads, list) or len(heads) > n_layer * n_head:
        raise RequestError(
            f"heads must be {shape} (at most {n_layer * n_head}); got {_shown(heads)}"
        )
    pairs = []
    for pair in heads:
        valid = isinstance(pair, list | tuple) and len(pair) == 2
        valid = valid and all(type(i) is int for i in pair)
        if not valid or not (0 <= pair[0] < n_layer and 0 <= pair[1] < n_head):
            raise RequestError(f"heads must be {shape}; got {_shown(pair)} in it")
        pairs.append((pair[0], pair[1]))
    if len(set(pairs)) < len(pairs):
        raise RequestError(f"heads must name each head once; got {_shown(heads)}")
    return pairs


def validate_snapshot(snapshot: Any, count: int) -> int:
    """The index of one of the model folder's `count` training snapshots."""
    allowed = f"from 0 (the first) to {count - 1} (the last)"
    return int(_checked("snapshot", snapshot, allowed, lambda v: 0 <= v < count, whole=True))


def validate_threshold(threshold: Any) -> float:
    """The information-flow graph's threshold: the smallest contribution an edge shows."""
    allowed = "from 0 to 1 (the smallest contribution drawn; 0.04 is a good start)"
    return float(_checked("threshold", threshold, allowed, lambda v: 0 <= v <= 1))


def validate_flag(name: str, value: Any) -> bool:
    """A yes-or-no setting: true or false."""
    if not isinstance(value, bool):
        raise RequestError(f"{name} must be true or false; got {_shown(value)}")
    return value


def validate_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of a few words, such as the knockout's mode."""
    if not isinstance(value, str) or value not in choices:
        raise RequestError(
            f"{name} must be one of {', '.join(map(repr, choices))}; got {_shown(value)}"
        )
    return value


def validate_token_id(token_id: Any, vocab_size: int) -> int:
    """A token id of the model's vocabulary."""
    allowed = f"from 0 to {vocab_size - 1} (a token id, as /generate lists them)"
    return int(_checked("token_id", token_id, allowed, lambda v: 0 <= v < vocab_size, whole=True))
