"""Turning next-token scores into a choice: temperature, top-k and top-p (nucleus) sampling.

All functions are pure and jit-friendly: the settings are arrays, not Python numbers,
so changing them never triggers a recompilation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Below this temperature we take the single most likely token (greedy decoding)
# instead of dividing the logits by a number close to zero.
GREEDY_BELOW = 1e-3


def filter_logits(
    logits: jax.Array, temperature: jax.Array, top_k: jax.Array, top_p: jax.Array
) -> jax.Array:
    """Logits (B, V) of the distribution we sample from; removed tokens get -inf.

    temperature: < 1 sharpens the distribution (safer jokes), > 1 flattens it (wilder);
    top_k: keep only the k most likely tokens (0 keeps all);
    top_p: keep the smallest set of most likely tokens whose probability reaches p
    (1.0 keeps all). The most likely token always survives.
    """
    scaled = logits / jnp.maximum(temperature, GREEDY_BELOW)
    # Every token, most likely first (equal logits: lower id first), and where each came from.
    # top_k over the whole vocabulary is a sort; on CPU it takes half the time of argsort.
    sorted_logits, order = jax.lax.top_k(scaled, logits.shape[-1])  # (B, V) each
    rank = jnp.arange(logits.shape[-1])  # (V,)
    keep_top_k = (top_k <= 0) | (rank < top_k)
    sorted_probs = jax.nn.softmax(sorted_logits, axis=-1)
    # Keep a token if the tokens ranked above it do not yet reach top_p on their own.
    probability_before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs
    keep_top_p = probability_before < top_p
    keep = keep_top_k & keep_top_p
    filtered_sorted = jnp.where(keep, sorted_logits, -jnp.inf)
    # Undo the sort: write each sorted entry back to its vocabulary position.
    rows = jnp.arange(logits.shape[0])[:, None]  # (B, 1)
    return jnp.empty_like(scaled).at[rows, order].set(filtered_sorted, unique_indices=True)


def sample_token(
    key: jax.Array,
    logits: jax.Array,
    temperature: jax.Array,
    top_k: jax.Array,
    top_p: jax.Array,
) -> jax.Array:
    """Draw one token per row of logits (B, V) -> (B,) int32."""
    filtered = filter_logits(logits, temperature, top_k, top_p)
    sampled = jax.random.categorical(key, filtered, axis=-1)
    greedy = jnp.argmax(logits, axis=-1)
    return jnp.where(temperature < GREEDY_BELOW, greedy, sampled).astype(jnp.int32)
