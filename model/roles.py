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

find_roles runs both probes through a model and returns a HeadRoles: every score, each
head's role and sink flag, and a thumbnail of each head's pattern on a short probe of the
kind that gave its role. train.py ships them with the model (head_roles.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

from model.ablation import pad_jokes
from model.gpt import GPT

ROLES = ("previous-token", "induction", "duplicate-token", "self", "diffuse")
# A head takes a role when its score reaches the bar: the share of attention (after the sink
# is taken out) that goes where the role looks. Diffuse: its evenness.
BARS = {"previous-token": 0.4, "induction": 0.3, "duplicate-token": 0.3, "self": 0.4,
        "diffuse": 0.85}  # fmt: skip
SINK_BAR = 0.6  # mean attention on the start token that makes a head a sink
MAX_PER_ROLE = 4  # heads per role at most
KINDS = (*ROLES, "sink")  # every score a HeadRoles holds
REPEAT_KINDS = ("previous-token", "induction", "duplicate-token")  # scored on repeated tokens

PROBE_ROWS = 8  # repeated random sequences scored
PROBE_HALF = 24  # random tokens in each copy (at most what the context holds)
TEXT_ROWS = 32  # jokes scored for the sink, self and diffuse
THUMBNAIL_HALF = 8  # the thumbnail's repeated probe: 1 + 2 * 8 = 17 tokens
THUMBNAIL_LEVELS = 255  # thumbnails are stored as integers 0..255 (weight x 255)
FORMAT = "punchline-head-roles-v1"


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
    """Split off the start token: (attention on position 0, the rows renormalised over keys
    1, 2, ...). attention: (..., keys), each row a query's weights over the keys, such as
    (..., T query, T key). A row with no weight beyond position 0 (query 0 has nothing else to
    see) is left as zeros."""
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


@dataclass(frozen=True)
class HeadRoles:
    """What find_roles found. L = layers, H = heads."""

    scores: dict[str, np.ndarray]  # each of KINDS -> (L, H) scores, 0 to 1
    roles: list[list[str | None]]  # [L][H]: a role of ROLES, or None
    sinks: np.ndarray  # (L, H) booleans: puts most of its attention on the start token
    thumbnails: np.ndarray  # (L, H, t, t) floats: each head's pattern on its role's probe
    thumbnail_tokens: dict[str, list[int]]  # "repeat" and "text" -> the thumbnails' probes

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "scores": {kind: np.round(self.scores[kind], 4).tolist() for kind in KINDS},
            "roles": self.roles,
            "sinks": self.sinks.tolist(),
            "thumbnails": np.rint(self.thumbnails * THUMBNAIL_LEVELS).astype(int).tolist(),
            "thumbnail_tokens": self.thumbnail_tokens,
            "bars": {**BARS, "sink": SINK_BAR},
            "max_per_role": MAX_PER_ROLE,
        }

    @classmethod
    def from_json(cls, data: Any, layers: int, heads: int) -> HeadRoles:
        """Read to_json's record back; ValueError names what is wrong with it."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} record")
        try:
            scores = {kind: np.asarray(data["scores"][kind], np.float64) for kind in KINDS}
            sinks = np.asarray(data["sinks"], bool)
            thumbnails = np.asarray(data["thumbnails"], np.float64) / THUMBNAIL_LEVELS
            roles = data["roles"]
            tokens = {name: [int(t) for t in data["thumbnail_tokens"][name]]
                      for name in ("repeat", "text")}  # fmt: skip
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"a field is missing or malformed ({error})") from None
        shape = (layers, heads)
        if any(score.shape != shape or not np.isfinite(score).all() for score in scores.values()):
            raise ValueError(f"every score must be {shape} finite numbers")
        if sinks.shape != shape or thumbnails.ndim != 4 or thumbnails.shape[:2] != shape:
            raise ValueError(f"sinks and thumbnails must be for {shape} heads")
        valid_roles = (*ROLES, None)
        if len(roles) != layers or any(
            len(row) != heads or any(role not in valid_roles for role in row) for row in roles
        ):
            raise ValueError(f"roles must be {layers} x {heads} of {ROLES} or null")
        return cls(scores, roles, sinks, thumbnails, tokens)


def attention_patterns(model: GPT, tokens: np.ndarray) -> np.ndarray:
    """Every head's attention on each row of tokens: (rows, L, H, T, T), float64."""
    _, attention = model(jnp.asarray(tokens), return_attention=True)
    return np.asarray(attention, np.float64)


def find_roles(model: GPT, jokes: list[list[int]], start_token: int, seed: int = 0) -> HeadRoles:
    """Score every head of `model` on the two probes and give it its role.

    jokes: token ids of validation jokes, each opening with the start token (the first
    TEXT_ROWS are used); the repeated probes draw random tokens with `seed`.
    """
    c = model.config
    half = min(PROBE_HALF, (c.block_size - 1) // 2)
    repeated = repeated_random_tokens(PROBE_ROWS, half, c.vocab_size, start_token, seed)
    texts, lengths = pad_jokes(jokes[:TEXT_ROWS], start_token, c.block_size)
    scores = repeat_scores(attention_patterns(model, repeated), half)
    scores |= text_scores(attention_patterns(model, texts), lengths)
    roles, sinks = assign_roles(scores)

    # Thumbnails: each head on a short probe of its role's kind (the text probe: the start
    # of the longest joke, so that no padding is drawn).
    size = 1 + 2 * min(THUMBNAIL_HALF, half)
    short = repeated_random_tokens(1, (size - 1) // 2, c.vocab_size, start_token, seed)
    longest = int(np.argmax(lengths))
    joke = texts[longest : longest + 1, : min(size, lengths[longest])]
    on_repeat, on_text = attention_patterns(model, short)[0], attention_patterns(model, joke)[0]
    uses_repeat = np.array([[role in REPEAT_KINDS for role in row] for row in roles])  # (L, H)
    thumbnails = np.zeros((c.n_layer, c.n_head, size, size))
    thumbnails[uses_repeat] = on_repeat[uses_repeat]
    text_size = joke.shape[1]  # a joke shorter than the probe fills only the top-left corner
    thumbnails[~uses_repeat, :text_size, :text_size] = on_text[~uses_repeat]
    tokens = {"repeat": short[0].tolist(), "text": joke[0].tolist()}
    return HeadRoles(scores, roles, sinks, thumbnails, tokens)
