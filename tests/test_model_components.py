"""The modern components as GPTConfig fields: validation, old config.json files, QK-norm,
models without biases, and the sqrt(d_model) scale of sinusoidal positions."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from model.attention import MultiHeadAttention
from model.checkpoint import parameters_to_flat
from model.config import ADDED_FIELDS, ConfigError, GPTConfig
from model.gpt import GPT

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "punchline"
SMALL = GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=4, d_model=32, d_ff=64)


def test_the_defaults_are_the_classic_gpt2():
    config = GPTConfig()
    assert (config.norm, config.activation, config.qk_norm, config.bias) == (
        "layernorm", "gelu", False, True,
    )  # fmt: skip
    assert set(ADDED_FIELDS) == {"norm", "activation", "qk_norm", "bias"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"norm": "batchnorm"}, r"^norm='batchnorm' is unknown: use one of layernorm, rmsnorm$"),
        ({"activation": "tanh"}, r"^activation='tanh' is unknown: use one of gelu, relu2, swiglu$"),
        ({"qk_norm": "yes"}, r"^qk_norm='yes' must be true or false$"),
        ({"bias": 1}, r"^bias=1 must be true or false$"),
    ],
)
def test_unknown_choices_are_refused_in_one_line_naming_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(SMALL, **overrides).validate()


# config.json of the model shipped before the new fields existed (git 1eff185).
OLD_CONFIG = {
    "vocab_size": 4096, "block_size": 128, "n_layer": 4, "n_head": 4, "d_model": 256,
    "d_ff": 1024, "dropout": 0.1, "positional": "learned", "rope_base": 10000.0,
    "tie_embeddings": True, "layer_norm_eps": 1e-05, "init_std": 0.02,
}  # fmt: skip


def test_a_config_json_from_before_the_new_fields_is_the_classic_model():
    old = dict(OLD_CONFIG)
    assert not set(ADDED_FIELDS) & set(old)  # written before these fields existed
    config = GPTConfig.from_dict(old)
    assert (config.norm, config.activation, config.qk_norm, config.bias) == (
        "layernorm", "gelu", False, True,
    )  # fmt: skip
    # Only the new fields may be missing; unknown keys are still refused.
    partial = {k: v for k, v in old.items() if k != "d_ff"}
    with pytest.raises(ConfigError, match=r"missing config keys \['d_ff'\]"):
        GPTConfig.from_dict(partial)
    with pytest.raises(ConfigError, match="unknown config keys"):
        GPTConfig.from_dict({**old, "n_experts": 8})
    modern = dataclasses.replace(SMALL, norm="rmsnorm", activation="swiglu", qk_norm=True)
    assert GPTConfig.from_dict(modern.to_dict()) == modern


def heads(config: GPTConfig, scales: tuple[float, float] = (1.0, 1.0)):
    """Queries, keys and values of one attention layer over random inputs, (1, T, H, d_head)."""
    attention = MultiHeadAttention(config, rngs=nnx.Rngs(0))
    if config.qk_norm:
        attention.query_norm.scale[...] = jnp.full((config.d_head,), scales[0])
        attention.key_norm.scale[...] = jnp.full((config.d_head,), scales[1])
    x = jax.random.normal(jax.random.key(1), (1, 10, config.d_model))
    q, k, v = attention._project(x, jnp.arange(10))
    return attention, x, np.asarray(q), np.asarray(k), np.asarray(v)


@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_qk_norm_gives_each_heads_queries_and_keys_unit_rms(positional):
    config = dataclasses.replace(SMALL, norm="rmsnorm", qk_norm=True, positional=positional)
    attention, x, q, k, v = heads(config, scales=(1.0, 3.0))
    # Each head separately (RoPE rotates pairs of features, which keeps the RMS); the key
    # norm's scale is its own. Within 0.5%: eps = 1e-5 is not negligible next to the mean
    # squares of about 0.01 that projections with 0.02-std weights give.
    np.testing.assert_allclose(np.sqrt((q**2).mean(-1)), 1.0, rtol=5e-3)
    np.testing.assert_allclose(np.sqrt((k**2).mean(-1)), 3.0, rtol=5e-3)
    # Values are left alone: they are the plain projection split into heads.
    plain = np.asarray(attention.value(x)).reshape(v.shape)
    np.testing.assert_array_equal(v, plain)
    # Without qk_norm the same projections are far from unit RMS (weights start at 0.02).
    _, _, q_plain, _, _ = heads(dataclasses.replace(config, qk_norm=False))
    assert np.sqrt((q_plain**2).mean(-1)).max() < 0.5


def test_qk_norm_with_layernorm_centres_and_scales_each_head():
    config = dataclasses.replace(SMALL, qk_norm=True)  # LayerNorm, the default norm
    _, _, q, k, _ = heads(config)
    for projected in (q, k):
        np.testing.assert_allclose(projected.mean(-1), 0.0, atol=1e-5)
        np.testing.assert_allclose(projected.std(-1), 1.0, rtol=1e-2)


def test_qk_norm_adds_one_scale_per_feature_of_a_head_for_queries_and_for_keys():
    names = parameters_to_flat(GPT(dataclasses.replace(SMALL, norm="rmsnorm", qk_norm=True),
                                   rngs=nnx.Rngs(0)))  # fmt: skip
    for layer in range(SMALL.n_layer):
        for which in ("query_norm", "key_norm"):
            assert names[f"blocks.{layer}.attention.{which}.scale"].shape == (SMALL.d_head,)
    assert not any("_norm.bias" in name for name in names)  # RMSNorm has none


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_bias_false_leaves_no_bias_anywhere(norm):
    config = dataclasses.replace(SMALL, norm=norm, activation="swiglu", qk_norm=True)
    with_bias = parameters_to_flat(GPT(config, rngs=nnx.Rngs(0)))
    without = parameters_to_flat(GPT(dataclasses.replace(config, bias=False), rngs=nnx.Rngs(0)))
    assert not [name for name in without if name.endswith("bias")]
    # Every Linear keeps a bias when asked (and LayerNorm too), and nothing else changes.
    kernels = [name for name in with_bias if name.endswith(".kernel")]
    assert all(name.replace(".kernel", ".bias") in with_bias for name in kernels)
    assert set(without) == {name for name in with_bias if not name.endswith("bias")}


def test_the_shipped_models_parameters_are_those_of_the_default_config():
    from model.weight_files import read_weights

    old = json.loads((SHIPPED / "config.json").read_text())
    expected = parameters_to_flat(nnx.eval_shape(lambda: GPT(GPTConfig.from_dict(old),
                                                             rngs=nnx.Rngs(0))))  # fmt: skip
    stored, _ = read_weights(SHIPPED)
    assert {k: tuple(v.shape) for k, v in stored.items()} == {
        k: tuple(v.shape) for k, v in expected.items()
    }


def token_and_position_norms(config: GPTConfig) -> tuple[np.ndarray, np.ndarray]:
    """Norms of the token part and of the position part of each input vector, at init."""
    model = GPT(config, rngs=nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(0), (4, config.block_size), 0, config.vocab_size)
    positions = jnp.arange(config.block_size)
    position_part = np.asarray(model.positional(positions))  # (T, d_model)
    token_part = np.asarray(model.embed(tokens, positions)) - position_part  # (B, T, d_model)
    return np.linalg.norm(token_part, axis=-1), np.linalg.norm(position_part, axis=-1)


@pytest.mark.parametrize("d_model", [32, 128, 512])
def test_sinusoidal_positions_do_not_drown_the_tokens_at_initialisation(d_model):
    config = dataclasses.replace(
        SMALL, positional="sinusoidal", d_model=d_model, n_head=4, n_layer=1, d_ff=4 * d_model
    )
    token, position = token_and_position_norms(config)
    ratio = token.mean() / position.mean()
    assert 0.1 < ratio < 10, ratio
    # Without the sqrt(d_model) scale it would be 0.02 sqrt(d) / sqrt(d / 2), about 1/35.
    assert ratio == pytest.approx(config.init_std * math.sqrt(2 * d_model), rel=0.1)


def test_only_sinusoidal_scales_the_embeddings_and_the_tied_head_reads_them_unscaled():
    learned = GPT(SMALL, rngs=nnx.Rngs(0))
    tokens = jnp.array([[3, 1, 4, 1, 5]])
    positions = jnp.arange(5)
    unscaled = learned.token_embedding(tokens) + learned.positional(positions)
    np.testing.assert_array_equal(learned.embed(tokens, positions), unscaled)
    sinusoidal = GPT(dataclasses.replace(SMALL, positional="sinusoidal"), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(2), (1, 5, SMALL.d_model))
    matrix = sinusoidal.token_embedding.embedding[...]  # (V, d_model), as initialised
    np.testing.assert_allclose(
        sinusoidal.head(x), sinusoidal.final_norm(x) @ matrix.T, rtol=1e-5, atol=1e-6
    )
