"""Validation loss: the one loop that both a training run and `python evaluate.py` use.

It sums the negative log-likelihood of every validation target (or of the first
`max_tokens`) batch by batch with the compiled `eval_step`, and turns the sum into loss,
perplexity and bits per character (model/loss.py). A training run evaluates its own
(model, optimizer) state on its devices; evaluate.py a model folder's weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

from data import TokenStream, eval_batches, eval_chars
from data.batching import eval_targets
from model.gpt import GPT
from model.loss import loss_figures
from training.steps import EvalStep, make_eval_step


def validation_figures(
    eval_step: EvalStep,
    state: nnx.State,
    stream: TokenStream,
    batch_size: int,
    block_size: int,
    max_tokens: int | None = None,
    place: Callable[[np.ndarray], jax.Array | np.ndarray] = np.asarray,
    progress: bool = False,
) -> dict[str, float]:
    """val_loss, val_ppl and val_bpc of the model whose state `eval_step` takes.

    `place` puts each (batch_size, block_size) array of a batch where the step's inputs live
    (a multi-device run: this process's rows, sharded over the devices); `progress` shows a
    progress bar.
    """
    total_nll = total_tokens = 0.0
    windows = math.ceil(eval_targets(stream, max_tokens) / block_size)
    batches = eval_batches(stream, batch_size, block_size, max_tokens)
    for batch in tqdm(
        batches,
        total=math.ceil(windows / batch_size),
        desc="validation",
        unit=" batch",
        leave=False,
        disable=not progress,
    ):
        nll, count = eval_step(state, *(place(array) for array in batch))
        total_nll += float(nll)
        total_tokens += float(count)
    return loss_figures(total_nll, total_tokens, eval_chars(stream, max_tokens))


def model_validation_figures(
    model: GPT, stream: TokenStream, batch_size: int, progress: bool = False
) -> dict[str, float]:
    """validation_figures of a model over the whole stream (no cap, no dropout)."""
    graphdef, state = nnx.split(model)
    eval_step = make_eval_step(graphdef, fused=True)
    return validation_figures(
        eval_step, state, stream, batch_size, model.config.block_size, progress=progress
    )
