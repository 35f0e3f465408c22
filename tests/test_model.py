"""The transformer itself: shapes, causality, attention maps, positional encodings, caching."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from model.attention import attention_weights, causal_mask
from model.config import ConfigError, GPTConfig
from model.gpt import GPT
from model.positional import apply_rope, sinusoidal_encoding

SMALL = GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=4, d_model=32, d_ff=64)
KINDS = ("sinusoidal", "learned", "rope")


def make_model(positional: str = "learned", seed: int = 0, **overrides) -> GPT:
    config = dataclasses.replace(SMALL, positional=positional, **overrides)
    return GPT(config, rngs=nnx.Rngs(seed))


def random_tokens(length: int, batch: int = 2, seed: int = 0) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), (batch, length), 0, SMALL.vocab_size)


@pytest.mark.parametrize("positional", KINDS)
def test_logits_and_attention_shapes(positional):
    model = make_model(positional)
    logits, attention = model(random_tokens(10), return_attention=True)
    assert logits.shape == (2, 10, SMALL.vocab_size)
    assert attention.shape == (2, SMALL.n_layer, SMALL.n_head, 10, 10)


@pytest.mark.parametrize("positional", KINDS)
def test_changing_a_later_token_never_changes_earlier_logits(positional):
    model = make_model(positional)
    tokens = random_tokens(16)
    changed = tokens.at[:, 9].set((tokens[:, 9] + 1) % SMALL.vocab_size)
    before, _ = model(tokens)
    after, _ = model(changed)
    np.testing.assert_array_equal(before[:, :9], after[:, :9])
    assert not np.allclose(before[:, 9:], after[:, 9:])


def test_attention_rows_sum_to_one_and_are_zero_above_the_diagonal():
    _, attention = make_model()(random_tokens(12), return_attention=True)
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-6)
    above = np.triu(np.ones((12, 12), dtype=bool), k=1)
    assert np.all(np.asarray(attention)[..., above] == 0.0)
    assert np.all(np.asarray(attention)[..., ~above] > 0.0)


def test_returning_attention_does_not_change_the_logits():
    model = make_model("rope")
    tokens = random_tokens(12)
    plain, none = model(tokens)
    with_maps, _ = model(tokens, return_attention=True)
    assert none is None
    np.testing.assert_array_equal(plain, with_maps)


@pytest.mark.parametrize("positional", KINDS)
def test_fused_attention_matches_the_explicit_formula(positional):
    model = make_model(positional)
    tokens = random_tokens(SMALL.block_size)
    explicit, _ = model(tokens)
    fused, _ = model(tokens, fused=True)
    np.testing.assert_allclose(explicit, fused, atol=1e-5, rtol=1e-5)
    grads = [jax.grad(lambda m, f=f: m(tokens, fused=f)[0].sum())(model) for f in (False, True)]
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_attention_formula_by_hand():
    """softmax(q k / sqrt(d)) with the future masked, for one head, against numpy."""
    rng = np.random.default_rng(0)
    q = rng.normal(size=(1, 3, 1, 4)).astype(np.float32)
    k = rng.normal(size=(1, 3, 1, 4)).astype(np.float32)
    weights = np.asarray(attention_weights(q, k, causal_mask(jnp.arange(3), jnp.arange(3))))
    for i in range(3):
        scores = np.array([q[0, i, 0] @ k[0, j, 0] / 2.0 for j in range(i + 1)])
        expected = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
        np.testing.assert_allclose(weights[0, 0, i, : i + 1], expected, rtol=1e-5)
        assert np.all(weights[0, 0, i, i + 1 :] == 0)


def test_sinusoidal_encoding_is_the_formula_of_the_paper():
    d, base = 16, 10_000.0
    table = np.asarray(sinusoidal_encoding(jnp.arange(50), d, base))
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / base ** (2 * i / d)
            assert table[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-5)
            assert table[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-5)


def test_rope_scores_depend_only_on_the_distance():
    rng = np.random.default_rng(1)
    q = jnp.asarray(rng.normal(size=(1, 1, 1, 8)), dtype=jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 1, 1, 8)), dtype=jnp.float32)

    def score(m: int, n: int) -> float:
        qm = apply_rope(q, jnp.array([m]), 10_000.0)
        kn = apply_rope(k, jnp.array([n]), 10_000.0)
        return float((qm * kn).sum())

    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 4), abs=1e-3)
    rotated = apply_rope(q, jnp.array([9]), 10_000.0)
    assert float(jnp.linalg.norm(rotated)) == pytest.approx(float(jnp.linalg.norm(q)), rel=1e-5)


@pytest.mark.parametrize("positional", KINDS)
def test_cached_decoding_matches_the_full_forward_pass(positional):
    model = make_model(positional)
    tokens = random_tokens(SMALL.block_size, batch=1)
    full_logits, full_attention = model(tokens, return_attention=True)
    cache = model.init_cache(1)
    step = jax.jit(lambda m, t, p, c: m.decode_step(t, p, c))
    for position in range(SMALL.block_size):
        logits, rows, cache = step(model, tokens[:, position], jnp.int32(position), cache)
        np.testing.assert_allclose(logits, full_logits[:, position], atol=1e-5)
        np.testing.assert_allclose(
            rows[..., : position + 1], full_attention[:, :, :, position, : position + 1], atol=1e-5
        )
        assert np.all(np.asarray(rows[..., position + 1 :]) == 0)


def test_dropout_only_in_training_mode_which_is_explicit():
    model = make_model(dropout=0.5)
    tokens = random_tokens(8)
    a, _ = model(tokens)  # built in evaluation mode: no dropout
    b, _ = model(tokens, rngs=nnx.Rngs(dropout=0))  # keys alone do not switch dropout on
    np.testing.assert_array_equal(a, b)
    model.train()
    with pytest.raises(ValueError, match="rngs"):
        model(tokens)  # training mode without keys is an error, not a silent evaluation
    c, _ = model(tokens, rngs=nnx.Rngs(dropout=0))
    d, _ = model(tokens, rngs=nnx.Rngs(dropout=0))
    e, _ = model(tokens, rngs=nnx.Rngs(dropout=1))
    np.testing.assert_array_equal(c, d)
    assert not np.allclose(a, c)
    assert not np.allclose(c, e)
    model.eval()
    np.testing.assert_array_equal(model(tokens, rngs=nnx.Rngs(dropout=0))[0], a)


def test_dropout_leaves_the_attention_weights_alone():
    model = make_model(dropout=0.5)
    tokens = random_tokens(8)
    _, clean = model(tokens, return_attention=True)
    model.train()
    _, weights = model(tokens, rngs=nnx.Rngs(dropout=0), return_attention=True)
    # The first block's weights see the dropped embeddings, so they differ, but each row is
    # still a full distribution: nothing was zeroed and rescaled inside the softmax output.
    np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, atol=1e-5)
    assert not np.allclose(clean, weights)


def test_untied_head_has_its_own_matrix():
    tied = make_model(tie_embeddings=True)
    untied = make_model(tie_embeddings=False)
    assert not hasattr(tied, "lm_head")
    assert untied.lm_head.kernel.shape == (SMALL.d_model, SMALL.vocab_size)


def test_sequence_longer_than_the_context_is_refused():
    with pytest.raises(ValueError, match="longer than the context"):
        make_model()(random_tokens(SMALL.block_size + 1))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"d_model": 30, "n_head": 4}, "not divisible by n_head"),
        ({"d_model": 30, "n_head": 6, "positional": "rope"}, "must be even"),
        ({"positional": "alibi"}, "unknown"),
        ({"n_layer": 0}, "positive integer"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_configs_that_cannot_work_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(SMALL, **overrides).validate()


def test_config_round_trips_through_a_dict_and_rejects_unknown_keys():
    assert GPTConfig.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(ConfigError, match="unknown config keys"):
        GPTConfig.from_dict({**SMALL.to_dict(), "n_experts": 8})
    partial = SMALL.to_dict()
    del partial["n_head"]
    with pytest.raises(ConfigError, match="missing config keys"):
        GPTConfig.from_dict(partial)


@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "rope"])
@pytest.mark.parametrize("fused", [False, True])
def test_a_row_of_several_jokes_reads_each_as_if_it_were_alone(positional, fused):
    model = make_model(positional)
    jokes = [random_tokens(5, batch=1, seed=1), random_tokens(9, batch=1, seed=2)]
    alone = [model(joke)[0] for joke in jokes]  # each from position 0, (1, length, V)
    row = jnp.concatenate([*jokes, jnp.zeros((1, 2), jnp.int32)], axis=1)  # 5 + 9 + 2 padding
    positions = jnp.asarray([[*range(5), *range(9), 0, 1]])
    segments = jnp.asarray([[1] * 5 + [2] * 9 + [0, 0]])
    packed, _ = model(row, positions=positions, segments=segments, fused=fused)
    np.testing.assert_allclose(packed[:, :5], alone[0], atol=1e-5)
    np.testing.assert_allclose(packed[:, 5:14], alone[1], atol=1e-5)
    if not fused:
        _, weights = model(row, positions=positions, segments=segments, return_attention=True)
        assert float(jnp.abs(weights[..., 5:14, :5]).max()) == 0.0  # no look across jokes
    with pytest.raises(ValueError, match="both positions and segments"):
        model(row, positions=positions)
