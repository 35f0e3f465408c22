"""Attribution: how much each input token's embedding moved the written token's log-probability.

For the token written after `position`, f = log p(chosen | tokens). Each input token j enters
the model as its embedding e_j plus its position's vector p_j (model.GPT.embed). Gradient x
input scores token j by

    attribution_j = e_j . df/de_j        (a dot product over the model's width)

the first-order estimate of how much f would fall were e_j taken away (a Taylor step from the
real input). It reads every route at once
(attention, feed-forward, residuals) but only locally: where the model is saturated the
gradient is small however much the token matters. Integrated gradients (Sundararajan et al.
2017) integrate the gradient along the straight path from a baseline b to the real
embeddings: b puts one blank token (the explainer uses the start token) in every place,

    IG_j = (e_j - b_j) . integral from 0 to 1 of df/de_j at b + alpha (e - b), d alpha

summed over n midpoints alpha = (k + 1/2)/n. They satisfy completeness: the IG_j add up to
f(real) - f(baseline), and a token that is the blank gets 0. The baseline is a token, not 0:
with RMSNorm a zero input is a degenerate point (the norm rescales any small input to full
size), so f jumps right next to it and no handful of points can follow the path. The gap
between the two sides of completeness, reported with the scores, says how well n points
approximate the integral.

Attention can disagree with both: a head may look hard at a token whose value it barely
passes on, and what it passes on may be undone later; attribution follows what changed the
prediction, attention only where a head looked.

Both functions are pure and run under jax.jit (serving/explainer.py).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from model.gpt import GPT
from model.trace import trace_inputs

# Integrated gradients: points on the path. Measured (12 jokes of 64 tokens, a position past
# 20 each), the median completeness gap as a share of the change: on the shipped model (RoPE,
# RMSNorm) with 24 points 6% from the start token, 81% from zero embeddings; on the previous
# one (learned positions, LayerNorm) 8% from the start token.
STEPS = 24
PATH_BATCH = 4  # of them computed together


class Integrated(NamedTuple):
    attribution: jax.Array  # (T,): IG_j of each input token
    gap: jax.Array  # (): sum of IG_j - (f(real) - f(baseline))
    change: jax.Array  # (): f(real) - f(baseline)


def token_and_position_parts(model: GPT, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
    """What each token brings and what its position brings to the input: (B, T, d_model)
    each, adding up to model.embed(tokens) (with RoPE the position part is 0: positions
    act inside attention)."""
    positions = jnp.arange(tokens.shape[1])
    inputs = model.embed(tokens, positions)  # (B, T, d_model)
    position_part = jnp.zeros_like(inputs)
    if model.positional.is_additive:
        position_part = position_part + model.positional(positions)
    return inputs - position_part, position_part


def chosen_log_prob(
    model: GPT, inputs: jax.Array, position: jax.Array, chosen: jax.Array
) -> jax.Array:
    """f: log p(chosen) after `position`, from input vectors (B, T, d_model) -> (B,)."""
    final = trace_inputs(model, inputs).residuals[:, -1]  # (B, T, d_model)
    at_position = jax.lax.dynamic_index_in_dim(final, position, axis=1, keepdims=False)
    return jax.nn.log_softmax(model.head(at_position), axis=-1)[:, chosen]


def gradient_times_input(
    model: GPT, tokens: jax.Array, position: jax.Array, chosen: jax.Array
) -> jax.Array:
    """attribution_j = e_j . df/de_j for each token of `tokens` (1, T): (T,). Tokens after
    `position` get exactly 0 (the causal mask)."""
    embeddings, position_part = token_and_position_parts(model, tokens)

    def f(e: jax.Array) -> jax.Array:
        return chosen_log_prob(model, e + position_part, position, chosen).sum()

    gradient = jax.grad(f)(embeddings)  # (1, T, d_model)
    return (embeddings * gradient).sum(axis=-1)[0]


def integrated_gradients(
    model: GPT,
    tokens: jax.Array,
    position: jax.Array,
    chosen: jax.Array,
    blank: jax.Array,
    steps: int = STEPS,
) -> Integrated:
    """IG_j for each token of `tokens` (1, T) from the baseline of token `blank` in every
    place, over `steps` points, with the completeness gap."""
    embeddings, position_part = token_and_position_parts(model, tokens)
    baseline, _ = token_and_position_parts(model, jnp.full_like(tokens, blank))
    difference = embeddings - baseline  # (1, T, d_model)
    alphas = (jnp.arange(steps) + 0.5) / steps  # midpoints of `steps` equal pieces of [0, 1]

    def f(inputs: jax.Array) -> jax.Array:  # (1, T, d_model) -> ()
        return chosen_log_prob(model, inputs, position, chosen)[0]

    def gradient_at(alpha: jax.Array) -> jax.Array:  # df/de at alpha of the way: (T, d_model)
        return jax.grad(f)(baseline + alpha * difference + position_part)[0]

    # PATH_BATCH points at a time: all at once would hold every point's activations for the
    # backward pass together (about 620 MB for 32 points of 128 tokens on the shipped model).
    gradients = jax.lax.map(gradient_at, alphas, batch_size=PATH_BATCH)  # (steps, T, d_model)
    attribution = (difference[0] * gradients.mean(axis=0)).sum(axis=-1)  # (T,)
    ends = chosen_log_prob(model, jnp.concatenate([embeddings, baseline]) + position_part,
                           position, chosen)  # fmt: skip
    change = ends[0] - ends[1]
    return Integrated(attribution, attribution.sum() - change, change)
