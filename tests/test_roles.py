"""model/roles.py on attention patterns built by hand: each kind of head is found, the sink
is taken out first, and no role swallows every head; then on a model whose weights were set
by hand to make a previous-token head and an induction head, which find_roles must find."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from model.config import GPTConfig
from model.gpt import GPT
from model.roles import (
    KINDS,
    MAX_PER_ROLE,
    HeadRoles,
    assign_roles,
    find_roles,
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


# ------------------------------------------------- a model whose heads are known by design

V, BLOCK = 48, 33  # vocabulary and context of the hand-built model
D_MODEL, N_HEAD = 160, 2  # d_head = 80: room for a one-hot of any token or position
TOKEN, POSITION, PREVIOUS = 0, V, V + BLOCK  # where each one-hot starts in the residual
SHARPNESS = 3.0  # scales the matching query-key scores: attention close to one-hot
START = 0  # the start token


def hand_built_model() -> GPT:
    """Two layers of two heads, whose weights make layer 1 head 1 a previous-token head and
    layer 2 head 1 an induction head; the other two heads attend evenly (zero queries).

    The residual stream holds one-hots: the token at dims TOKEN.., its position at
    POSITION.., and (written by the previous-token head) the token before it at PREVIOUS...
    RMSNorm only rescales them. The previous-token head's query at position p is one-hot p,
    its key at p' is one-hot p'+1: they meet where p' = p - 1, and its value copies that
    token into PREVIOUS. The induction head's query is its own token; its key is the token
    before the key: it finds the token that followed an earlier copy of itself.
    """
    sizes = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=N_HEAD, d_model=D_MODEL)
    config = GPTConfig(**sizes, d_ff=8, dropout=0.0, norm="rmsnorm", bias=False)
    model = GPT(config, rngs=nnx.Rngs(0))
    d_head = config.d_head
    eye_v, eye_t = np.eye(V), np.eye(BLOCK)
    embedding = np.zeros((V, D_MODEL))
    embedding[:, TOKEN : TOKEN + V] = eye_v
    positions = np.zeros((BLOCK, D_MODEL))
    positions[:, POSITION : POSITION + BLOCK] = eye_t
    model.token_embedding.embedding[...] = jnp.asarray(embedding, jnp.float32)
    model.positional.table.embedding[...] = jnp.asarray(positions, jnp.float32)
    kernels = {
        name: np.zeros((2, D_MODEL, D_MODEL)) for name in ("query", "key", "value", "output")
    }
    # Layer 1, head 1: previous token.
    kernels["query"][0, POSITION : POSITION + BLOCK, :BLOCK] = SHARPNESS * eye_t
    kernels["key"][0, POSITION : POSITION + BLOCK - 1, 1:BLOCK] = eye_t[:-1, :-1]
    kernels["value"][0, TOKEN : TOKEN + V, :V] = eye_v
    kernels["output"][0, :V, PREVIOUS : PREVIOUS + V] = eye_v
    # Layer 2, head 1: induction (its output is not needed).
    kernels["query"][1, TOKEN : TOKEN + V, :V] = SHARPNESS * eye_v
    kernels["key"][1, PREVIOUS : PREVIOUS + V, :V] = eye_v
    for layer, block in enumerate(model.blocks):
        for name, kernel in kernels.items():
            getattr(block.attention, name).kernel[...] = jnp.asarray(kernel[layer], jnp.float32)
        for linear in (block.feed_forward.widen, block.feed_forward.narrow):
            linear.kernel[...] = jnp.zeros_like(linear.kernel[...])
    assert d_head >= max(V, BLOCK)
    return model


@pytest.fixture(scope="module")
def found() -> HeadRoles:
    """find_roles on the hand-built model, with random texts as its validation jokes."""
    rng = np.random.default_rng(1)
    jokes = [[START, *rng.integers(1, V, size=n).tolist()] for n in (12, 20, 30)]
    return find_roles(hand_built_model(), jokes, start_token=START)


def test_a_hand_built_previous_token_head_and_induction_head_are_found(found):
    assert found.roles == [["previous-token", "diffuse"], ["induction", "diffuse"]]
    assert found.scores["previous-token"][0, 0] > 0.9
    # Below 1 only where a random token occurs twice in one copy: the head splits its weight.
    assert found.scores["induction"][1, 0] > 0.7
    assert found.scores["induction"][0, 0] < 0.2 and found.scores["previous-token"][1, 0] < 0.2
    assert not found.sinks.any()
    # The thumbnail is the head's pattern on the short repeated probe: the diagonal below
    # the main one for the previous-token head.
    size = found.thumbnails.shape[-1]
    assert np.allclose(np.diag(found.thumbnails[0, 0], k=-1), 1, atol=0.05)
    assert len(found.thumbnail_tokens["repeat"]) == size


def test_head_roles_survive_json_and_a_malformed_record_is_refused(found):
    again = HeadRoles.from_json(json.loads(json.dumps(found.to_json())), layers=2, heads=N_HEAD)
    assert again.roles == found.roles and (again.sinks == found.sinks).all()
    for kind in KINDS:
        np.testing.assert_allclose(again.scores[kind], found.scores[kind], atol=1e-4)
    np.testing.assert_allclose(again.thumbnails, found.thumbnails, atol=1 / 255)
    record = found.to_json()
    for broken in (
        {**record, "format": "other"},
        {**record, "roles": [["previous-token", "wizard"], ["induction", None]]},
        {**record, "scores": {**record["scores"], "self": [[0.1]]}},
        {key: value for key, value in record.items() if key != "sinks"},
    ):
        with pytest.raises(ValueError):
            HeadRoles.from_json(broken, layers=2, heads=N_HEAD)
