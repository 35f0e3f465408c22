"""Validation loss: the one loop that both a training run and `python evaluate.py` use.

It sums the negative log-likelihood of every validation target (or of the first
`max_tokens`) batch by batch with the compiled `eval_step`, and turns the sum into loss,
perplexity and bits per character (model/loss.py). A training run evaluates its own
(model, optimizer) state on its devices; evaluate.py a model folder's weights.

Two readings of the same validation jokes:
- `val_*`: joke by joke, the way the app writes: each joke from its own start, with nothing
  before it (data/packing.py's `joke_batches`);
- `val_*_windows`: the figure of earlier releases, over consecutive windows of the stream
  that cross joke boundaries (`window_batches`), kept beside it for one release so the two
  can be compared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

from data import Batch, TokenStream, eval_chars, joke_batches, joke_chars, window_batches
from model.gpt import GPT
from model.loss import loss_figures
from training.steps import EvalStep, make_eval_step


def summed_nll(
    eval_step: EvalStep,
    state: nnx.State,
    batches: Iterator[Batch],
    place: Callable[[np.ndarray], jax.Array | np.ndarray],
    progress: bool,
    desc: str,
) -> tuple[float, float]:
    """Summed NLL and number of targets over `batches`."""
    total_nll = total_tokens = 0.0
    for batch in tqdm(batches, desc=desc, unit=" batch", leave=False, disable=not progress):
        nll, count = eval_step(state, Batch(*(place(array) for array in batch)))
        total_nll += float(nll)
        total_tokens += float(count)
    return total_nll, total_tokens


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
    """val_loss, val_ppl and val_bpc (joke by joke) and the same with a _windows suffix.

    `place` puts each (batch_size, block_size) array of a batch where the step's inputs live
    (a multi-device run: this process's rows, sharded over the devices); `progress` shows a
    progress bar.
    """
    jokes = summed_nll(
        eval_step,
        state,
        joke_batches(stream, batch_size, block_size, max_tokens),
        place,
        progress,
        "validation, joke by joke",
    )
    windows = summed_nll(
        eval_step,
        state,
        window_batches(stream, batch_size, block_size, max_tokens),
        place,
        progress,
        "validation, windows",
    )
    by_joke = loss_figures(*jokes, joke_chars(stream, block_size, max_tokens))
    by_window = loss_figures(*windows, eval_chars(stream, max_tokens))
    return {**by_joke, **{f"{name}_windows": value for name, value in by_window.items()}}


def model_validation_figures(
    model: GPT, stream: TokenStream, batch_size: int, progress: bool = False
) -> dict[str, float]:
    """validation_figures of a model over the whole stream (no cap, no dropout)."""
    graphdef, state = nnx.split(model)
    eval_step = make_eval_step(graphdef, fused=True)
    return validation_figures(
        eval_step, state, stream, batch_size, model.config.block_size, progress=progress
    )
