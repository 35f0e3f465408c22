"""training/evaluation.py: the one validation loop of training runs and evaluate.py.

Its figures must be the exact negative log-likelihood of the validation jokes, each read alone
from its own start (and, for comparison, of the stream's windows), whichever state it is given:
a model's own, or the model part of a training run's (model, optimizer) state.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from data import tokenize_to_cache
from model.config import GPTConfig
from model.gpt import GPT
from model.loss import cross_entropy
from training.config import TrainConfig
from training.evaluation import model_validation_figures, validation_figures
from training.optimizer import make_optimizer
from training.steps import make_eval_step, model_state

BLOCK_SIZE = 16
BATCH_SIZE = 4


@pytest.fixture
def model(joke_tokenizer) -> GPT:
    config = GPTConfig(
        vocab_size=joke_tokenizer.get_vocab_size(),
        block_size=BLOCK_SIZE,
        n_layer=1,
        n_head=2,
        d_model=32,
        dropout=0.5,  # off in evaluation: the figures must not depend on it
    )
    return GPT(config, rngs=nnx.Rngs(0))


@pytest.fixture
def stream(synthetic_jokes, joke_tokenizer, tmp_path):
    # One joke longer than the context: it counts its first BLOCK_SIZE targets only.
    long_joke = " ".join(synthetic_jokes[40:46])
    return tokenize_to_cache([*synthetic_jokes[:40], long_joke], joke_tokenizer, tmp_path, "val")


def test_the_figures_are_each_jokes_exact_negative_log_likelihood_from_its_start(model, stream):
    # Reference: every joke through the model on its own, from position 0, no packing, no jit.
    tokens = np.asarray(stream.tokens, dtype=np.int32)
    model.eval()
    total_nll = n_targets = n_chars = 0.0
    truncated = 0
    for start, length, chars in zip(stream.starts, stream.lengths, stream.joke_chars, strict=True):
        joke = tokens[start : start + length + 2]  # END_OF_JOKE, its tokens, END_OF_JOKE
        kept = min(length + 1, BLOCK_SIZE)
        truncated += kept < length + 1
        logits, _ = model(jnp.asarray(joke[None, :kept]))
        total_nll += float(cross_entropy(logits, jnp.asarray(joke[None, 1 : kept + 1])).sum())
        n_targets += kept
        n_chars += chars * kept / (length + 1)
    assert truncated == 1

    figures = model_validation_figures(model, stream, BATCH_SIZE)
    assert figures["val_loss"] == pytest.approx(total_nll / n_targets, rel=1e-5)
    assert figures["val_ppl"] == pytest.approx(math.exp(total_nll / n_targets), rel=1e-5)
    assert figures["val_bpc"] == pytest.approx(total_nll / math.log(2) / n_chars, rel=1e-5)


def test_the_windows_figures_are_the_streams_exact_negative_log_likelihood(model, stream):
    # Reference: every window of the stream through the model on its own, no padding, no jit.
    tokens = np.asarray(stream.tokens, dtype=np.int32)
    model.eval()
    total_nll = 0.0
    for start in range(0, len(tokens) - 1, BLOCK_SIZE):
        window = tokens[start : start + BLOCK_SIZE + 1]
        logits, _ = model(jnp.asarray(window[None, :-1]))
        total_nll += float(cross_entropy(logits, jnp.asarray(window[None, 1:])).sum())
    n_targets = len(tokens) - 1

    figures = model_validation_figures(model, stream, BATCH_SIZE)
    assert figures["val_loss_windows"] == pytest.approx(total_nll / n_targets, rel=1e-5)
    assert figures["val_ppl_windows"] == pytest.approx(math.exp(total_nll / n_targets), rel=1e-5)
    assert figures["val_bpc_windows"] == pytest.approx(
        total_nll / math.log(2) / stream.n_chars, rel=1e-5
    )


def test_a_training_runs_state_gives_the_same_figures_as_its_model(model, stream):
    optimizer = nnx.Optimizer(model, make_optimizer(TrainConfig()), wrt=nnx.Param)
    _, training_state = nnx.split((model, optimizer))
    eval_step = make_eval_step(nnx.graphdef(model), fused=True)
    from_run = validation_figures(
        eval_step, model_state(training_state), stream, BATCH_SIZE, BLOCK_SIZE
    )
    assert from_run == model_validation_figures(model, stream, BATCH_SIZE)


def test_a_capped_evaluation_counts_only_the_first_targets(model, stream):
    graphdef, state = nnx.split(model)
    eval_step = make_eval_step(graphdef, fused=False)
    counted, placed = [], []

    def counting_step(state, batch):
        nll, count = eval_step(state, batch)
        counted.append(float(count))
        return nll, count

    def place(array: np.ndarray) -> np.ndarray:
        placed.append(array.shape)
        return array

    validation_figures(counting_step, state, stream, BATCH_SIZE, BLOCK_SIZE, 50, place)
    # Joke by joke: the whole jokes within 50 targets; then the windows: exactly 50.
    sizes = np.minimum(stream.lengths + 1, BLOCK_SIZE)
    whole_jokes = int(np.searchsorted(np.cumsum(sizes), 50, "right"))
    assert 0 < whole_jokes < stream.n_jokes and sizes[:whole_jokes].sum() <= 50
    assert sum(counted) == sizes[:whole_jokes].sum() + 50
    assert set(placed) == {(BATCH_SIZE, BLOCK_SIZE)}  # the 4 arrays of every batch
    assert len(placed) == 4 * len(counted)
