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

They satisfy completeness: the IG_j add up to f(real) - f(baseline), and a token that is the
blank gets 0. The baseline is a token, not 0: with RMSNorm a zero input is a degenerate point
(the norm rescales any small input to full size), so f jumps right next to it and no handful
of points can follow the path.

The integral is a sum over a few points alpha_k, each gradient weighted by the width w_k of
the piece of [0, 1] it stands for:

    IG_j ~ (e_j - b_j) . sum over k of w_k df/de_j at b + alpha_k (e - b)

Where to put them matters more than how many: along the path f stays flat for most of the
way and then climbs within a few hundredths of alpha (the model switches from reading blanks
to reading the joke), so equally spaced points mostly measure a flat stretch and straddle the
climb. So the path is first looked at cheaply, f alone (forward passes, no gradient) at GRID
equally spaced alphas, and the points are then spread by how much f changed in each stretch,
a share of them evenly so that no stretch goes unsampled (`path_points`). The gap between the
two sides of completeness, reported with the scores, says how well the points approximate
the integral.

Attention can disagree with both: a head may look hard at a token whose value it barely
passes on, and what it passes on may be undone later; attribution follows what changed the
prediction, attention only where a head looked.

Both functions are pure and run under jax.jit (serving/explainer.py).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from model.attention import causal_mask
from model.gpt import GPT

# Integrated gradients' points on the path, chosen by measurement: `python -m
# experiments.integrated_gradients` (its table is in the README's explainer section).
STEPS = 7  # gradients: a forward and a backward pass each
GRID = 9  # forward passes that look at f along the path first: alpha = 0, 1/8, ..., 1
EVEN_SHARE = 0.3  # of the points spread evenly, the rest by the change of f
PATH_BATCH = 4  # gradients computed together


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
    """f: log p(chosen) after `position`, from input vectors (B, T, d_model) -> (B,).

    GPT.__call__'s computation, but only the stream at `position` is read after the last
    block, so that block runs for that one token, as the writer's decoder does (Block.decode
    reading every token's keys and values): a quarter less work for a 4-layer model, in every
    one of integrated gradients' passes. tests/test_attribution.py checks it against the
    model's own log-probabilities."""
    positions = jnp.arange(inputs.shape[1])  # (T,)
    mask = causal_mask(positions, positions)  # (T, T)
    *earlier, last = model.blocks
    x = inputs
    for block in earlier:
        x, _ = block(x, positions, mask)  # (B, T, d_model)
    # The last block's keys and values of every token; under jit its other outputs are
    # never computed.
    _, _, cache = last.prefill(x, positions, cache_size=inputs.shape[1])
    token = jax.lax.dynamic_slice_in_dim(x, position, 1, axis=1)  # (B, 1, d_model)
    final, _, _ = last.decode(token, position, cache)  # (B, 1, d_model)
    return jax.nn.log_softmax(model.head(final)[:, 0], axis=-1)[:, chosen]


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


def path_points(
    values: jax.Array, steps: int, even_share: float = EVEN_SHARE
) -> tuple[jax.Array, jax.Array]:
    """Where to take `steps` gradients on [0, 1], given f at equally spaced alphas
    `values` (G,): (alphas, widths), each (steps,), the widths adding up to 1.

    The G - 1 stretches between the looks get mass  (1 - even_share) |change of f in it| /
    (total change) + even_share / (G - 1). Each point stands for an equal share of the mass:
    the alphas are the mass's midpoints and the widths its edges, read off the cumulative
    mass by linear interpolation (so within a stretch the points are equally spaced).
    Needs 0 < even_share <= 1."""
    looks = jnp.linspace(0.0, 1.0, values.shape[0])  # (G,)
    change = jnp.abs(jnp.diff(values))  # (G - 1,)
    total = change.sum()
    stretches = change.shape[0]
    # A path where f never moves is spread evenly.
    by_change = jnp.where(total > 0, change / jnp.where(total > 0, total, 1), 1 / stretches)
    # even_share > 0 keeps the cumulative mass strictly increasing, so interpolation is exact.
    mass = (1 - even_share) * by_change + even_share / stretches
    cumulative = jnp.concatenate([jnp.zeros(1), jnp.cumsum(mass)])  # (G,), 0 to 1
    shares = jnp.arange(steps + 1) / steps  # (steps + 1,)
    edges = jnp.interp(shares, cumulative, looks)
    alphas = jnp.interp((shares[:-1] + shares[1:]) / 2, cumulative, looks)
    return alphas, jnp.diff(edges)


def integrated_gradients(
    model: GPT,
    tokens: jax.Array,
    position: jax.Array,
    chosen: jax.Array,
    blank: jax.Array,
    steps: int = STEPS,
    grid: int = GRID,
    even_share: float = EVEN_SHARE,
) -> Integrated:
    """IG_j for each token of `tokens` (1, T) from the baseline of token `blank` in every
    place, over `steps` points placed after `grid` looks at f (`even_share` 1: equally
    spaced), with the completeness gap."""
    embeddings, position_part = token_and_position_parts(model, tokens)
    baseline, _ = token_and_position_parts(model, jnp.full_like(tokens, blank))
    difference = embeddings - baseline  # (1, T, d_model)

    # The look: f at alpha = 0, 1/(grid - 1), ..., 1, forward only. Its ends are f(baseline)
    # and f(real), so it also gives the change to explain.
    looks = jnp.linspace(0.0, 1.0, grid)[:, None, None]  # (grid, 1, 1)
    values = chosen_log_prob(model, baseline + looks * difference + position_part,
                             position, chosen)  # (grid,)  # fmt: skip
    change = values[-1] - values[0]
    alphas, widths = path_points(values, steps, even_share)  # (steps,) each

    def f(inputs: jax.Array) -> jax.Array:  # (1, T, d_model) -> ()
        return chosen_log_prob(model, inputs, position, chosen)[0]

    def gradient_at(alpha: jax.Array) -> jax.Array:  # df/de at alpha of the way: (T, d_model)
        return jax.grad(f)(baseline + alpha * difference + position_part)[0]

    # PATH_BATCH points at a time: all at once would hold every point's activations for the
    # backward pass together (about 620 MB for 32 points of 128 tokens on the shipped model).
    gradients = jax.lax.map(gradient_at, alphas, batch_size=PATH_BATCH)  # (steps, T, d_model)
    path_gradient = jnp.tensordot(widths, gradients, axes=1)  # (T, d_model): sum of w_k g_k
    attribution = (difference[0] * path_gradient).sum(axis=-1)  # (T,)
    return Integrated(attribution, attribution.sum() - change, change)
