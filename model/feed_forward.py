"""The position-wise feed-forward network: each token thinks on its own.

Attention moves information *between* tokens; the feed-forward network then transforms
each token's vector separately (the same weights at every position): widen to d_ff,
apply a non-linearity, and project back to d_model. Most of a transformer's parameters,
and much of what it memorises, live here. The non-linearity is `GPTConfig.activation`:

- gelu (GPT-2):     narrow(gelu(widen(x))), with GPT-2's tanh approximation
                    gelu(h) = 0.5 h (1 + tanh(sqrt(2/pi) (h + 0.044715 h^3)));
- relu2 (Primer, modded-nanogpt): narrow(relu(widen(x))^2), relu(h) = max(h, 0);
- swiglu (PaLM, Llama, Qwen3): narrow(silu(gate(x)) * widen(x)), silu(g) = g * sigmoid(g).
  A third matrix, `gate`, decides feature by feature how much of widen(x) (the "up"
  projection) goes through. With three matrices instead of two, Llama picks
  d_ff ~ 2/3 x 4 d_model to keep the parameter count of a GELU network; here d_ff is
  whatever the config says.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from model.config import GPTConfig
from model.linear import Linear


class FeedForward(nnx.Module):
    def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
        self.activation = config.activation
        init = nnx.initializers.normal(stddev=config.init_std)
        # Scaled like attention's output: it also writes into the residual stream.
        out_init = nnx.initializers.normal(stddev=config.init_std / math.sqrt(2 * config.n_layer))
        d, d_ff, bias = config.d_model, config.d_ff, config.bias
        # The names `widen` and `narrow` are those of the model folders already exported.
        self.widen = Linear(d, d_ff, use_bias=bias, kernel_init=init, rngs=rngs)
        if config.activation == "swiglu":
            self.gate = Linear(d, d_ff, use_bias=bias, kernel_init=init, rngs=rngs)
        self.narrow = Linear(d_ff, d, use_bias=bias, kernel_init=out_init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(batch, T, d_model) -> (batch, T, d_ff) -> activation -> (batch, T, d_model)."""
        hidden = self.widen(x)  # (batch, T, d_ff)
        if self.activation == "gelu":
            hidden = jax.nn.gelu(hidden)  # approximate=True: GPT-2's tanh formula
        elif self.activation == "relu2":
            hidden = jnp.square(jax.nn.relu(hidden))
        else:  # swiglu: the gate, (batch, T, d_ff), scales each hidden feature
            hidden = jax.nn.silu(self.gate(x)) * hidden
        return self.narrow(hidden)  # (batch, T, d_model)
