"""model/feed_forward.py: each activation computes its formula, with the parameters it names."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pytest
from flax import nnx

from model.config import GPTConfig
from model.feed_forward import FeedForward

CONFIG = GPTConfig(vocab_size=50, block_size=8, n_layer=2, n_head=2, d_model=16, d_ff=32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


FORMULAS = {
    # GPT-2's tanh approximation of GELU.
    "gelu": lambda h, g: 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3))),
    "relu2": lambda h, g: np.maximum(h, 0.0) ** 2,
    "swiglu": lambda h, g: g * sigmoid(g) * h,  # silu(gate(x)) * up(x)
}


def randomised(network: FeedForward, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Give every weight and bias random values (biases start at 0), and return them."""
    state = nnx.state(network, nnx.Param)
    pure = nnx.to_pure_dict(state)
    leaves, treedef = jax.tree.flatten(pure)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [0.3 * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)]
    nnx.replace_by_pure_dict(state, jax.tree.unflatten(treedef, leaves))
    nnx.update(network, state)
    return jax.tree.map(np.asarray, nnx.to_pure_dict(state))


@pytest.mark.parametrize("activation", ["gelu", "relu2", "swiglu"])
@pytest.mark.parametrize("bias", [True, False])
def test_each_activation_is_its_formula(activation, bias):
    config = dataclasses.replace(CONFIG, activation=activation, bias=bias)
    network = FeedForward(config, rngs=nnx.Rngs(0))
    p = randomised(network, seed=1)
    x = np.random.default_rng(0).normal(size=(2, 5, CONFIG.d_model)).astype(np.float32)

    def linear(name: str, inputs: np.ndarray) -> np.ndarray:
        return inputs @ p[name]["kernel"] + (p[name]["bias"] if bias else 0.0)

    gate = linear("gate", x) if activation == "swiglu" else None
    expected = linear("narrow", FORMULAS[activation](linear("widen", x), gate))
    np.testing.assert_allclose(network(x), expected, rtol=1e-4, atol=1e-5)


def test_only_swiglu_has_a_gate_and_gelu_keeps_the_names_of_exported_models():
    names = {}
    for activation in ("gelu", "relu2", "swiglu"):
        network = FeedForward(dataclasses.replace(CONFIG, activation=activation), rngs=nnx.Rngs(0))
        names[activation] = set(nnx.to_pure_dict(nnx.state(network, nnx.Param)))
    assert names["gelu"] == names["relu2"] == {"widen", "narrow"}
    assert names["swiglu"] == {"widen", "gate", "narrow"}


def test_relu2_is_zero_for_negative_inputs_and_grows_quadratically():
    config = dataclasses.replace(CONFIG, activation="relu2", bias=False)
    network = FeedForward(config, rngs=nnx.Rngs(0))
    x = np.random.default_rng(3).normal(size=(1, 4, CONFIG.d_model)).astype(np.float32)
    hidden = np.asarray(network.widen(x))
    # Doubling the input quadruples the positive hidden features and keeps the others at 0.
    np.testing.assert_allclose(network(2 * x), 4 * network(x), rtol=1e-4, atol=1e-6)
    assert (hidden < 0).any() and (hidden > 0).any()
