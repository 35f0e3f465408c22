"""Multi-head causal self-attention: how each token gathers information from earlier ones.

Every token asks a question (its query), advertises what it holds (its key), and
offers a message (its value). For one head, with d_head-wide vectors:

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_head) + causal_mask) V

Q K^T scores how well each query matches each key; dividing by sqrt(d_head) keeps the
scores' spread independent of the width, so the softmax neither saturates nor goes
flat; the causal mask sets the score of every *later* token to -inf, so a token only
sees itself and the past (that is what lets the model generate left to right);
softmax turns each row of scores into weights that sum to 1; the output for a token
is the weighted mix of the values. Several heads do this in parallel on slices of the
width, each free to look for something different (the previous word, the subject of
the sentence, the opening quote...), and their outputs are concatenated and mixed by
one more linear layer.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from model.config import GPTConfig
from model.knockout import switch_off
from model.linear import Linear
from model.normalization import make_norm
from model.positional import apply_rope


def causal_mask(query_positions: jax.Array, key_positions: jax.Array) -> jax.Array:
    """True where a query may look at a key: the key is not in its future. (query, key)."""
    return key_positions[None, :] <= query_positions[:, None]


def same_joke_causal_mask(segments: jax.Array) -> jax.Array:
    """Causal attention within each joke of rows that hold several jokes side by side.

    segments: (batch, T), which joke of its row each token belongs to (data/packing.py).
    Returns (batch, 1, T, T), True where a query may look at a key: the key is in the same
    joke and not in its future. So each joke is read exactly as if it were alone in its row.
    """
    index = jnp.arange(segments.shape[1])  # (T,)
    same_joke = segments[:, :, None] == segments[:, None, :]  # (batch, query, key)
    return (same_joke & causal_mask(index, index))[:, None]  # a heads axis, to broadcast


def attention_weights(query: jax.Array, key: jax.Array, mask: jax.Array) -> jax.Array:
    """softmax(Q K^T / sqrt(d_head)) with masked scores set to -inf: the formula above.

    query: (batch, query, heads, d_head); key: (batch, key, heads, d_head);
    mask: booleans, (query, key) or (batch, 1, query, key).
    Returns (batch, heads, query, key), each row summing to 1
    and exactly 0 wherever the mask is False.
    """
    d_head = query.shape[-1]
    scores = jnp.einsum("bqhd,bkhd->bhqk", query, key) / math.sqrt(d_head)  # (b, h, q, k)
    scores = jnp.where(mask, scores, -jnp.inf)  # future keys: exp(-inf) = 0 after softmax
    return jax.nn.softmax(scores, axis=-1)


def mix_values(weights: jax.Array, value: jax.Array) -> jax.Array:
    """Each query's output is its weighted mix of the values.

    weights: (batch, heads, query, key); value: (batch, key, heads, d_head)
    -> (batch, query, heads, d_head).
    """
    return jnp.einsum("bhqk,bkhd->bqhd", weights, value)


def to_cache_layout(x: jax.Array) -> jax.Array:
    """(batch, T, heads, d_head) -> (batch, heads, T, d_head): how the decoder's cache is kept.

    Heads before positions, as nanoGPT lays out queries, keys and values: each head's keys
    form one contiguous T x d_head matrix, and a new token's key is one row written in place.
    """
    return x.swapaxes(1, 2)


def from_cache_layout(x: jax.Array) -> jax.Array:
    """(batch, heads, T, d_head) -> (batch, T, heads, d_head): the layout of the formulas above."""
    return x.swapaxes(1, 2)


class MultiHeadAttention(nnx.Module):
    def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
        self.n_head = config.n_head
        self.d_head = config.d_head
        self.rope_base = config.rope_base if config.positional == "rope" else None
        init = nnx.initializers.normal(stddev=config.init_std)
        # GPT-2 scales the layers that write into the residual stream by 1/sqrt(2 * n_layer),
        # so the stream's variance does not grow with depth.
        out_init = nnx.initializers.normal(stddev=config.init_std / math.sqrt(2 * config.n_layer))
        d, bias = config.d_model, config.bias
        self.query = Linear(d, d, use_bias=bias, kernel_init=init, rngs=rngs)
        self.key = Linear(d, d, use_bias=bias, kernel_init=init, rngs=rngs)
        self.value = Linear(d, d, use_bias=bias, kernel_init=init, rngs=rngs)
        self.output = Linear(d, d, use_bias=bias, kernel_init=out_init, rngs=rngs)
        self.qk_norm = config.qk_norm
        if config.qk_norm:
            # One norm over d_head for all queries and one for all keys, shared by the heads
            # (a learned scale per feature of a head), as in Qwen3 and OLMo-2.
            self.query_norm = make_norm(config, config.d_head, rngs=rngs)
            self.key_norm = make_norm(config, config.d_head, rngs=rngs)

    def _heads(self, projection: Linear, x: jax.Array, positions: jax.Array | None) -> jax.Array:
        """Project, then split the width into heads; normalise and rotate queries and keys.

        (batch, T, d_model) -> (batch, T, heads, d_head). Every path (forward, prefill,
        decode) comes through here, so the cache holds keys exactly as the forward pass
        sees them.
        """
        batch, length, _ = x.shape
        heads = projection(x).reshape(batch, length, self.n_head, self.d_head)
        if projection is self.value:
            return heads  # values are neither normalised nor rotated
        if self.qk_norm:
            # Each head's query or key rescaled over its d_head features: a score q.k can no
            # longer grow just because q and k grew, which keeps softmax from saturating
            # (loss spikes) at high learning rates. Before RoPE, as in Qwen3: a per-feature
            # scale applied after the rotation would distort it, and scores would no longer
            # depend on the distance between tokens alone.
            norm = self.query_norm if projection is self.query else self.key_norm
            heads = norm(heads)  # (batch, T, heads, d_head)
        if self.rope_base is not None:
            heads = apply_rope(heads, positions, self.rope_base)  # only queries and keys rotate
        return heads

    def value_heads(self, x: jax.Array) -> jax.Array:
        """Each head's values, what it mixes: (batch, T, d_model) -> (batch, T, H, d_head)."""
        return self._heads(self.value, x, positions=None)  # values ignore positions

    def head_writes(self, heads: jax.Array) -> jax.Array:
        """What each head adds to the residual stream, one vector per head before they are
        summed: (batch, T, heads, d_head) -> (batch, T, heads, d_model).

        The output projection is linear, so merge_heads(heads) is the sum of these over the
        heads plus the output bias (tests/test_flow.py checks it). model/flow.py applies it to
        values, to see what each earlier token sent through each head.
        """
        kernel = self.output.kernel[...].reshape(self.n_head, self.d_head, -1)  # (H, d_head, d)
        return jnp.einsum("bthd,hdm->bthm", heads, kernel)

    def merge_heads(self, heads: jax.Array) -> jax.Array:
        """Concatenate the heads and mix them: (batch, T, heads, d_head) -> (batch, T, d_model)."""
        batch, length, _, _ = heads.shape
        return self.output(heads.reshape(batch, length, self.n_head * self.d_head))

    def _project(
        self, x: jax.Array, positions: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Queries, keys and values of a whole sequence, each (batch, T, heads, d_head)."""
        q = self._heads(self.query, x, positions)
        k = self._heads(self.key, x, positions)
        v = self._heads(self.value, x, positions)
        return q, k, v

    def _attend(
        self, q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, fused: bool
    ) -> tuple[jax.Array, jax.Array | None]:
        """The formula above over a whole sequence: each head's output and the weights."""
        if fused:
            # The same formula in one XLA op (flash-style on GPU); tests check it matches.
            return jax.nn.dot_product_attention(q, k, v, mask=mask), None  # (b, T, h, d_head)
        weights = attention_weights(q, k, mask)  # (b, h, T, T)
        return mix_values(weights, v), weights

    def head_outputs(
        self,
        x: jax.Array,
        positions: jax.Array,
        mask: jax.Array,
        *,
        fused: bool = False,
        knockout: tuple[jax.Array, jax.Array] | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        """Each head's output before the heads are mixed, (batch, T, heads, d_head), with the
        heads in `knockout` (this layer's part of a model.knockout.HeadKnockout) switched
        off, and the weights (batch, heads, T, T), or None on the fused path."""
        q, k, v = self._project(x, positions)  # (batch, T, heads, d_head) each
        heads, weights = self._attend(q, k, v, mask, fused)
        return switch_off(heads, knockout), weights

    def __call__(
        self,
        x: jax.Array,
        positions: jax.Array,
        mask: jax.Array,
        *,
        fused: bool = False,
        knockout: tuple[jax.Array, jax.Array] | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        """Attention over a whole sequence. x: (batch, T, d_model); positions: (T,) or
        (batch, T); mask: which keys each query may see, (T, T) or (batch, 1, T, T).

        Returns the output (batch, T, d_model) and the weights (batch, heads, T, T), or
        None for the weights on the fused path, which never materialises them.
        """
        heads, weights = self.head_outputs(x, positions, mask, fused=fused, knockout=knockout)
        return self.merge_heads(heads), weights

    def prefill(
        self,
        x: jax.Array,
        positions: jax.Array,
        cache_size: int,
        knockout: tuple[jax.Array, jax.Array] | None = None,
    ) -> tuple[jax.Array, jax.Array, tuple[jax.Array, jax.Array]]:
        """Attention over a whole prompt that also returns its keys and values as a cache.

        The same computation as `__call__` (not a second attention): x: (batch, T, d_model);
        positions: (T,), T <= cache_size. Returns the output (batch, T, d_model), the
        weights (batch, heads, T, T) and the cache `decode` reads, each of keys and values
        (batch, heads, cache_size, d_head): slots 0..T-1 hold the prompt, the rest zeros.
        """
        q, k, v = self._project(x, positions)  # (batch, T, heads, d_head) each
        heads, weights = self._attend(q, k, v, causal_mask(positions, positions), fused=False)
        output = self.merge_heads(switch_off(heads, knockout))
        empty = [(0, 0), (0, 0), (0, cache_size - x.shape[1]), (0, 0)]  # after the T positions
        cache = (jnp.pad(to_cache_layout(k), empty), jnp.pad(to_cache_layout(v), empty))
        return output, weights, cache

    def decode(
        self,
        x: jax.Array,
        position: jax.Array,
        cache: tuple[jax.Array, jax.Array],
        knockout: tuple[jax.Array, jax.Array] | None = None,
    ) -> tuple[jax.Array, jax.Array, tuple[jax.Array, jax.Array]]:
        """Attention for ONE new token, reusing the keys and values of earlier tokens.

        x: (batch, 1, d_model); position: scalar index of the new token;
        cache: keys and values so far, each (batch, heads, block_size, d_head) (see
        `to_cache_layout`).
        Returns the output (batch, 1, d_model), the weights (batch, heads, 1, block_size)
        and the cache with this token's key and value written at `position`.
        """
        positions = position[None]  # (1,)
        q, k, v = self._project(x, positions)  # (batch, 1, heads, d_head) each
        cached_k, cached_v = cache  # (batch, heads, block_size, d_head) each
        cached_k = jax.lax.dynamic_update_slice_in_dim(cached_k, to_cache_layout(k), position, 2)
        cached_v = jax.lax.dynamic_update_slice_in_dim(cached_v, to_cache_layout(v), position, 2)
        # Slots after `position` are empty: the causal mask hides them like future tokens.
        mask = causal_mask(positions, jnp.arange(cached_k.shape[2]))  # (1, block_size)
        weights = attention_weights(q, from_cache_layout(cached_k), mask)  # (b, h, 1, block)
        attended = mix_values(weights, from_cache_layout(cached_v))  # (batch, 1, heads, d_head)
        return self.merge_heads(switch_off(attended, knockout)), weights, (cached_k, cached_v)
