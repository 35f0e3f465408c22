"""Turning next-token scores into a choice: temperature, top-k and top-p (nucleus) sampling.

The choice is the Gumbel-max trick, which is what `jax.random.categorical` does: add
independent Gumbel noise to each log-probability and take the largest. The compiled decode
step draws the noise (keyed by the joke's seed and the position, so a seed always gives the
same joke); the functions here run on the host in NumPy, on the one row of V scores the step
hands back anyway. Filtering needs the scores in order, and NumPy ranks the top k of 4,096
numbers in about 40 us where XLA:CPU's generic sort took about 700 us, a quarter of a
whole decode step.
"""

from __future__ import annotations

import numpy as np

# Below this temperature we take the single most likely token (greedy decoding)
# instead of dividing the logits by a number close to zero.
GREEDY_BELOW = 1e-3


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from scores, computed stably (the largest score is subtracted first)."""
    exp = np.exp(logits - np.max(logits))
    return exp / exp.sum()


def ranked(scores: np.ndarray, count: int) -> np.ndarray:
    """Ids of the `count` highest scores, highest first; equal scores keep the lower id first."""
    if count < len(scores):
        # The `count` best in one linear pass, then only those are sorted.
        ids = np.sort(np.argpartition(-scores, count - 1)[:count])
    else:
        ids = np.arange(len(scores))
    return ids[np.argsort(-scores[ids], kind="stable")]


def filter_logits(logits: np.ndarray, temperature: float, top_k: int, top_p: float) -> np.ndarray:
    """Scores (V,) of the distribution we sample from; removed tokens get -inf.

    temperature: < 1 sharpens the distribution (safer jokes), > 1 flattens it (wilder);
    top_k: keep only the k most likely tokens (0 keeps all);
    top_p: keep the smallest set of most likely tokens whose probability reaches p
    (1.0 keeps all). The most likely token always survives.

    Top-p counts probability over the whole vocabulary, not renormalised after top-k (Hugging
    Face's warpers renormalise): when the top k tokens hold less than p, top-p removes
    nothing more. Kept this way so that every published seed still writes its joke.
    """
    scaled = (logits / np.float32(max(temperature, GREEDY_BELOW))).astype(np.float32)
    vocab = len(scaled)
    order = ranked(scaled, top_k if 0 < top_k < vocab else vocab)
    sorted_probs = softmax(scaled)[order]  # probabilities over the whole vocabulary
    # Keep a token if the tokens ranked above it do not yet reach top_p on their own.
    probability_before = np.cumsum(sorted_probs) - sorted_probs
    kept = order[probability_before < top_p]
    filtered = np.full(vocab, -np.inf, dtype=np.float32)
    filtered[kept] = scaled[kept]
    return filtered


def sampling_probabilities(
    logits: np.ndarray, temperature: float, top_k: int, top_p: float
) -> np.ndarray:
    """The distribution a token is drawn from (V,): the model's, after temperature, top-k and
    top-p. Greedy decoding (temperature near 0) puts all of it on the most likely token."""
    if temperature < GREEDY_BELOW:
        return np.eye(len(logits), dtype=np.float32)[int(np.argmax(logits))]
    return softmax(filter_logits(logits, temperature, top_k, top_p))


def sample_token(
    logits: np.ndarray, noise: np.ndarray, temperature: float, top_k: int, top_p: float
) -> int:
    """One token id from scores (V,) and standard Gumbel noise (V,) (Gumbel-max trick)."""
    if temperature < GREEDY_BELOW:
        return int(np.argmax(logits))
    return int(np.argmax(filter_logits(logits, temperature, top_k, top_p) + noise))
