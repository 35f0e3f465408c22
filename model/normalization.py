"""Normalisation layers: keep each token's vector at a steady size as it flows through.

Every sub-layer of a block reads a normalised copy of the residual stream (pre-norm), the
final norm prepares the stream for the output layer, and with `qk_norm` each head's queries
and keys are normalised too. Two kinds, chosen by `GPTConfig.norm`:

- LayerNorm (GPT-2): subtract the mean of the features, divide by their standard
  deviation, then multiply by a learned scale and add a learned bias (if `bias`);
- RMSNorm (Llama, Qwen3, OLMo-2): only divide by the root mean square, no mean and no bias:
  cheaper, and it works as well in practice.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from model.config import GPTConfig


class RMSNorm(nnx.Module):
    """y = x / sqrt(mean(x^2) + eps) * scale, over the last axis (the features).

    mean(x^2) is the mean of the squared features of one vector (one token, or one head of
    one token), eps keeps the division finite for a vector of zeros, and `scale` is a learned
    weight per feature, starting at 1. Unlike LayerNorm the mean is not subtracted and no bias
    is added: the vector is only rescaled to a root mean square of 1, then scaled per feature.
    """

    def __init__(self, features: int, *, epsilon: float = 1e-5):
        self.epsilon = epsilon
        self.scale = nnx.Param(jnp.ones((features,)))  # (features,), like LayerNorm's scale

    def __call__(self, x: jax.Array) -> jax.Array:
        """(..., features) -> (..., features), each vector rescaled to unit RMS, then scaled."""
        mean_square = jnp.mean(jnp.square(x), axis=-1, keepdims=True)  # (..., 1)
        return x / jnp.sqrt(mean_square + self.epsilon) * self.scale[...]


def make_norm(config: GPTConfig, features: int | None = None, *, rngs: nnx.Rngs) -> nnx.Module:
    """The norm `config.norm` names, over `features` (default d_model; d_head for qk_norm).

    Both keep their learned weights under the same name, `scale` (and LayerNorm its `bias`,
    unless config.bias is False), so a model folder names them the same way for either kind.
    """
    features = config.d_model if features is None else features
    if config.norm == "rmsnorm":
        return RMSNorm(features, epsilon=config.layer_norm_eps)
    return nnx.LayerNorm(features, epsilon=config.layer_norm_eps, use_bias=config.bias, rngs=rngs)
