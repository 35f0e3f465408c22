"""The fully connected layer every projection of the model uses: y = x @ kernel + bias.

It is `flax.nnx.Linear` (the same parameters, names and initialisers, so checkpoints and the
Hugging Face export see no difference), applied to every token as one row of a matrix:

    x (batch, T, in) -> rows (batch * T, in) -> rows @ kernel + bias -> (batch, T, out)

The result is the same as nnx.Linear's on the 3-D input (tests/test_linear.py checks values
and gradients). The reshape only changes how XLA compiles the *backward* pass. The kernel's
gradient sums over every token, x^T @ dy with both batch and T contracted. Given 3-D arrays,
XLA's CPU backend first transposes the whole (batch, T, out) gradient in memory, then
multiplies. Given 2-D rows, it multiplies directly, as PyTorch does. Measured on 2 cores
with the small preset at 32 x 128 tokens, the whole gradient of the loss took about 1.0 s
with 3-D inputs and 0.69 s with rows (`python -m benchmarks.speed` has the training step).
"""

from __future__ import annotations

import jax
from flax import nnx


class Linear(nnx.Linear):
    """nnx.Linear over the last axis, with every leading axis (batch, T, ...) read as rows."""

    def __call__(self, x: jax.Array) -> jax.Array:
        """(..., in_features) -> (..., out_features)."""
        rows = x.reshape(-1, x.shape[-1])  # (batch * T, in_features)
        return super().__call__(rows).reshape(*x.shape[:-1], self.out_features)
