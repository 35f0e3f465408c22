"""Combinations of the optional components: the prefill + decode path gives the logits of the
full forward pass, and a model folder round trip is bit-identical."""

from __future__ import annotations

import dataclasses
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from model.checkpoint import CheckpointError, load_model, parameters_to_flat, save_model
from model.config import ACTIVATION_KINDS, NORM_KINDS, POSITIONAL_KINDS, GPTConfig
from model.gpt import GPT

BASE = GPTConfig(vocab_size=400, block_size=12, n_layer=2, n_head=2, d_model=16, d_ff=32)
# (norm, activation, qk_norm, bias, positional): 72 in all. Every fifth of them (5 is prime to
# each axis' length, so every value of every axis occurs, in changing company) and the three
# that standard architectures name keep the suite within its time.
EVERY = list(
    itertools.product(NORM_KINDS, ACTIVATION_KINDS, (False, True), (True, False), POSITIONAL_KINDS)
)
GPT2 = ("layernorm", "gelu", False, True, "learned")
LLAMA = ("rmsnorm", "swiglu", False, False, "rope")
QWEN3 = ("rmsnorm", "swiglu", True, False, "rope")
COMBINATIONS = sorted({*EVERY[::5], GPT2, LLAMA, QWEN3})
for axis in range(5):
    assert {c[axis] for c in COMBINATIONS} == {c[axis] for c in EVERY}


def combination_id(combination: tuple) -> str:
    norm, activation, qk_norm, bias, positional = combination
    return "-".join([norm, activation, "qknorm" if qk_norm else "noqk",
                     "bias" if bias else "nobias", positional])  # fmt: skip


def randomised_model(combination: tuple, vocab_size: int = BASE.vocab_size) -> GPT:
    """A model of this combination whose every parameter is random.

    At initialisation biases are 0 and norm scales 1: a bias left out, or a query norm's
    scale used for the keys, would change nothing. Random values make every one count.
    """
    norm, activation, qk_norm, bias, positional = combination
    config = dataclasses.replace(BASE, vocab_size=vocab_size, norm=norm, activation=activation,
                                 qk_norm=qk_norm, bias=bias, positional=positional)  # fmt: skip
    model = GPT(config, rngs=nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(nnx.to_pure_dict(state))
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noisy = [p + 0.1 * jax.random.normal(k, p.shape) for k, p in zip(keys, leaves, strict=True)]
    nnx.replace_by_pure_dict(state, jax.tree.unflatten(treedef, noisy))
    nnx.update(model, state)
    return model


@pytest.mark.parametrize("combination", COMBINATIONS, ids=combination_id)
def test_prefill_then_decode_gives_the_logits_of_the_full_forward_pass(combination):
    model = randomised_model(combination)
    sequence = jax.random.randint(jax.random.key(2), (2, BASE.block_size), 0, BASE.vocab_size)
    full_logits, _ = model(sequence)  # (2, T, V)
    prompt = 5
    padded = sequence.at[:, prompt:].set(0)  # what follows the prompt is padding
    logits, _, cache = model.prefill(padded, jnp.int32(prompt))
    np.testing.assert_allclose(logits, full_logits[:, prompt - 1], atol=1e-5, rtol=1e-5)
    for position in range(prompt, BASE.block_size):
        logits, _, cache = model.decode_step(sequence[:, position], jnp.int32(position), cache)
        np.testing.assert_allclose(logits, full_logits[:, position], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("combination", COMBINATIONS, ids=combination_id)
def test_a_model_folder_round_trip_is_bit_identical(combination, tmp_path, joke_tokenizer):
    model = randomised_model(combination, vocab_size=joke_tokenizer.get_vocab_size())
    folder = save_model(model, joke_tokenizer, tmp_path / "model", {})
    loaded, _, _ = load_model(folder)
    assert loaded.config == model.config
    saved, restored = parameters_to_flat(model), parameters_to_flat(loaded)
    assert sorted(saved) == sorted(restored)
    for name, value in saved.items():
        np.testing.assert_array_equal(restored[name], value, err_msg=name)
    tokens = jax.random.randint(jax.random.key(3), (2, BASE.block_size), 0, BASE.vocab_size)
    np.testing.assert_array_equal(loaded(tokens)[0], model(tokens)[0])


def test_a_folder_from_before_the_modern_fields_loads_as_the_classic_model(
    tmp_path, joke_tokenizer
):
    model = randomised_model(GPT2, vocab_size=joke_tokenizer.get_vocab_size())
    folder = save_model(model, joke_tokenizer, tmp_path / "model", {})
    config = json.loads((folder / "config.json").read_text())
    older = {k: v for k, v in config.items() if k not in ("norm", "activation", "qk_norm", "bias")}
    (folder / "config.json").write_text(json.dumps(older))  # as the first releases wrote it
    loaded, _, _ = load_model(folder, verify=False)
    c = loaded.config
    assert (c.norm, c.activation, c.qk_norm, c.bias, c.positional) == GPT2


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("bias", True, r"missing \['blocks\.0\.attention\.key\.bias'"),
        ("qk_norm", True, r"missing \['blocks\.0\.attention\.key_norm\.scale'"),
        ("activation", "gelu", r"unexpected \['blocks\.0\.feed_forward\.gate\.kernel'"),
    ],
)
def test_a_config_json_that_does_not_describe_the_weights_is_refused(
    field, value, message, tmp_path, joke_tokenizer
):
    model = randomised_model(LLAMA, vocab_size=joke_tokenizer.get_vocab_size())
    folder = save_model(model, joke_tokenizer, tmp_path / "model", {})
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, field: value}))
    with pytest.raises(CheckpointError, match=message):
        load_model(folder, verify=False)  # the manifest would catch the edit first
