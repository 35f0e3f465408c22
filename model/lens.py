"""The logit lens: what the model would have predicted had it stopped after layer l.

The residual stream after each block is the same kind of vector as after the last one, so
it can be read out the same way, through the final norm and the output layer:

    lens_l = softmax(W_U · final_norm(residual_l))        l = 0 (the embeddings), 1, ..., L

The final norm recomputes its mean and variance from residual_l itself: reusing the last
layer's statistics (an early TransformerLens bug, #1076) or skipping the norm (Ecco) reads
a differently scaled stream. After the last block (l = L) the lens *is* the model's output.
The lens is a view, not a mechanism: early layers were never trained to be read this way,
so their guesses are rough, and a late "commitment" says when the answer becomes readable,
not when it was computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from model.gpt import GPT


def lens_log_probs(model: GPT, residuals: jax.Array) -> jax.Array:
    """log lens_l for every layer and position: residuals (..., L+1, T, d_model) from
    model.trace -> log-probabilities (..., L+1, T, V)."""
    return jax.nn.log_softmax(model.head(residuals), axis=-1)


@dataclass(frozen=True)
class LensReading:
    """The lens at one position, layer by layer (L+1 rows: the embeddings, then each block)."""

    top_ids: np.ndarray  # (L+1, k): each layer's k most likely next tokens, best first
    top_probabilities: np.ndarray  # (L+1, k)
    chosen_probability: np.ndarray  # (L+1,): the probability of the token that was written
    chosen_rank: np.ndarray  # (L+1,): its rank, 0 = the layer's top guess
    commitment: int | None  # the first layer from which the top guess stays the written
    #                         token up to the output; None if the output's top guess is another


def read_lens(log_probs: np.ndarray, chosen: int, top: int = 3) -> LensReading:
    """Summarise one position's lens, log_probs (L+1, V), for the written token `chosen`."""
    probabilities = np.exp(log_probs.astype(np.float64))  # (L+1, V)
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :top]  # (L+1, top)
    chosen_probability = probabilities[:, chosen]  # (L+1,)
    # Rank: how many tokens each layer found strictly more likely than the chosen one.
    rank = (probabilities > chosen_probability[:, None]).sum(axis=-1)
    return LensReading(
        top_ids=order,
        top_probabilities=np.take_along_axis(probabilities, order, axis=-1),
        chosen_probability=chosen_probability,
        chosen_rank=rank,
        commitment=commitment_layer(order[:, 0], chosen),
    )


def commitment_layer(top_guesses: np.ndarray, chosen: int) -> int | None:
    """The first layer from which every layer's top guess (L+1,) is `chosen`, or None."""
    layer = len(top_guesses)
    while layer > 0 and top_guesses[layer - 1] == chosen:
        layer -= 1
    return layer if layer < len(top_guesses) else None
