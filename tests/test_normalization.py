"""model/normalization.py: RMSNorm is its formula, and make_norm builds the configured norm."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from model.config import GPTConfig
from model.normalization import RMSNorm, make_norm

CONFIG = GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, d_model=16, d_ff=32)


def test_rmsnorm_is_x_over_the_root_mean_square_times_the_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=0.5, scale=3.0, size=(2, 5, 16)).astype(np.float32)
    scale = rng.normal(size=16).astype(np.float32)
    norm = RMSNorm(16, epsilon=1e-5)
    norm.scale[...] = scale
    expected = x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + 1e-5) * scale
    np.testing.assert_allclose(norm(x), expected, rtol=1e-5, atol=1e-6)


def test_rmsnorm_starts_as_a_plain_rescaling_to_unit_rms_keeping_the_mean():
    x = np.random.default_rng(1).normal(loc=2.0, size=(4, 32)).astype(np.float32)
    y = np.asarray(RMSNorm(32)(x))
    np.testing.assert_allclose(np.sqrt(np.mean(y**2, axis=-1)), 1.0, rtol=1e-4)
    assert np.all(y.mean(axis=-1) > 0.5)  # no mean subtracted, unlike LayerNorm
    assert np.all(y * x > 0)  # each feature keeps its sign: a rescaling only


@pytest.mark.parametrize(("norm", "bias"), [("layernorm", True), ("layernorm", False),
                                            ("rmsnorm", True), ("rmsnorm", False)])  # fmt: skip
def test_make_norm_builds_the_configured_norm_with_a_scale_and_a_bias_only_if_asked(norm, bias):
    config = GPTConfig(**{**CONFIG.to_dict(), "norm": norm, "bias": bias})
    layer = make_norm(config, rngs=nnx.Rngs(0))
    assert isinstance(layer, RMSNorm if norm == "rmsnorm" else nnx.LayerNorm)
    names = set(nnx.to_pure_dict(nnx.state(layer, nnx.Param)))
    assert names == ({"scale", "bias"} if norm == "layernorm" and bias else {"scale"})
    assert layer.scale.shape == (CONFIG.d_model,)
    assert make_norm(config, CONFIG.d_head, rngs=nnx.Rngs(0)).scale.shape == (CONFIG.d_head,)


def test_layernorm_without_bias_still_centres_and_scales():
    config = GPTConfig(**{**CONFIG.to_dict(), "bias": False})
    x = np.random.default_rng(2).normal(loc=3.0, scale=2.0, size=(3, 16)).astype(np.float32)
    y = np.asarray(make_norm(config, rngs=nnx.Rngs(0))(x))
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(-1), 1.0, rtol=1e-3)
