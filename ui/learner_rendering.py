"""Learner mode, drawn: "guess the next token", then the answer and where the model looked.

Nothing here runs the model: the numbers are those the joke was written with (its
candidates and attention, model/generate.py).
"""

from __future__ import annotations

import html

import numpy as np

from ui.analysis_rendering import _percent
from ui.rendering import short

ATTENTION_TOP = 3  # tokens named per layer in the answer


def _chips(labels: list[str], end: int) -> str:
    return "".join(
        f'<span class="pl-chip{" pl-start" * (i == 0)}">{html.escape(label)}</span>'
        for i, label in enumerate(labels[:end])
    )


def render_question(
    labels: list[str], position: int, options: list[tuple[int, str]], right: int, asked: int
) -> str:
    """The tokens before `position`, the token there hidden, and the options to pick from:
    (token id, label), in an order that gives nothing away."""
    buttons = "".join(
        f'<button class="pl-chip pl-guess" data-token-id="{token_id}">{html.escape(label)}</button>'
        for token_id, label in options
    )
    return (
        f'<div class="pl-learner"><p class="pl-caption">Score: {right} of {asked}. The model '
        "has read these tokens. Which one did it write next? (The joke and the panels below "
        "are blurred until you turn learner mode off.)</p>"
        f'<div class="pl-token-row">{_chips(labels, position)}'
        '<span class="pl-chip pl-hidden">?</span></div>'
        f'<div class="pl-guesses">{buttons}</div></div>'
    )


def render_answer(
    labels: list[str],
    position: int,
    picked: int,
    written: int,
    candidates: tuple[list[int], list[float]],
    candidate_labels: list[str],
    attention: np.ndarray,
    right: int,
    asked: int,
) -> str:
    """The answer: the written token, the visitor's pick with the model's probability of it,
    the model's top five, and per layer the tokens the last read token looked at most.

    attention: (L, H, position), the weights of the query at position - 1 (the stream that
    predicted the hidden token) over the tokens it could see.
    """
    ids, probabilities = candidates
    by_id = dict(zip(ids, probabilities, strict=True))
    written_label = html.escape(labels[position])
    if picked == written:
        verdict = f"Right: the model wrote <b>{written_label}</b>."
    else:
        picked_label = html.escape(candidate_labels[ids.index(picked)]) if picked in by_id else "?"
        verdict = f"The model wrote <b>{written_label}</b>; you picked <b>{picked_label}</b>"
        verdict += f" ({_percent(by_id[picked])} to the model)." if picked in by_id else "."
    picked_class = ' class="pl-picked"'
    top = "".join(
        f"<li{picked_class * (i == picked)}>{html.escape(label)} {_percent(p)}</li>"
        for i, label, p in zip(ids, candidate_labels, probabilities, strict=True)
    )
    mean = attention.mean(axis=1)  # (L, position): each layer's heads, averaged
    looked = "".join(
        f"<li>layer {layer + 1}: "
        + ", ".join(
            f"{html.escape(short(labels[k], 14))} {row[k]:.0%}"
            for k in np.argsort(-row, kind="stable")[:ATTENTION_TOP]
        )
        + "</li>"
        for layer, row in enumerate(mean)
    )
    return (
        f'<div class="pl-learner"><p class="pl-verdict">{verdict}</p>'
        f'<p class="pl-caption">Score: {right} of {asked}.</p>'
        f'<div class="pl-token-row">{_chips(labels, position + 1)}</div>'
        f'<p class="pl-caption">The model\'s five most likely tokens:</p><ol>{top}</ol>'
        f'<p class="pl-caption">Where it looked: when it chose, its last token '
        f"<b>{html.escape(labels[position - 1])}</b> attended most to (mean of the heads):</p>"
        f'<ul class="pl-looked">{looked}</ul></div>'
    )


def render_finished(right: int, asked: int) -> str:
    return (
        f'<div class="pl-learner"><p class="pl-verdict">That was the whole joke: you guessed '
        f"{right} of {asked} tokens as the model wrote them.</p>"
        '<p class="pl-caption">Turn learner mode off to see it all, or ask for a new joke.'
        "</p></div>"
    )
