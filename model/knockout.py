"""Head knockout: switch attention heads off and see what the model does without them.

A head's output, before the output projection mixes the heads, is a (d_head,) vector per
token. Knocking the head out replaces that vector by

- zeros ("zero ablation"): as if the head had never written anything, or
- the head's mean output over a fixed set of validation jokes ("mean ablation"): the head
  still adds its usual offset to the residual stream, but no information about *this*
  text. Zeros can push the stream somewhere the later layers never saw in training; the
  mean usually does not, so mean ablation measures a head's information more fairly.

`HeadKnockout` says which heads are off and what they output instead; every attention path
(the forward pass, the prefill and the decode step) applies it with `switch_off`, so a
knockout holds while a joke is being written, too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from model.config import GPTConfig

ZERO, MEAN = "zero", "mean"  # the two kinds of knockout
MODES = (ZERO, MEAN)


class HeadKnockout(NamedTuple):
    """Which heads are off, and what they output instead (a NamedTuple: jit takes it as is).

    off: (rows, layers, heads) booleans, True where a head is switched off; rows is 1 (the
    same heads for a whole batch) or the batch size (other heads in each row).
    replacement: (layers, heads, d_head), each head's output while it is off.
    """

    off: jax.Array
    replacement: jax.Array

    def layer(self, index: int) -> tuple[jax.Array, jax.Array]:
        """This knockout within one layer: off (rows, heads) and replacement (heads, d_head)."""
        return self.off[:, index], self.replacement[index]


def no_knockout(config: GPTConfig) -> HeadKnockout:
    """Every head on: the model computes exactly what it does without any knockout."""
    shape = (config.n_layer, config.n_head)
    return HeadKnockout(np.zeros((1, *shape), bool), np.zeros((*shape, config.d_head), np.float32))


def knockout(
    config: GPTConfig, heads: Iterable[tuple[int, int]], replacement: np.ndarray | None = None
) -> HeadKnockout:
    """Switch off the (layer, head) pairs in `heads`; they output `replacement`
    ((layers, heads, d_head): the mean outputs for mean ablation), or zeros if it is None."""
    off = np.zeros((1, config.n_layer, config.n_head), bool)
    for layer, head in heads:
        off[0, layer, head] = True
    if replacement is None:
        replacement = no_knockout(config).replacement
    return HeadKnockout(off, np.asarray(replacement, np.float32))


def switch_off(heads: jax.Array, layer_knockout: tuple[jax.Array, jax.Array] | None) -> jax.Array:
    """Replace the outputs of the heads that are off; the others pass through untouched.

    heads: one layer's per-head outputs, (batch, T, heads, d_head); layer_knockout: off
    (rows, heads) and replacement (heads, d_head), from `HeadKnockout.layer`. A select,
    not a product: a head that stays on keeps its exact bits.
    """
    if layer_knockout is None:
        return heads
    off, replacement = layer_knockout
    return jnp.where(off[:, None, :, None], replacement, heads)  # (batch, T, heads, d_head)
