"""The explainer's analyses, over the model alone: the trace, the logit lens, head knockout,
the importance map and branches (model/trace.py, lens.py, knockout.py, ablation.py)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from model.ablation import importance_map, knockout_effect, mean_head_outputs
from model.config import GPTConfig
from model.generate import Generator, SamplingSettings
from model.gpt import GPT
from model.knockout import knockout, no_knockout
from model.lens import commitment_layer, lens_log_probs, read_lens
from model.sampling import sampling_probabilities
from model.trace import trace

END = 0
CONFIG = GPTConfig(vocab_size=50, block_size=32, n_layer=3, n_head=2, d_model=16, d_ff=32)
VARIANTS = {
    "gpt2": {},
    "rope-rmsnorm-swiglu-qknorm": {
        "positional": "rope", "norm": "rmsnorm", "activation": "swiglu", "qk_norm": True,
        "bias": False,
    },
}  # fmt: skip
SETTINGS = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=12, seed=3)


def make_model(variant: str = "gpt2", seed: int = 0) -> GPT:
    config = dataclasses.replace(CONFIG, **VARIANTS[variant])
    model = GPT(config, rngs=nnx.Rngs(seed))
    # Random weights at init_std 0.02 give near-uniform predictions; larger ones give a
    # model with opinions, so that knockouts and the lens have something to change.
    state = nnx.state(model, nnx.Param)
    scaled = jax.tree.map(lambda p: p * 8 if p.ndim == 2 else p, state)
    nnx.update(model, scaled)
    return model


def tokens(length: int, seed: int = 0) -> jax.Array:
    ids = np.random.default_rng(seed).integers(1, CONFIG.vocab_size, (1, length))
    return jnp.asarray(ids, jnp.int32)


# ---------------------------------------------------------------- the trace


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_trace_computes_what_the_model_computes(variant):
    model, t = make_model(variant), tokens(20)
    logits, attention = model(t, return_attention=True)
    traced = trace(model, t)
    np.testing.assert_allclose(traced.logits, logits, atol=1e-5)
    np.testing.assert_allclose(traced.attention, attention, atol=1e-6)
    # The stream after the last block is what the output layer reads.
    np.testing.assert_allclose(model.head(traced.residuals[:, -1]), logits, atol=1e-5)
    # Each block adds attention then feed-forward: the attention part is the merged heads.
    block = model.blocks[1]
    merged = block.attention.merge_heads(traced.head_outputs[:, 1])
    np.testing.assert_allclose(traced.attention_outputs[:, 1], merged, atol=1e-6)


# ---------------------------------------------------------------- the logit lens


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_last_layers_lens_is_the_models_output(variant):
    model, t = make_model(variant), tokens(16)
    logits, _ = model(t)
    lens = lens_log_probs(model, trace(model, t).residuals)  # (1, L+1, T, V)
    assert lens.shape == (1, CONFIG.n_layer + 1, 16, CONFIG.vocab_size)
    np.testing.assert_allclose(lens[:, -1], jax.nn.log_softmax(logits), atol=1e-5)


def test_each_layers_lens_normalises_that_layers_stream_with_its_own_statistics():
    model, t = make_model(), tokens(12)
    residuals = trace(model, t).residuals  # (1, L+1, T, d)
    norm = model.final_norm
    for layer in range(CONFIG.n_layer + 1):
        x = np.asarray(residuals[0, layer], np.float64)  # (T, d)
        normed = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
        normed = normed * np.asarray(norm.scale[...]) + np.asarray(norm.bias[...])
        scores = normed @ np.asarray(model.token_embedding.embedding[...]).T  # tied output
        expected = scores - np.log(np.exp(scores).sum(-1, keepdims=True))
        lens = lens_log_probs(model, residuals)[0, layer]
        np.testing.assert_allclose(lens, expected, atol=1e-4)
    # The layers' statistics really differ: reusing the last layer's would read another lens.
    spread = np.asarray(residuals[0]).std(-1).mean(-1)  # (L+1,)
    assert spread.max() / spread.min() > 1.5


def test_reading_the_lens_ranks_the_chosen_token_and_finds_the_commitment_layer():
    log_probs = np.log(
        np.array(
            [
                [0.1, 0.6, 0.2, 0.1],  # layer 0: top 1, chosen (2) second
                [0.5, 0.1, 0.3, 0.1],  # layer 1: top 0, chosen second
                [0.1, 0.1, 0.7, 0.1],  # layer 2: chosen on top
                [0.05, 0.05, 0.8, 0.1],  # layer 3 (the output): chosen on top
            ]
        )
    )
    reading = read_lens(log_probs, chosen=2, top=2)
    assert reading.top_ids.tolist() == [[1, 2], [0, 2], [2, 0], [2, 3]]
    np.testing.assert_allclose(reading.top_probabilities[2], [0.7, 0.1])
    np.testing.assert_allclose(reading.chosen_probability, [0.2, 0.3, 0.7, 0.8])
    assert reading.chosen_rank.tolist() == [1, 1, 0, 0]
    assert reading.commitment == 2
    assert commitment_layer(np.array([2, 2, 2]), 2) == 0
    assert commitment_layer(np.array([2, 0, 2]), 2) == 2
    assert commitment_layer(np.array([2, 2, 0]), 2) is None  # the output chose otherwise


# ---------------------------------------------------------------- head knockout


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_knocking_out_no_head_changes_nothing_bit_for_bit(variant):
    model, t = make_model(variant), tokens(20)
    plain, plain_attention = model(t, return_attention=True)
    kept, kept_attention = model(t, return_attention=True, knockout=no_knockout(model.config))
    assert np.array_equal(plain, kept) and np.array_equal(plain_attention, kept_attention)
    zeros_off = knockout(model.config, [])  # nothing listed: nothing off
    assert np.array_equal(trace(model, t, zeros_off).residuals, trace(model, t).residuals)


def test_a_knockout_changes_only_what_comes_after_the_head():
    model, t = make_model(), tokens(20)
    clean = trace(model, t)
    knocked = trace(model, t, knockout(model.config, [(1, 0)]))
    # The stream entering layers 0 and 1 and layer 1's attention pattern are untouched ...
    assert np.array_equal(knocked.residuals[:, :2], clean.residuals[:, :2])
    assert np.array_equal(knocked.attention[:, :2], clean.attention[:, :2])
    # ... the other head of layer 1 too; the head itself outputs zeros ...
    assert np.array_equal(knocked.head_outputs[:, 1, :, 1], clean.head_outputs[:, 1, :, 1])
    assert not np.asarray(knocked.head_outputs[:, 1, :, 0]).any()
    # ... and everything after it changes.
    assert not np.allclose(knocked.residuals[:, 2], clean.residuals[:, 2], atol=1e-4)
    assert not np.allclose(knocked.logits, clean.logits, atol=1e-4)


def test_zero_ablation_of_a_whole_layer_leaves_only_the_output_bias():
    model, t = make_model(), tokens(10)
    heads = [(0, h) for h in range(CONFIG.n_head)]
    knocked = trace(model, t, knockout(model.config, heads))
    bias = np.asarray(model.blocks[0].attention.output.bias[...])
    np.testing.assert_allclose(knocked.attention_outputs[0, 0], np.tile(bias, (10, 1)), atol=1e-6)


def test_mean_ablation_puts_the_heads_mean_output_in_its_place():
    model = make_model()
    jokes = [[END, *np.asarray(tokens(n, seed=n))[0].tolist()] for n in (5, 9, 14)]
    means = mean_head_outputs(model, jokes, pad_id=END)
    # The reference: each joke alone, its positions pooled.
    traced = nnx.jit(trace)
    outputs = [np.asarray(traced(model, jnp.asarray([j])).head_outputs[0]) for j in jokes]
    pooled = np.concatenate([o.transpose(1, 0, 2, 3) for o in outputs])  # (positions, L, H, dh)
    np.testing.assert_allclose(means, pooled.mean(axis=0), atol=1e-5)
    knocked = trace(model, tokens(8), knockout(model.config, [(2, 1)], means))
    np.testing.assert_allclose(knocked.head_outputs[0, 2, :, 1], np.tile(means[2, 1], (8, 1)))


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_the_importance_map_equals_single_knockouts_done_one_by_one(mode):
    model, t, position = make_model(), tokens(16), 11
    chosen = int(np.asarray(t)[0, position + 1])
    replacement = (
        np.zeros((CONFIG.n_layer, CONFIG.n_head, CONFIG.d_head), np.float32)
        if mode == "zero"
        else mean_head_outputs(model, [[END, *np.asarray(t)[0].tolist()]], END)
    )
    grid = np.asarray(nnx.jit(importance_map)(model, t, position, chosen, replacement))
    assert grid.shape == (CONFIG.n_layer, CONFIG.n_head)
    expected = jax.nn.log_softmax(model(t)[0][0, position])  # the model's own prediction
    effect = nnx.jit(knockout_effect)
    for layer in range(CONFIG.n_layer):
        for head in range(CONFIG.n_head):
            heads_off = knockout(model.config, [(layer, head)], replacement)
            clean, knocked = effect(model, t, position, heads_off)
            one_by_one = float(knocked[chosen] - clean[chosen])
            assert grid[layer, head] == pytest.approx(one_by_one, abs=1e-4)
            np.testing.assert_allclose(clean, expected, atol=1e-5)
    assert np.abs(grid).max() > 1e-3  # the heads matter to this model


# ---------------------------------------------------------------- writing: knockouts, branches


def test_each_written_step_reports_its_probabilities_before_and_after_sampling():
    model = make_model()
    settings = dataclasses.replace(SETTINGS, temperature=0.7, top_k=5, top_p=0.9)
    steps = [s for s in Generator(model, END).stream([3, 4], settings) if s.sampled]
    assert steps
    full, _ = model(jnp.asarray([[END, 3, 4, *[s.token for s in steps]]]))
    for step in steps:
        scores = np.asarray(full[0, step.position - 1])
        model_p = np.asarray(jax.nn.softmax(scores))
        assert step.chosen_probability == pytest.approx(model_p[step.token], rel=1e-4)
        drawn_from = sampling_probabilities(scores, 0.7, 5, 0.9)
        np.testing.assert_allclose(step.sampling, drawn_from[step.candidates], atol=1e-5)
        assert step.sampling[0] >= step.probabilities[0]  # sharpened and renormalised
        assert not step.forced


def test_writing_with_heads_off_reads_as_the_knocked_out_model_predicts():
    model = make_model()
    heads_off = knockout(model.config, [(0, 1), (2, 0)])
    generator = Generator(model, END)
    steps = list(generator.stream([5, 6, 7], SETTINGS, knockout=heads_off))
    written = [s for s in steps if s.sampled]
    assert written
    ids = jnp.asarray([[s.token for s in steps]])
    knocked_logits, _ = model(ids, knockout=heads_off)
    for step in written:
        p = jax.nn.softmax(knocked_logits[0, step.position - 1])[step.token]
        assert step.chosen_probability == pytest.approx(float(p), rel=1e-4)
    plain = [s.token for s in generator.stream([5, 6, 7], SETTINGS) if s.sampled]
    assert [s.token for s in written] != plain  # the heads mattered to this joke


def test_a_branch_replays_the_joke_up_to_its_fork_then_writes_on_from_the_forced_token():
    generator = Generator(make_model(), END)
    trunk = [s.token for s in generator.stream([5], SETTINGS) if s.sampled]
    assert len(trunk) >= 6
    # Forcing the joke's own tokens writes the joke itself.
    same = generator.generate([5], SETTINGS, forced=trunk[:4])
    assert same.token_ids[same.prompt_length :] == trunk
    assert same.forced == [True] * 4 + [False] * (len(trunk) - 4)
    # Forcing another token at step 3 keeps steps 0-2, takes it, and writes on seeded.
    other = next(t for t in range(1, CONFIG.vocab_size) if t != trunk[3])
    branch = generator.generate([5], SETTINGS, forced=[*trunk[:3], other])
    written = branch.token_ids[branch.prompt_length :]
    assert written[:4] == [*trunk[:3], other]
    assert generator.generate([5], SETTINGS, forced=[*trunk[:3], other]).token_ids == (
        branch.token_ids
    )


# ---------------------------------------------------------------- what changed in a branch


def test_the_attention_shift_is_zero_for_the_same_joke_and_counts_moved_weight():
    from model.branching import attention_shift, fork_position

    generator = Generator(make_model(), END)
    trunk = generator.generate([5], SETTINGS)
    assert not attention_shift(trunk.attention, trunk.attention, 3).any()
    written = trunk.token_ids[trunk.prompt_length :]
    other = next(t for t in range(1, CONFIG.vocab_size) if t != written[2])
    branch = generator.generate([5], SETTINGS, forced=[*written[:2], other])
    fork = fork_position(trunk.token_ids, branch.token_ids)
    assert fork == trunk.prompt_length + 2
    shift = attention_shift(trunk.attention, branch.attention, fork)
    assert shift.shape == (CONFIG.n_layer, CONFIG.n_head)
    assert (shift >= 0).all() and (shift <= 1 + 1e-6).all() and shift.max() > 0.01
    # By hand for one head: half the summed absolute difference, averaged over 3 rows.
    a, b = trunk.attention[1, 0], branch.attention[1, 0]
    by_hand = np.mean([0.5 * np.abs(a[q] - b[q]).sum() for q in range(fork, fork + 3)])
    assert shift[1, 0] == pytest.approx(by_hand, abs=1e-6)
    # Two rows with no weight in common are 1 apart.
    one_hot = np.zeros((1, 1, 2, 2))
    one_hot[0, 0, 1, 0] = 1
    other_hot = np.zeros((1, 1, 2, 2))
    other_hot[0, 0, 1, 1] = 1
    assert attention_shift(one_hot, other_hot, 1, steps=1)[0, 0] == pytest.approx(1.0)
