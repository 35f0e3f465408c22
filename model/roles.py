"""Head roles: what kind of attention pattern each head computes, scored on probe texts.

Scores, each the mean attention weight a head puts where the role looks (0 to 1):

- previous-token: from each token to the token just before it;
- duplicate-token: from a token to the same token earlier in the text;
- induction: from a token to the token that FOLLOWED its earlier occurrence (the head that
  lets a model continue a repeated phrase: "... Harry Potter ... Harry" -> "Potter");
- self: from each token to itself;
- first-token sink: to position 0, the start token, which many heads use as a place to put
  attention they do not need;
- diffuse: how evenly a head spreads its attention: the entropy of its row over the entropy
  of a uniform row, so 1 is perfectly even.

Probes: repeated random token sequences [start, r_1..r_n, r_1..r_n] for the previous-token,
duplicate-token and induction scores (in the second copy these patterns have exactly one
right key each), and validation jokes for the others.

The sink is handled first. Each row's weight on position 0 is taken out and the rest
renormalised before every other score, so that a head which parks 70% on the start token and
puts the rest on the previous token still reads as a previous-token head. "Sink" is then a
modifier, given only above SINK_BAR, never a role that swallows every head. Each head's role
is its best-scoring kind above that kind's bar, and a kind keeps at most MAX_PER_ROLE heads
(the highest): a detector that puts most heads in one category says little.
"""

from __future__ import annotations

import numpy as np

ROLES = ("previous-token", "induction", "duplicate-token", "self", "diffuse")
# A head takes a role when its score reaches the bar: the share of attention (after the sink
# is taken out) that goes where the role looks. Diffuse: its evenness.
BARS = {"previous-token": 0.4, "induction": 0.3, "duplicate-token": 0.3, "self": 0.4,
        "diffuse": 0.85}  # fmt: skip
SINK_BAR = 0.6  # mean attention on the start token that makes a head a sink
MAX_PER_ROLE = 4  # heads per role at most


def repeated_random_tokens(
    rows: int, half: int, vocab_size: int, start_token: int, seed: int = 0
) -> np.ndarray:
    """(rows, 1 + 2 * half) probe texts: the start token, `half` random tokens, the same
    again. Tokens are drawn from the vocabulary without the start token."""
    rng = np.random.default_rng(seed)
    choices = np.setdiff1d(np.arange(vocab_size), [start_token])
    first = rng.choice(choices, size=(rows, half))
    start = np.full((rows, 1), start_token)
    return np.concatenate([start, first, first], axis=1).astype(np.int32)


def without_sink(attention: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split off the start token: (attention on position 0, (..., T, T) rows renormalised
    over keys 1..T-1). attention: (..., T query, T key). Row 0 (only position 0 to see) is
    left as zeros."""
    sink = attention[..., 0]  # (..., T)
    rest = attention.copy()
    rest[..., 0] = 0
    total = rest.sum(axis=-1, keepdims=True)
    return sink, np.divide(rest, total, out=np.zeros_like(rest), where=total > 1e-9)


def repeat_scores(attention: np.ndarray, half: int) -> dict[str, np.ndarray]:
    """Previous-token, duplicate-token and induction scores on repeated sequences.

    attention: (rows, L, H, T, T) with T = 1 + 2 * half (see repeated_random_tokens).
    Returns each score as (L, H), measured on the queries of the second copy.
    """
    _, rest = without_sink(attention)
    queries = np.arange(half + 1, 2 * half + 1)  # positions of the second copy

    def mean_weight(keys: np.ndarray) -> np.ndarray:  # query i looks at keys[i]: (L, H)
        return rest[..., queries, keys].mean(axis=(0, -1))

    return {
        "previous-token": mean_weight(queries - 1),
        "duplicate-token": mean_weight(queries - half),  # the same token in the first copy
        "induction": mean_weight(queries - half + 1),  # the token after it
    }


def text_scores(attention: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
    """Sink, self and diffuse scores on texts: attention (rows, L, H, T, T), lengths (rows,)
    the real tokens of each row (the rest padding). Queries from position 2 on, so that a
    row has at least two keys besides the start token."""
    sink, rest = without_sink(attention)
    positions = np.arange(attention.shape[-1])  # (T,)
    valid = (positions[None, :] >= 2) & (positions[None, :] < lengths[:, None])  # (rows, T)
    weight = valid[:, None, None, :] / valid.sum()  # averages over every valid query
    diagonal = rest[..., positions, positions]  # (rows, L, H, T)
    # Evenness: entropy / log q over the q keys 1..q after the start token (1: uniform).
    entropy = -(rest * np.log(np.where(rest > 0, rest, 1))).sum(axis=-1)  # (rows, L, H, T)
    evenness = entropy / np.log(np.maximum(positions, 2))
    return {
        "sink": (sink * weight).sum(axis=(0, -1)),
        "self": (diagonal * weight).sum(axis=(0, -1)),
        "diffuse": (evenness * weight).sum(axis=(0, -1)),
    }


def assign_roles(scores: dict[str, np.ndarray]) -> tuple[list[list[str | None]], np.ndarray]:
    """Each head's role (or None) and whether it is a sink: ([L][H] roles, (L, H) booleans).

    A head takes its best kind above that kind's bar, judged by how far above the bar it is;
    a kind keeps its MAX_PER_ROLE strongest heads, and the others are left without a role.
    """
    layers, heads = scores["previous-token"].shape
    margin = np.stack([scores[role] / BARS[role] for role in ROLES])  # (roles, L, H)
    best = margin.argmax(axis=0)  # (L, H)
    roles: list[list[str | None]] = [[None] * heads for _ in range(layers)]
    for index, role in enumerate(ROLES):
        chosen = [
            (margin[index, layer, head], layer, head)
            for layer in range(layers)
            for head in range(heads)
            if best[layer, head] == index and margin[index, layer, head] >= 1
        ]
        for _, layer, head in sorted(chosen, reverse=True)[:MAX_PER_ROLE]:
            roles[layer][head] = role
    return roles, scores["sink"] >= SINK_BAR
