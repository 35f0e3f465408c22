"""The GPT: a stack of transformer blocks between an embedding and a language-model head.

Follow one token through `GPT.__call__`:

1. its id becomes a d_model-wide vector (token embedding), plus a vector for its
   position (unless RoPE, which rotates queries and keys inside attention instead);
2. each block updates that vector twice, always by *adding* to it (the residual stream):
   first with what attention gathered from earlier tokens, then with what the
   feed-forward network computes from it; each sub-layer reads a normalised copy of the
   stream (pre-norm, as in GPT-2; LayerNorm or RMSNorm, see normalization.py), which
   keeps deep stacks trainable;
3. a final norm, then a product with the embedding matrix (tied weights) turns
   the vector into one score (logit) per vocabulary entry: softmax(logits) is the
   model's guess for the *next* token.

Shapes, with B = batch, T = tokens, V = vocab_size, L = n_layer, H = n_head:

    tokens (B, T) -> embeddings (B, T, d_model) -> blocks (B, T, d_model)
    -> logits (B, T, V); attention weights (B, L, H, T, T)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from model.attention import MultiHeadAttention, causal_mask, same_joke_causal_mask
from model.config import GPTConfig
from model.feed_forward import FeedForward
from model.knockout import HeadKnockout
from model.linear import Linear
from model.normalization import make_norm
from model.positional import PositionalEncoding

# Keys and values of every earlier token, per layer: ((B, H, block_size, d_head) x 2) x L.
KVCache = tuple[tuple[jax.Array, jax.Array], ...]
# One layer's part of a HeadKnockout: off (rows, H) and replacement (H, d_head).
LayerKnockout = tuple[jax.Array, jax.Array]


class Block(nnx.Module):
    """One transformer block: x + attention(norm(x)), then x + feed_forward(norm(x))."""

    def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
        self.attention_norm = make_norm(config, rngs=rngs)  # LayerNorm or RMSNorm
        self.attention = MultiHeadAttention(config, rngs=rngs)
        self.feed_forward_norm = make_norm(config, rngs=rngs)
        self.feed_forward = FeedForward(config, rngs=rngs)
        # Built in evaluation mode (no dropout); GPT.train() switches it on (see GPT).
        self.dropout = nnx.Dropout(config.dropout, deterministic=True)

    def __call__(
        self,
        x: jax.Array,
        positions: jax.Array,
        mask: jax.Array,
        *,
        fused: bool = False,
        rngs: nnx.Rngs | None = None,
        knockout: LayerKnockout | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        """x: (B, T, d_model) -> (B, T, d_model) and this block's weights (B, H, T, T)."""
        normed = self.attention_norm(x)
        attended, weights = self.attention(normed, positions, mask, fused=fused, knockout=knockout)
        x = x + self.dropout(attended, rngs=rngs)  # dropout on the branch, not on the weights
        x = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)), rngs=rngs)
        return x, weights

    def prefill(
        self,
        x: jax.Array,
        positions: jax.Array,
        cache_size: int,
        knockout: LayerKnockout | None = None,
    ) -> tuple[jax.Array, jax.Array, tuple[jax.Array, jax.Array]]:
        """The block over a whole prompt (evaluation mode), also returning its keys and values.

        x: (B, T, d_model) -> (B, T, d_model), weights (B, H, T, T) and this layer's cache.
        """
        attended, weights, cache = self.attention.prefill(
            self.attention_norm(x), positions, cache_size, knockout
        )
        x = x + attended
        x = x + self.feed_forward(self.feed_forward_norm(x))
        return x, weights, cache

    def decode(
        self,
        x: jax.Array,
        position: jax.Array,
        cache: tuple[jax.Array, jax.Array],
        knockout: LayerKnockout | None = None,
    ) -> tuple[jax.Array, jax.Array, tuple[jax.Array, jax.Array]]:
        """The same block for one new token (B, 1, d_model), reading and extending the cache."""
        normed = self.attention_norm(x)
        attended, weights, cache = self.attention.decode(normed, position, cache, knockout)
        x = x + attended
        x = x + self.feed_forward(self.feed_forward_norm(x))
        return x, weights, cache


