"""Sampling settings and the compiled incremental generator."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from model.config import GPTConfig
from model.generate import CANDIDATES, Generator, SamplingSettings, fit_prompt, prompt_room
from model.gpt import GPT
from model.sampling import filter_logits, ranked, sample_token, softmax

LOGITS = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
END = 0


def kept(temperature=1.0, top_k=0, top_p=1.0) -> list[int]:
    filtered = filter_logits(LOGITS, temperature, top_k, top_p)
    return [i for i in range(4) if np.isfinite(filtered[i])]


def test_top_k_keeps_exactly_the_k_most_likely():
    assert kept(top_k=0) == [0, 1, 2, 3]
    assert kept(top_k=1) == [0]
    assert kept(top_k=3) == [0, 1, 2]
    assert kept(top_k=9) == [0, 1, 2, 3]  # more than the vocabulary keeps all


def test_top_p_keeps_the_smallest_set_reaching_p():
    assert kept(top_p=0.5) == [0]
    assert kept(top_p=0.6) == [0, 1]
    assert kept(top_p=0.8) == [0, 1]
    assert kept(top_p=0.81) == [0, 1, 2]
    assert kept(top_p=0.01) == [0]  # the most likely token always survives


def test_top_p_counts_probability_over_the_whole_vocabulary_not_only_the_top_k():
    # Token 0 holds 0.5 of the whole vocabulary's mass, below 0.55, so token 1 stays; over
    # the top 2 alone it would hold 0.625 and token 1 would go.
    assert kept(top_k=2, top_p=0.55) == [0, 1]


def test_ties_rank_the_lower_id_first():
    scores = np.array([1.0, 3.0, 3.0, 0.0, 3.0], dtype=np.float32)
    assert ranked(scores, 2).tolist() == [1, 2]
    assert ranked(scores, 5).tolist() == [1, 2, 4, 0, 3]
    assert kept_ids(filter_logits(scores, 1.0, 2, 1.0)) == [1, 2]


def kept_ids(filtered: np.ndarray) -> list[int]:
    return np.flatnonzero(np.isfinite(filtered)).tolist()


def test_filter_matches_a_plain_full_sort_on_random_scores():
    rng = np.random.default_rng(0)
    for _ in range(200):
        scores = rng.normal(scale=3.0, size=64).astype(np.float32)
        temperature, top_k, top_p = rng.uniform(0.2, 2.0), int(rng.integers(0, 70)), rng.uniform()
        scaled = scores / np.float32(temperature)
        order = np.argsort(-scaled, kind="stable")
        probs = np.exp(scaled - scaled.max()) / np.exp(scaled - scaled.max()).sum()
        before = np.cumsum(probs[order]) - probs[order]
        expected = [
            int(token)
            for rank, token in enumerate(order)
            if (top_k == 0 or rank < top_k) and before[rank] < top_p
        ]
        assert kept_ids(filter_logits(scores, temperature, top_k, top_p)) == sorted(expected)


def test_temperature_sharpens_and_flattens():
    def probs(t: float) -> np.ndarray:
        return softmax(filter_logits(LOGITS, t, 0, 1.0))

    np.testing.assert_allclose(probs(1.0), [0.5, 0.3, 0.15, 0.05], rtol=1e-5)
    assert probs(0.5)[0] > 0.5 > probs(2.0)[0]


def test_zero_temperature_is_greedy_and_sampling_follows_the_distribution():
    noises = np.asarray(jax.random.gumbel(jax.random.key(0), (4000, 4)))
    greedy = {sample_token(LOGITS, noise, 0.0, 0, 1.0) for noise in noises}
    assert greedy == {0}
    drawn = [sample_token(LOGITS, noise, 1.0, 0, 1.0) for noise in noises]
    frequencies = np.bincount(drawn, minlength=4) / 4000
    np.testing.assert_allclose(frequencies, [0.5, 0.3, 0.15, 0.05], atol=0.03)
    assert {sample_token(LOGITS, noise, 1.0, 2, 1.0) for noise in noises} == {0, 1}


def test_candidates_are_the_most_likely_tokens_with_their_probabilities():
    ids = ranked(LOGITS, 3)
    assert ids.tolist() == [0, 1, 2]
    np.testing.assert_allclose(softmax(LOGITS)[ids], [0.5, 0.3, 0.15], rtol=1e-5)


def make_generator(block_size: int = 32) -> Generator:
    config = GPTConfig(
        vocab_size=50, block_size=block_size, n_layer=2, n_head=2, d_model=16, d_ff=32
    )
    return Generator(GPT(config, rngs=nnx.Rngs(0)), end_of_joke=END)


def test_same_seed_same_joke_and_different_seeds_differ():
    generator = make_generator()
    settings = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=20, seed=7)
    a = generator.generate([3, 4, 5], settings)
    b = generator.generate([3, 4, 5], settings)
    assert a.token_ids == b.token_ids
    others = {
        tuple(generator.generate([3, 4, 5], SamplingSettings(seed=s, temperature=1.0)).token_ids)
        for s in range(5)
    }
    assert len(others) > 1


def test_generation_returns_the_whole_sequence_with_its_attention():
    generator = make_generator()
    result = generator.generate([3, 4, 5], SamplingSettings(max_new_tokens=10, seed=1))
    length = len(result.token_ids)
    assert result.token_ids[:4] == [END, 3, 4, 5]
    assert result.prompt_length == 4
    assert 4 < length <= 14
    assert result.attention.shape == (2, 2, length, length)
    np.testing.assert_allclose(result.attention.sum(-1), 1.0, atol=1e-5)
    assert len(result.candidates) == length - 4
    for (ids, probs), token in zip(result.candidates, result.token_ids[4:], strict=True):
        assert len(ids) == CANDIDATES and probs == sorted(probs, reverse=True)
        assert token not in (END,)


def test_generation_equals_one_full_forward_pass_over_the_final_sequence():
    generator = make_generator()
    result = generator.generate(
        [7, 8], SamplingSettings(max_new_tokens=25, seed=3, temperature=1.0)
    )
    model = GPT(generator.config, rngs=nnx.Rngs(0))  # the same seed: the same weights
    logits, attention = model(jnp.asarray([result.token_ids]), return_attention=True)
    np.testing.assert_allclose(result.attention, np.asarray(attention[0]), atol=1e-5)
    probs = jax.nn.softmax(logits[0], axis=-1)
    for offset, (ids, top) in enumerate(result.candidates):
        position = result.prompt_length - 1 + offset  # the step that predicted this token
        np.testing.assert_allclose(np.asarray(probs[position, ids]), top, atol=1e-5)


def test_a_long_prompt_keeps_the_start_token_and_leaves_room_to_write():
    generator = make_generator(block_size=16)
    prompt = list(range(1, 40))  # far longer than the context (END is not among them)
    result = generator.generate(prompt, SamplingSettings(max_new_tokens=100, seed=2))
    room = prompt_room(16, 100)  # 16 - 1 - 16 // 4 = 11 prompt tokens
    assert room == 11
    assert result.token_ids[0] == END  # the start token is never the one dropped
    assert result.token_ids[1 : 1 + room] == prompt[-room:]
    assert result.trimmed == len(prompt) - room and result.prompt_length == 1 + room
    assert len(result.candidates) == len(result.token_ids) - result.prompt_length
    assert any(
        len(generator.generate(prompt, SamplingSettings(max_new_tokens=100, seed=s)).token_ids)
        > 1 + room
        for s in range(5)
    )  # something is written
    assert len(generator.generate([1, 2], SamplingSettings(max_new_tokens=100)).token_ids) <= 16


def test_a_short_prompt_is_kept_whole():
    assert fit_prompt([1, 2, 3], block_size=16, max_new_tokens=100) == [1, 2, 3]
    assert fit_prompt(list(range(20)), block_size=16, max_new_tokens=2) == list(range(7, 20))


def test_no_recompilation_for_new_prompts_lengths_or_settings():
    generator = make_generator()
    generator.generate([1], SamplingSettings(max_new_tokens=3))
    compiled = generator._step._cache_size()
    for prompt, settings in [
        ([2, 3, 4, 5, 6], SamplingSettings(temperature=0.3, top_k=5, top_p=0.5, max_new_tokens=9)),
        ([], SamplingSettings(temperature=1.7, top_k=0, top_p=1.0, max_new_tokens=20, seed=99)),
    ]:
        generator.generate(prompt, settings)
    assert generator._step._cache_size() == compiled == 1
