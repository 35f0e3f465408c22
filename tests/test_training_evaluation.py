"""training/evaluation.py: the one validation loop of training runs and evaluate.py.

Its figures must be the exact negative log-likelihood of the stream, whichever state it is
given: a model's own, or the model part of a training run's (model, optimizer) state.
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
    return tokenize_to_cache(synthetic_jokes[:40], joke_tokenizer, tmp_path, "val")


def test_the_figures_are_the_streams_exact_negative_log_likelihood(model, stream):
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
    assert figures["val_loss"] == pytest.approx(total_nll / n_targets, rel=1e-5)
    assert figures["val_ppl"] == pytest.approx(math.exp(total_nll / n_targets), rel=1e-5)
    assert figures["val_bpc"] == pytest.approx(total_nll / math.log(2) / stream.n_chars, rel=1e-5)


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

    def counting_step(state, x, y, mask):
        nll, count = eval_step(state, x, y, mask)
        counted.append(float(count))
        return nll, count

    def place(array: np.ndarray) -> np.ndarray:
        placed.append(array.shape)
        return array

    validation_figures(counting_step, state, stream, BATCH_SIZE, BLOCK_SIZE, 50, place)
    assert sum(counted) == 50
    assert set(placed) == {(BATCH_SIZE, BLOCK_SIZE)}  # x, y and mask of every batch
    assert len(placed) == 3 * len(counted)