class GPT(nnx.Module):
    def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
        config.validate()
        self.config = config
        init = nnx.initializers.normal(stddev=config.init_std)
        self.token_embedding = nnx.Embed(
            config.vocab_size, config.d_model, embedding_init=init, rngs=rngs
        )
        self.positional = PositionalEncoding(config, rngs=rngs)
        # Dropout zeroes a random share of the embeddings and of each block's attention and
        # feed-forward outputs before they join the residual stream; attention weights are
        # never dropped. The mode is explicit: a GPT is built in evaluation mode (no dropout),
        # `model.train()` turns dropout on (it then needs `rngs`), `model.eval()` off again.
        self.dropout = nnx.Dropout(config.dropout, deterministic=True)
        self.blocks = nnx.List([Block(config, rngs=rngs) for _ in range(config.n_layer)])
        self.final_norm = make_norm(config, rngs=rngs)
        if not config.tie_embeddings:
            self.lm_head = Linear(
                config.d_model, config.vocab_size, use_bias=False, kernel_init=init, rngs=rngs
            )

    def embed(self, tokens: jax.Array, positions: jax.Array) -> jax.Array:
        """Token ids (B, T) at `positions` (T,) -> input vectors (B, T, d_model)."""
        x = self.token_embedding(tokens)  # (B, T, d_model)
        if self.config.positional == "sinusoidal":
            # The sines and cosines lie in [-1, 1] (a vector of norm sqrt(d_model / 2)), while
            # embedding entries start at init_std = 0.02: unscaled, a token's position would
            # outweigh the token itself about 35 times. As in "Attention Is All You Need",
            # the embeddings are multiplied by sqrt(d_model), which brings the two to
            # comparable sizes. Only here: the tied output layer (`head`) reads the unscaled
            # matrix, and learned positions start at 0.02 like the tokens they are added to.
            x = x * math.sqrt(self.config.d_model)
        if self.positional.is_additive:
            x = x + self.positional(positions)  # (T, d_model) broadcast over the batch, or (B, ...)
        return x

    def head(self, x: jax.Array) -> jax.Array:
        """Final norm and projection to vocabulary scores: (B, T, d_model) -> (B, T, V)."""
        x = self.final_norm(x)
        if self.config.tie_embeddings:
            return self.token_embedding.attend(x)  # x @ embedding^T: reuse the input matrix
        return self.lm_head(x)

    def __call__(
        self,
        tokens: jax.Array,
        *,
        positions: jax.Array | None = None,
        segments: jax.Array | None = None,
        rngs: nnx.Rngs | None = None,
        fused: bool = False,
        return_attention: bool = False,
        knockout: HeadKnockout | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        """Next-token logits for every position of `tokens` (B, T), T <= block_size.

        tokens are one text per row, at positions 0, 1, ..., T-1, unless `positions` and
        `segments` (both (B, T), from data/packing.py) say that a row holds several jokes:
        then each token sits at its position within its own joke and attends only to the
        earlier tokens of that joke.
        rngs: random keys for dropout, needed in training mode (`model.train()`) only.
        fused: use the fused attention op (faster training; cannot return weights).
        return_attention: also return every layer's weights, (B, L, H, T, T); the
        logits are the same either way.
        knockout: heads to switch off (model/knockout.py); None keeps them all.
        """
        length = tokens.shape[1]
        if length > self.config.block_size:
            raise ValueError(
                f"sequence of {length} tokens is longer than the context "
                f"(block_size={self.config.block_size}): trim it from the left"
            )
        if fused and return_attention:
            raise ValueError("the fused attention path cannot return weights: use fused=False")
        if (positions is None) != (segments is None):
            raise ValueError("give both positions and segments (rows of several jokes) or neither")
        if segments is None:
            positions = jnp.arange(length)  # (T,): one text from position 0
            mask = causal_mask(positions, positions)  # (T, T)
        else:
            mask = same_joke_causal_mask(segments)  # (B, 1, T, T)
        x = self.dropout(self.embed(tokens, positions), rngs=rngs)
        all_weights = []
        for index, block in enumerate(self.blocks):
            layer_knockout = None if knockout is None else knockout.layer(index)
            x, weights = block(x, positions, mask, fused=fused, rngs=rngs, knockout=layer_knockout)
            all_weights.append(weights)
        attention = jnp.stack(all_weights, axis=1) if return_attention else None
        return self.head(x), attention

    def init_cache(self, batch_size: int) -> KVCache:
        """An empty key/value cache: zeros for every layer, position and head."""
        c = self.config
        shape = (batch_size, c.n_head, c.block_size, c.d_head)  # see attention.to_cache_layout
        return tuple((jnp.zeros(shape), jnp.zeros(shape)) for _ in range(c.n_layer))

    def prefill(
        self, tokens: jax.Array, length: jax.Array, knockout: HeadKnockout | None = None
    ) -> tuple[jax.Array, jax.Array, KVCache]:
        """Feed a whole prompt in one pass: `__call__`'s computation, plus a filled cache.

        tokens: (B, T), T <= block_size, of which the first `length` (a scalar, may be traced)
        are the prompt and the rest padding. Returns the next-token logits at the last prompt
        position `length - 1`, (B, V); every position's attention, (B, L, H, T, T); and the
        cache `decode_step` continues from, with the keys and values of positions 0..T-1.

        Padding changes nothing at the prompt positions: by causality, position t < length
        only attends to positions <= t. Padded positions compute rows nobody reads, and their
        keys and values sit in cache slots >= length, which `decode_step` at position p
        overwrites (slot p) before it attends, and masks (slots > p) like future tokens.
        """
        positions = jnp.arange(tokens.shape[1])  # (T,)
        x = self.embed(tokens, positions)  # (B, T, d_model)
        all_weights, cache = [], []
        for index, block in enumerate(self.blocks):
            layer_knockout = None if knockout is None else knockout.layer(index)
            x, weights, layer_cache = block.prefill(
                x, positions, self.config.block_size, layer_knockout
            )
            all_weights.append(weights)  # (B, H, T, T)
            cache.append(layer_cache)
        last = jax.lax.dynamic_slice_in_dim(x, length - 1, 1, axis=1)  # (B, 1, d_model)
        logits = self.head(last)[:, 0, :]  # (B, V)
        return logits, jnp.stack(all_weights, axis=1), tuple(cache)

    def decode_step(
        self,
        token: jax.Array,
        position: jax.Array,
        cache: KVCache,
        knockout: HeadKnockout | None = None,
    ) -> tuple[jax.Array, jax.Array, KVCache]:
        """Feed ONE token (B,) at `position` and get the next-token logits (B, V).

        Earlier tokens are not recomputed: their keys and values come from `cache`.
        Also returns this token's attention over all block_size slots, (B, L, H, block_size)
        (zero beyond `position`), and the updated cache.
        """
        x = self.embed(token[:, None], position[None])  # (B, 1, d_model)
        rows, new_cache = [], []
        for index, (block, layer_cache) in enumerate(zip(self.blocks, cache, strict=True)):
            layer_knockout = None if knockout is None else knockout.layer(index)
            x, weights, layer_cache = block.decode(x, position, layer_cache, layer_knockout)
            rows.append(weights[:, :, 0, :])  # (B, H, block_size)
            new_cache.append(layer_cache)
        logits = self.head(x)[:, 0, :]  # (B, V)
        return logits, jnp.stack(rows, axis=1), tuple(new_cache)


def count_parameters(model: nnx.Module) -> int:
    """Number of trainable numbers in the model."""
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
