"""The jit boundary: the only code of training that XLA compiles.

The jit boundary is `train_step`: everything inside it (forward pass, loss, gradients,
clipping, AdamW update) is compiled by XLA into one program; everything outside is plain
Python that feeds it batches and writes logs. `eval_step` is the other compiled function:
one validation batch, no dropout, no update.

Both take their state as an explicit argument and return the new one: no hidden state
crosses the boundary. The training state is `nnx.split((model, optimizer))`'s State, whose
entry 0 is the model's state (`model_state`) and entry 1 the optimizer's. The run's step count
is an argument too, not a constant compiled in (the learning rate schedule reads it): a
--time-budget run settles it while it trains (training/budget.py), with one compilation.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax
from flax import nnx

from data.packing import Batch
from model.gpt import GPT
from model.loss import batch_nll

# (state, batch, dropout key, total steps) -> (new state, {"loss", "grad_norm"}); the batch's
# arrays are (B, T) int32 (data/packing.py), the total steps a () int32.
TrainStep = Callable[
    [nnx.State, Batch, jax.Array, jax.Array], tuple[nnx.State, dict[str, jax.Array]]
]
# (model state, batch) -> (summed NLL, number of targets), padding left out.
EvalStep = Callable[[nnx.State, Batch], tuple[jax.Array, jax.Array]]


def make_train_step(graphdef: nnx.GraphDef, fused: bool) -> TrainStep:
    """One compiled optimizer step; `graphdef` is that of the (model, optimizer) pair."""

    def train_step(state, batch, key, total_steps):
        model, optimizer = nnx.merge(graphdef, state)
        model.train()  # dropout on (a trace-time switch: the compiled step always drops)

        def loss_fn(model: GPT) -> jax.Array:
            nll, count = batch_nll(model, batch, fused, rngs=nnx.Rngs(dropout=key))
            return nll / count  # mean over the real targets, padding left out

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads, total_steps=total_steps)  # the schedule's length
        _, new_state = nnx.split((model, optimizer))
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    # donate_argnums: the old state's buffers are reused for the new one (no copy).
    return jax.jit(train_step, donate_argnums=0)


def make_eval_step(graphdef: nnx.GraphDef, fused: bool) -> EvalStep:
    """One compiled evaluation batch; `graphdef` is that of the model alone."""

    def eval_step(state, batch):
        model = nnx.merge(graphdef, state)
        model.eval()  # dropout off
        return batch_nll(model, batch, fused)

    return jax.jit(eval_step)


def model_state(state: nnx.State) -> nnx.State:
    """The model's part of the training state (no copy): what `eval_step` takes."""
    return state[0]
