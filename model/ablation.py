"""What the model does without a head: the effect of a knockout and the importance map.

A knockout (model/knockout.py) switches heads off everywhere in the text. Its effect on a
written token is the change in that token's log-probability,

    effect = log p_knocked(token | context) - log p(token | context)

negative when the model needed the heads to write it. The importance map is that effect for
each single head, an L x H grid. It shows necessity, not sufficiency: a head whose
knockout changes nothing may still matter together with others (redundancy), and a large
effect says the head is needed here, not that it alone does the work.

All functions are pure and take the model; serving/explainer.py compiles them (jax.jit).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from model.attention import causal_mask
from model.gpt import GPT
from model.knockout import HeadKnockout
from model.trace import trace


def next_token_log_probs(
    model: GPT, tokens: jax.Array, position: jax.Array, knockout: HeadKnockout | None = None
) -> jax.Array:
    """log p(next token) after `position` for each row of `tokens` (B, T): (B, V).

    Only the residual stream at `position` goes through the output layer; the rest of the
    trace's outputs are never computed under jit."""
    final = trace(model, tokens, knockout).residuals[:, -1]  # (B, T, d_model)
    at_position = jax.lax.dynamic_index_in_dim(final, position, axis=1, keepdims=False)
    return jax.nn.log_softmax(model.head(at_position), axis=-1)  # (B, V)


def knockout_effect(
    model: GPT, tokens: jax.Array, position: jax.Array, knockout: HeadKnockout
) -> tuple[jax.Array, jax.Array]:
    """The next-token log-probabilities after `position` with every head, and with the
    heads of `knockout` off: two (V,) rows. tokens: (1, T)."""
    both = HeadKnockout(
        jnp.concatenate([jnp.zeros_like(knockout.off), knockout.off]), knockout.replacement
    )  # row 0: every head on; row 1: the knockout
    rows = jnp.broadcast_to(tokens, (2, tokens.shape[1]))
    log_probs = next_token_log_probs(model, rows, position, both)
    return log_probs[0], log_probs[1]


def importance_map(
    model: GPT, tokens: jax.Array, position: jax.Array, chosen: jax.Array, replacement: jax.Array
) -> jax.Array:
    """The effect on token `chosen`, written after `position`, of knocking out each single
    head: (L, H). tokens: (1, T); replacement: (L, H, d_head), zeros or the mean outputs.

    What a head of layer l changes starts at layer l: the stream entering it is the same
    with or without the knockout. So the clean trace is computed once, and each layer's H
    knockouts (one batch, a head off in each row) run only the blocks from l on: for 4 x 4
    heads, 44 block passes instead of the 68 of running every knockout from the start.
    """
    c = model.config
    clean = trace(model, tokens)
    positions = jnp.arange(tokens.shape[1])  # (T,)
    mask = causal_mask(positions, positions)  # (T, T)
    one_head_each = jnp.eye(c.n_head, dtype=bool)  # (H rows, H): row h switches off head h

    def chosen_log_p(final: jax.Array) -> jax.Array:  # (B, T, d_model) -> (B,)
        at_position = jax.lax.dynamic_index_in_dim(final, position, axis=1, keepdims=False)
        return jax.nn.log_softmax(model.head(at_position), axis=-1)[:, chosen]

    base = chosen_log_p(clean.residuals[:, -1])[0]  # every head on
    effects = []
    for layer in range(c.n_layer):
        x = jnp.broadcast_to(clean.residuals[:, layer], (c.n_head, *clean.residuals.shape[2:]))
        for index in range(layer, c.n_layer):
            heads_off = (one_head_each, replacement[layer]) if index == layer else None
            x, _ = model.blocks[index](x, positions, mask, knockout=heads_off)
        effects.append(chosen_log_p(x) - base)  # (H,)
    return jnp.stack(effects)  # (L, H)


def pad_jokes(
    jokes: list[list[int]], pad_id: int, block_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of several jokes as one batch: (B, T) ids, each joke cut to block_size and
    padded after its end with pad_id, and (B,) the real tokens of each row. T is the longest
    joke's length (at most block_size). Causal attention keeps the padding out of every real
    position's computation."""
    length = min(block_size, max(len(joke) for joke in jokes))
    tokens = np.full((len(jokes), length), pad_id, np.int32)
    lengths = np.zeros(len(jokes), np.int32)
    for row, joke in enumerate(jokes):
        kept = joke[:length]
        tokens[row, : len(kept)] = kept
        lengths[row] = len(kept)
    return tokens, lengths


def mean_head_outputs(model: GPT, jokes: list[list[int]], pad_id: int) -> np.ndarray:
    """Each head's mean output over every position of `jokes` (token ids, each opening with
    the start token): (L, H, d_head), the replacement of mean ablation."""
    tokens, lengths = pad_jokes(jokes, pad_id, model.config.block_size)
    real = np.arange(tokens.shape[1]) < lengths[:, None]  # (B, T): the positions of a joke
    heads = np.asarray(jax.jit(lambda t: trace(model, t).head_outputs)(tokens))  # (B,L,T,H,dh)
    # Padding sits after each joke, so causality keeps it out of the real positions' outputs.
    by_position = heads.transpose(0, 2, 1, 3, 4)  # (B, T, L, H, d_head)
    return by_position[real].mean(axis=0)  # (L, H, d_head): every real position pooled
