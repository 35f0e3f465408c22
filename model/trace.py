"""The forward pass with its insides kept: what each part of the model added, and where.

`GPT.__call__` keeps only what training and writing need (the next-token scores, and the
attention weights on request). The analyses of the explainer (model/lens.py,
model/ablation.py) need more: the residual stream between the blocks and each head's own
output. `trace` runs the same computation as `GPT.__call__`, written out block by block to
keep them (tests/test_inspect.py checks that the two agree), for one text per row at
positions 0..T-1. Under `jax.jit`, the parts a caller does not use are never computed.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from model.attention import causal_mask
from model.gpt import GPT
from model.knockout import HeadKnockout


class Trace(NamedTuple):
    """Everything one forward pass computed. B = rows, L = layers, H = heads, T = tokens."""

    logits: jax.Array  # (B, T, V): the next-token scores, as GPT.__call__ gives them
    attention: jax.Array  # (B, L, H, T, T): each head's weights
    residuals: jax.Array  # (B, L + 1, T, d_model): the stream entering each block, then
    #                       the stream after the last block (what the final norm reads)
    head_outputs: jax.Array  # (B, L, T, H, d_head): each head's output before the heads are
    #                          mixed by the output projection (after any knockout)
    attention_outputs: jax.Array  # (B, L, T, d_model): what each attention sub-layer added;
    #                               the feed-forward added the rest of residuals[l+1] - [l]


def trace(model: GPT, tokens: jax.Array, knockout: HeadKnockout | None = None) -> Trace:
    """Run `model` (in evaluation mode) on `tokens` (B, T) and keep every intermediate."""
    positions = jnp.arange(tokens.shape[1])  # (T,)
    mask = causal_mask(positions, positions)  # (T, T)
    x = model.embed(tokens, positions)  # (B, T, d_model)
    residuals, attention, head_outputs, attention_outputs = [x], [], [], []
    for index, block in enumerate(model.blocks):
        layer_knockout = None if knockout is None else knockout.layer(index)
        # Block.__call__, one line at a time:
        heads, weights = block.attention.head_outputs(
            block.attention_norm(x), positions, mask, knockout=layer_knockout
        )  # (B, T, H, d_head), (B, H, T, T)
        attended = block.attention.merge_heads(heads)  # (B, T, d_model)
        x = x + attended
        x = x + block.feed_forward(block.feed_forward_norm(x))
        residuals.append(x)
        attention.append(weights)
        head_outputs.append(heads)
        attention_outputs.append(attended)
    return Trace(
        logits=model.head(x),
        attention=jnp.stack(attention, axis=1),
        residuals=jnp.stack(residuals, axis=1),
        head_outputs=jnp.stack(head_outputs, axis=1),
        attention_outputs=jnp.stack(attention_outputs, axis=1),
    )
