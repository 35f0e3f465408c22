"""The prompt's prefill: one compiled call that gives what feeding it token by token gave."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from model.config import GPTConfig
from model.generate import (
    CANDIDATES,
    Generator,
    SamplingSettings,
    Step,
    fit_prompt,
    prefill_lengths,
    prompt_room,
)
from model.gpt import GPT
from model.sampling import ranked, sample_token, softmax

END = 0
CONFIG = GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, d_model=16, d_ff=32)
SETTINGS = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=10)
ROOM = prompt_room(CONFIG.block_size, SETTINGS.max_new_tokens)  # 32 - 1 - 8 = 23
prefill = jax.jit(lambda model, tokens, length: model.prefill(tokens, length))
decode_step = jax.jit(
    lambda model, token, position, cache: model.decode_step(token, position, cache)
)


def make_model(positional: str = "learned") -> GPT:
    return GPT(dataclasses.replace(CONFIG, positional=positional), rngs=nnx.Rngs(0))


def prompt(length: int) -> list[int]:
    return [1 + (7 * i) % (CONFIG.vocab_size - 1) for i in range(length)]  # never END


def stepwise_stream(
    model: GPT, prompt_ids: list[int], settings: SamplingSettings
) -> Iterator[Step]:
    """The reference: the generator before the prefill, feeding the prompt one token per call."""
    block = model.config.block_size
    prefix = [END, *fit_prompt(prompt_ids, block, settings.max_new_tokens)]
    budget = max(0, min(settings.max_new_tokens, block - len(prefix)))
    key = jax.random.key(settings.seed)
    cache = model.init_cache(1)
    sequence, generated, candidates, probabilities = list(prefix), 0, None, None
    position = 0
    while position < len(sequence):
        logits, attention, cache = decode_step(
            model, jnp.asarray([sequence[position]], jnp.int32), jnp.int32(position), cache
        )
        noise = jax.random.gumbel(jax.random.fold_in(key, position), logits.shape)
        yield Step(
            position=position,
            token=sequence[position],
            attention=np.asarray(attention)[0, :, :, : position + 1],
            sampled=position >= len(prefix),
            candidates=candidates,
            probabilities=probabilities,
        )
        position += 1
        if position == len(sequence) and generated < budget:
            scores = np.asarray(logits)[0]
            chosen = sample_token(
                scores, np.asarray(noise)[0], settings.temperature, settings.top_k, settings.top_p
            )
            if chosen == END:
                return
            sequence.append(chosen)
            generated += 1
            candidates = ranked(scores, CANDIDATES)
            probabilities = softmax(scores)[candidates]


def assert_same_steps(actual: list[Step], expected: list[Step]) -> None:
    assert [(s.position, s.token, s.sampled) for s in actual] == [
        (s.position, s.token, s.sampled) for s in expected
    ]
    for a, e in zip(actual, expected, strict=True):
        assert a.attention.shape == e.attention.shape
        np.testing.assert_allclose(a.attention, e.attention, atol=1e-5)
        if e.candidates is None:
            assert a.candidates is None and a.probabilities is None
        else:
            assert a.candidates.tolist() == e.candidates.tolist()
            np.testing.assert_allclose(a.probabilities, e.probabilities, atol=1e-5)


@pytest.mark.parametrize("positional", ["learned", "rope", "sinusoidal"])
def test_the_prefilled_stream_gives_the_same_steps_as_feeding_the_prompt_token_by_token(
    positional,
):
    model = make_model(positional)
    generator = Generator(model, END)
    # Empty, short, exactly one padded length (16 with the start token), the whole prompt
    # room, and longer than the room (its first tokens are dropped).
    lengths = (0, 3, 15, ROOM, ROOM + 9)
    assert prefill_lengths(CONFIG.block_size) == (1, 16, 32)
    written = 0
    for length in lengths:
        for seed in range(3):
            settings = dataclasses.replace(SETTINGS, seed=seed)
            actual = list(generator.stream(prompt(length), settings))
            expected = list(stepwise_stream(model, prompt(length), settings))
            assert_same_steps(actual, expected)
            written += sum(s.sampled for s in actual)
    assert written > 20  # the comparison covered new tokens, not only prompts


@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_prefill_fills_the_cache_as_step_by_step_decoding_does(positional):
    model = make_model(positional)
    tokens = jnp.asarray([prompt(11)], jnp.int32)  # (1, 11)
    padded = jnp.pad(tokens, ((0, 0), (0, 16 - 11)), constant_values=END)  # (1, 16)
    logits, attention, cache = prefill(model, padded, jnp.int32(11))
    assert attention.shape == (1, CONFIG.n_layer, CONFIG.n_head, 16, 16)
    stepwise = model.init_cache(1)
    for position in range(11):
        step_logits, rows, stepwise = decode_step(
            model, tokens[:, position], jnp.int32(position), stepwise
        )
        np.testing.assert_allclose(
            attention[:, :, :, position, : position + 1], rows[..., : position + 1], atol=1e-5
        )
    np.testing.assert_allclose(logits, step_logits, atol=1e-5)  # at the last prompt position
    for (keys, values), (step_keys, step_values) in zip(cache, stepwise, strict=True):
        assert keys.shape == values.shape == step_keys.shape  # (1, heads, block_size, d_head)
        np.testing.assert_allclose(keys[:, :, :11], step_keys[:, :, :11], atol=1e-5)
        np.testing.assert_allclose(values[:, :, :11], step_values[:, :, :11], atol=1e-5)
        assert np.all(np.asarray(keys[:, :, 16:]) == 0)  # past the padded length: empty


@pytest.mark.parametrize("positional", ["learned", "rope", "sinusoidal"])
def test_decoding_after_a_prefill_with_junk_padding_matches_the_full_forward_pass(positional):
    model = make_model(positional)
    sequence = jnp.asarray([prompt(20)], jnp.int32)  # 9 prompt tokens, then 11 decoded ones
    junk = jax.random.randint(jax.random.key(1), (1, CONFIG.block_size), 0, CONFIG.vocab_size)
    padded = junk.at[:, :9].set(sequence[:, :9])  # the padding is anything at all
    full_logits, full_attention = model(sequence, return_attention=True)
    logits, attention, cache = prefill(model, padded, jnp.int32(9))
    np.testing.assert_allclose(logits, full_logits[:, 8], atol=1e-5)
    np.testing.assert_allclose(
        attention[:, :, :, :9, :9], full_attention[:, :, :, :9, :9], atol=1e-5
    )
    for position in range(9, 20):  # each step overwrites its slot before reading it
        logits, rows, cache = decode_step(model, sequence[:, position], jnp.int32(position), cache)
        np.testing.assert_allclose(logits, full_logits[:, position], atol=1e-5)
        np.testing.assert_allclose(
            rows[..., : position + 1],
            full_attention[:, :, :, position, : position + 1],
            atol=1e-5,
        )
        assert np.all(np.asarray(rows[..., position + 1 :]) == 0)  # junk slots are masked


def count_calls(generator: Generator, name: str) -> list[int]:
    calls: list[int] = []
    compiled = getattr(generator, name)

    def counted(*args):
        calls.append(1)
        return compiled(*args)

    counted._cache_size = compiled._cache_size  # type: ignore[attr-defined]
    setattr(generator, name, counted)
    return calls


def test_the_prompt_is_one_compiled_call_and_new_lengths_do_not_compile_again():
    generator = Generator(make_model(), END)
    prefills, steps = count_calls(generator, "_prefill"), count_calls(generator, "_step")
    result = generator.generate(prompt(20), dataclasses.replace(SETTINGS, seed=4))
    written = len(result.token_ids) - result.prompt_length
    assert result.prompt_length == 21 and written > 0
    assert (len(prefills), len(steps)) == (1, written)  # not one call per prompt token
    assert generator._prefill._cache_size() == 1  # padded to 32
    for length in (3, 9, 14, 0, 22):  # padded to 16, 16, 16, 1, 32: one new shape
        generator.generate(prompt(length), dataclasses.replace(SETTINGS, max_new_tokens=3))
    assert generator._prefill._cache_size() == len(prefill_lengths(CONFIG.block_size)) == 3
    assert generator._step._cache_size() == 1


def test_prefill_lengths_are_few_and_cover_the_context():
    assert prefill_lengths(128) == (1, 16, 32, 64, 128)
    assert prefill_lengths(100) == (1, 16, 32, 64, 100)
    assert prefill_lengths(8) == (1, 8)
    generator = Generator(make_model(), END)
    assert [generator.prefill_length(n) for n in (1, 2, 16, 17, 32)] == [1, 16, 16, 32, 32]
