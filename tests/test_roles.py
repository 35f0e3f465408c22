"""model/roles.py on attention patterns built by hand: each kind of head is found, the sink
is taken out first, and no role swallows every head."""

from __future__ import annotations

import numpy as np

from model.roles import (
    MAX_PER_ROLE,
    assign_roles,
    repeat_scores,
    repeated_random_tokens,
    text_scores,
)

HALF = 6
T = 1 + 2 * HALF


def pattern(keys_of: dict[int, int] | None = None, sink: float = 0.0, even: bool = False):
    """(T, T) causal attention: `sink` on position 0, the rest on keys_of[q] (q - 1 where
    not given), or spread evenly over keys 1..q if `even`."""
    keys_of = keys_of or {}
    attention = np.zeros((T, T))
    attention[0, 0] = 1
    for q in range(1, T):
        attention[q, 0] = sink
        if even:
            attention[q, 1 : q + 1] += (1 - sink) / q
        else:
            attention[q, keys_of.get(q, q - 1)] += 1 - sink
    return attention


def heads(*patterns: np.ndarray) -> np.ndarray:
    """(rows=2, L=1, H, T, T) from one (T, T) pattern per head."""
    return np.broadcast_to(np.stack(patterns)[None, None], (2, 1, len(patterns), T, T)).copy()


def test_the_probe_repeats_random_tokens_after_the_start_token():
    probe = repeated_random_tokens(rows=3, half=HALF, vocab_size=50, start_token=0)
    assert probe.shape == (3, T) and (probe[:, 0] == 0).all() and (probe[:, 1:] != 0).all()
    assert (probe[:, 1 : HALF + 1] == probe[:, HALF + 1 :]).all()


def test_each_kind_of_head_is_found_and_the_sink_is_taken_out_first():
    second = range(HALF + 1, T)
    induction = {q: q - HALF + 1 for q in second}
    duplicate = {q: q - HALF for q in second}
    attention = heads(
        pattern(),  # previous token
        pattern(sink=0.7),  # previous token, with most of its weight parked on the start
        pattern(induction),
        pattern(duplicate),
        pattern({q: q for q in range(1, T)}),  # self
        pattern(even=True),
    )
    scores = repeat_scores(attention, HALF) | text_scores(attention, np.array([T, T]))
    roles, sinks = assign_roles(scores)
    assert roles[0] == ["previous-token", "previous-token", "induction", "duplicate-token",
                        "self", "diffuse"]  # fmt: skip
    assert sinks[0].tolist() == [False, True, False, False, False, False]
    assert scores["previous-token"][0, 1] == 1.0  # renormalised without the start token
    assert scores["diffuse"][0, 5] > 0.99 and scores["diffuse"][0, 0] == 0


def test_no_role_takes_more_heads_than_its_cap():
    attention = heads(*[pattern() for _ in range(MAX_PER_ROLE + 3)])
    scores = repeat_scores(attention, HALF) | text_scores(attention, np.array([T, T]))
    roles, _ = assign_roles(scores)
    assert roles[0].count("previous-token") == MAX_PER_ROLE
    assert roles[0].count(None) == 3
