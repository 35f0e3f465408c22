"""model/linear.py: the rows layer computes what nnx.Linear computes, values and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from model.linear import Linear


def pair(use_bias: bool) -> tuple[Linear, nnx.Linear]:
    """A rows Linear and an nnx.Linear with the same random kernel and bias."""
    rows = Linear(6, 5, use_bias=use_bias, rngs=nnx.Rngs(0))
    plain = nnx.Linear(6, 5, use_bias=use_bias, rngs=nnx.Rngs(1))
    keys = jax.random.split(jax.random.key(2), 2)
    rows.kernel[...] = jax.random.normal(keys[0], (6, 5))
    if use_bias:
        rows.bias[...] = jax.random.normal(keys[1], (5,))  # biases start at 0
    nnx.update(plain, nnx.state(rows, nnx.Param))
    return rows, plain


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("shape", [(6,), (3, 6), (2, 4, 6), (2, 3, 4, 6)])
def test_same_values_as_nnx_linear(use_bias, shape):
    rows, plain = pair(use_bias)
    x = jax.random.normal(jax.random.key(3), shape)
    np.testing.assert_allclose(rows(x), plain(x), rtol=1e-6, atol=1e-6)
    assert rows(x).shape == (*shape[:-1], 5)


@pytest.mark.parametrize("use_bias", [True, False])
def test_same_gradients_as_nnx_linear(use_bias):
    """The backward pass is what the rows layout changes, so its gradients are checked too."""
    rows, plain = pair(use_bias)
    x = jax.random.normal(jax.random.key(4), (2, 4, 6))
    target = jax.random.normal(jax.random.key(5), (2, 4, 5))

    def loss(layer: nnx.Module, x: jax.Array) -> jax.Array:
        return jnp.sum((layer(x) - target) ** 2)

    grad = nnx.grad(loss, argnums=(0, 1))
    (rows_params, rows_x), (plain_params, plain_x) = grad(rows, x), grad(plain, x)
    np.testing.assert_allclose(rows_x, plain_x, rtol=1e-5, atol=1e-5)
    for got, want in zip(jax.tree.leaves(rows_params), jax.tree.leaves(plain_params), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_same_parameter_names_as_nnx_linear():
    """Checkpoints and the Hugging Face export address the weights by these names."""
    rows, plain = pair(use_bias=True)
    assert nnx.to_pure_dict(nnx.state(rows)).keys() == nnx.to_pure_dict(nnx.state(plain)).keys()
