"""Positional encoding: how a model with no notion of order learns where each token is.

Attention compares every token with every other token and by itself ignores their
order ("dog bites man" and "man bites dog" would look the same). Three classic fixes:

- sinusoidal ("Attention Is All You Need", 2017): add a fixed pattern of sines and
  cosines of different wavelengths to each token's embedding;
- learned (GPT-2): add a trained vector per position, from a table of `block_size` rows;
- RoPE (rotary, RoFormer 2021): add nothing; instead rotate each query and key by an
  angle proportional to its position, so their dot product depends on the distance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from model.config import GPTConfig


def sinusoidal_encoding(positions: jax.Array, d_model: int, base: float) -> jax.Array:
    """PE[pos, 2i] = sin(pos / base^(2i/d)), PE[pos, 2i+1] = cos(pos / base^(2i/d)).

    positions: (T,) or (batch, T) integers -> (..., d_model). Computed on the fly: no table.
    """
    pairs = jnp.arange(d_model // 2)  # (d/2,)
    inverse_wavelength = base ** (-2.0 * pairs / d_model)  # (d/2,)
    angles = positions[..., None] * inverse_wavelength  # (..., T, d/2)
    # Interleave sin and cos so that features 2i and 2i+1 share a wavelength, as in the paper.
    encoding = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)  # (..., T, d/2, 2)
    return encoding.reshape(*positions.shape, d_model)


def apply_rope(x: jax.Array, positions: jax.Array, base: float) -> jax.Array:
    """Rotate pairs of features of queries or keys by a position-dependent angle.

    x: (batch, T, heads, d_head); positions: (T,) or (batch, T). Feature i of the first half
    is paired with feature i of the second half, and the pair is rotated by
    pos * base^(-2i/d_head).
    A query at position m and a key at position n then meet at angle (m - n): attention
    scores depend on how far apart two tokens are, not on where they are.
    """
    d_half = x.shape[-1] // 2
    inverse_wavelength = base ** (-jnp.arange(d_half) / d_half)  # (d_head/2,)
    angles = positions[..., None] * inverse_wavelength  # (..., T, d_head/2)
    cos = jnp.cos(angles)[..., None, :]  # (..., T, 1, d_head/2): the same for every head
    sin = jnp.sin(angles)[..., None, :]
    first, second = x[..., :d_half], x[..., d_half:]
    return jnp.concatenate([first * cos - second * sin, first * sin + second * cos], axis=-1)


class PositionalEncoding(nnx.Module):
    """Returns the vector added to each token embedding: positions (T,) or (B, T) ->
    (T, d_model) or (B, T, d_model).

    For RoPE this adds nothing (zeros are never materialised: `is_additive` is False and
    the attention layers rotate queries and keys instead).
    """

    def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
        self.kind = config.positional
        self.d_model = config.d_model
        self.base = config.rope_base
        self.is_additive = config.positional != "rope"
        if config.positional == "learned":
            init = nnx.initializers.normal(stddev=config.init_std)
            self.table = nnx.Embed(
                config.block_size, config.d_model, embedding_init=init, rngs=rngs
            )

    def __call__(self, positions: jax.Array) -> jax.Array:
        if self.kind == "learned":
            return self.table(positions)  # (..., T, d_model): one trained row per position
        return sinusoidal_encoding(positions, self.d_model, self.base)  # (..., T, d_model)
