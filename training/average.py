"""An exponential moving average (EMA) of the weights, kept in the optimizer's state.

With --ema-decay d, after every step: average = d * average + (1 - d) * weights, starting
from the initial weights (so no bias correction is needed). The average is the last link of
the optax chain (`track_average`), so it lives in the optimizer state: it is donated, updated
inside the compiled step, checkpointed and restored on --resume with everything else, and a
run without it has exactly the state it always had. `averaged_model_state` reads it back as a
model state, which the evaluation step and the export take like the raw one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from training.steps import model_state


class ParamAverageState(NamedTuple):
    """The moving average of the parameters, with their tree structure."""

    average: Any


def track_average(decay: float) -> optax.GradientTransformation:
    """Leaves the updates as they are and averages the weights they lead to.

    The last link of a chain: `params + updates` are then the weights after the step (what
    nnx.Optimizer's optax.apply_updates computes).
    """

    def init(params: Any) -> ParamAverageState:
        # A copy, not the same buffers: the training state is donated to the compiled step,
        # and a buffer donated twice is an error.
        return ParamAverageState(jax.tree.map(lambda p: jnp.array(p, copy=True), params))

    def update(
        updates: Any, state: ParamAverageState, params: Any = None
    ) -> tuple[Any, ParamAverageState]:
        if params is None:
            raise ValueError("track_average needs the parameters (optimizer.update passes them)")
        average = jax.tree.map(
            lambda a, p, u: decay * a + (1 - decay) * (p + u).astype(a.dtype),
            state.average,
            params,
            updates,
        )
        return updates, ParamAverageState(average)

    return optax.GradientTransformation(init, update)


def averaged_model_state(graphdef: nnx.GraphDef, state: nnx.State) -> nnx.State | None:
    """The model part of a training state (that of `nnx.split((model, optimizer))`) with the
    averaged weights in place of the raw ones, or None when the run keeps no average.

    `state` is left as it is: the result holds new Variables (the model's non-parameter
    state is shared, the parameters are the average's arrays).
    """
    _, optimizer = nnx.merge(graphdef, state)
    found = [
        leaf
        for leaf in jax.tree.leaves(
            optimizer.opt_state, is_leaf=lambda x: isinstance(x, ParamAverageState)
        )
        if isinstance(leaf, ParamAverageState)
    ]
    if not found:
        return None
    # nnx.merge shares the state's Variables: copy the tree (new Variables) before writing.
    averaged = jax.tree.map(lambda x: x, model_state(state))
    nnx.replace_by_pure_dict(averaged, nnx.to_pure_dict(found[0].average))
    return averaged
