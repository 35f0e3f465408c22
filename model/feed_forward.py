"""The position-wise feed-forward network: each token thinks on its own.

Attention moves information *between* tokens; the feed-forward network then transforms
each token's vector separately (the same weights at every position): widen to d_ff,
apply a non-linearity (GELU), and project back to d_model. Most of a transformer's
parameters, and much of what it memorises, live here.
"""

from __future__ import annotations

import math

import jax
from flax import nnx

from model.config import GPTConfig


class FeedForward(nnx.Module):
    def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
        init = nnx.initializers.normal(stddev=config.init_std)
        # Scaled like attention's output: it also writes into the residual stream.
        out_init = nnx.initializers.normal(stddev=config.init_std / math.sqrt(2 * config.n_layer))
        self.widen = nnx.Linear(config.d_model, config.d_ff, kernel_init=init, rngs=rngs)
        self.narrow = nnx.Linear(config.d_ff, config.d_model, kernel_init=out_init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(batch, T, d_model) -> (batch, T, d_ff) -> GELU -> (batch, T, d_model)."""
        return self.narrow(jax.nn.gelu(self.widen(x)))
