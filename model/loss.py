"""The training objective and the three ways the project reports it.

Training minimises the cross-entropy of the next token: the negative log-likelihood (in nats)
that the model gave to the token that really came next. Its readings:
- loss: mean nats per token;
- perplexity: exp(loss), "as unsure as a fair choice among this many tokens";
- bits per character: total nats / ln 2 / characters of text. It does not depend on the
  tokenizer, so models with different vocabularies (or a character-level one) compare fairly.
"""

import math

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from data.packing import Batch
from model.gpt import GPT


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-token negative log-likelihood (nats): logits (B, T, V), targets (B, T) -> (B, T)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets)


def batch_nll(
    model: GPT, batch: Batch, fused: bool = True, rngs: nnx.Rngs | None = None
) -> tuple[jax.Array, jax.Array]:
    """Summed NLL of a batch's targets, padding (segment 0) left out, and how many there are.

    rngs: dropout keys (`nnx.Rngs`), in training mode only.
    """
    logits, _ = model(
        batch.inputs, positions=batch.positions, segments=batch.segments, fused=fused, rngs=rngs
    )  # (B, T, V)
    counted = batch.segments > 0  # (B, T)
    nll = jnp.where(counted, cross_entropy(logits, batch.targets), 0.0)  # (B, T)
    return nll.sum(), counted.sum()


def loss_figures(total_nll: float, n_tokens: float, n_chars: float) -> dict[str, float]:
    """Loss (nats/token), perplexity and bits per character from the summed NLL."""
    loss = total_nll / n_tokens
    return {
        "val_loss": loss,
        "val_ppl": math.exp(loss),
        "val_bpc": total_nll / math.log(2) / n_chars,
    }
