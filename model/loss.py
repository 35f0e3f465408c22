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
import optax

from model.gpt import GPT


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-token negative log-likelihood (nats): logits (B, T, V), targets (B, T) -> (B, T)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets)


def masked_nll(
    model: GPT, x: jax.Array, y: jax.Array, mask: jax.Array, fused: bool = True
) -> tuple[jax.Array, jax.Array]:
    """Summed NLL of the targets where mask is 1, and how many there are (no dropout)."""
    logits, _ = model(x, fused=fused)  # (B, T, V)
    nll = cross_entropy(logits, y)  # (B, T)
    return (nll * mask).sum(), mask.sum()


def loss_figures(total_nll: float, n_tokens: float, n_chars: float) -> dict[str, float]:
    """Loss (nats/token), perplexity and bits per character from the summed NLL."""
    loss = total_nll / n_tokens
    return {
        "val_loss": loss,
        "val_ppl": math.exp(loss),
        "val_bpc": total_nll / math.log(2) / n_chars,
    }
