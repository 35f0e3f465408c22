"""The optimizer of every run: gradient clipping, then AdamW (or Muon for the blocks' matrices),
on a warmup + cosine or warmup-stable-decay schedule, optionally averaging the weights.

--optimizer muon routes each parameter by an explicit label (`param_labels`): "muon" for the
2-D weight matrices inside the transformer blocks (attention query/key/value/output and the
feed-forward kernels, every path under `blocks`), "adam" for everything else: the token
embedding, the positional table, every norm's scale and bias, every bias, any lm_head. Muon
orthogonalises a matrix's update as a whole, which makes sense for a linear map inside the
network but not for an embedding (a lookup table whose rows are updated one by one) or a
vector. Both follow the same schedule, each from its own peak (--learning-rate,
--muon-learning-rate), and both see gradients clipped by one global norm first.

Weight decay: AdamW decays the 2-D matrices it updates, as it always did (the embedding,
the position table, any lm_head and, under adamw, the block matrices; never norms or biases).
Muon decays its matrices by --muon-weight-decay times its scheduled learning rate (optax's
convention: 0.1 at a rate of 0.02 is a 0.2% shrink a step). It is off by default, as in
modded-nanogpt's short Muon runs; long runs may want it (Liu et al. 2025, "Muon is Scalable
for LLM Training", saw weights grow too large without it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax.contrib import MuonDimensionNumbers, scale_by_muon

from training.average import track_average
from training.config import TrainConfig, TrainError

MUON_MOMENTUM = 0.95  # modded-nanogpt's, with Nesterov momentum
# Newton-Schulz as Turbo-Muon (Boissin et al. 2025, arXiv:2512.04632): a first iteration
# preconditioned by "almost orthogonal layer" scaling lets 4 iterations do what 5 did. On the
# small preset at batch 16 the update costs about 25 ms a step less on 2 cores, and 700 steps
# reached 1.893 bits/char against 1.895 with 5 plain iterations (benchmarks/README.md).
MUON_NS_STEPS = 4
MUON_PRECONDITIONING = "aol"
# (step, total steps) -> the learning rate's share of its peak (make_schedule)
Schedule = Callable[[jax.Array, jax.Array], jax.Array]


def make_optimizer(config: TrainConfig) -> optax.GradientTransformationExtraArgs:
    """Clip, then AdamW on everything (adamw) or Muon on the blocks' matrices and AdamW on
    the rest (muon), each at its peak rate; then the schedule's share of the peak; with
    --ema-decay, then average the weights (training/average.py).

    Each update takes the run's step count as a keyword, `total_steps`: the schedule's length
    is an input of the compiled step, not a constant compiled into it (training/steps.py).
    """
    adamw = optax.adamw(
        config.learning_rate,
        b2=config.beta2,
        weight_decay=config.weight_decay,
        mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2, params),
    )
    if config.optimizer == "adamw":
        update = adamw
    else:
        update = optax.multi_transform({"adam": adamw, "muon": _muon(config)}, param_labels)
    links = [
        optax.clip_by_global_norm(config.grad_clip),
        update,
        follow_schedule(make_schedule(config)),
    ]
    if config.ema_decay > 0:
        # Last: it averages the weights as they are after the whole update.
        links.append(track_average(config.ema_decay))
    return optax.chain(*links)


def make_schedule(config: TrainConfig) -> Schedule:
    """The learning rate of each optimizer step (0-based) as a share of its peak, in a run of
    `total` steps: (step, total) -> share, scalars (traced inside the compiled step).

    cosine: linear warmup to the peak, then a cosine down to min_lr_ratio at the last step.
    wsd: linear warmup to the peak, flat, then a straight line down to min_lr_ratio over the
    last cooldown_fraction of the steps. Its flat part does not depend on the step count, only
    its cooldown does, and it learns faster than cosine's decaying one: that is why a
    --time-budget run, which settles its step count as it trains (training/budget.py),
    prefers it.
    """
    low = config.min_lr_ratio

    def share(step: jax.Array, total: jax.Array) -> jax.Array:
        step, total = jnp.asarray(step, jnp.float32), jnp.asarray(total, jnp.float32)
        warmup = jnp.minimum(config.warmup_steps, total)
        rising = step / jnp.maximum(warmup, 1.0)  # 0 to 1 over the warmup
        if config.schedule == "cosine":
            decay = jnp.maximum(total - warmup, 1.0)  # the steps after the warmup
            progress = jnp.clip((step - warmup) / decay, 0.0, 1.0)
            after = low + (1 - low) * 0.5 * (1 + jnp.cos(jnp.pi * progress))
        else:
            cooldown = jnp.minimum(jnp.round(config.cooldown_fraction * total), total - warmup)
            progress = jnp.clip((step - (total - cooldown)) / jnp.maximum(cooldown, 1.0), 0, 1)
            after = 1 - (1 - low) * progress  # flat at 1 until the cooldown starts
        return jnp.where(step < warmup, rising, after)

    return share


def settles_at(config: TrainConfig, total: int) -> int:
    """The first step whose learning rate depends on the run's step count `total`: the end of
    the warmup (cosine) or the start of the cooldown (wsd); 0 for a run shorter than its
    warmup (the warmup's slope then depends on it). Up to this step, runs of any length from
    `total` up take the same steps."""
    if total < config.warmup_steps:
        return 0
    if config.schedule == "cosine":
        return config.warmup_steps
    return total - min(round(config.cooldown_fraction * total), total - config.warmup_steps)


class ScheduleState(NamedTuple):
    count: jax.Array  # () int32: the steps taken so far


def follow_schedule(schedule: Schedule) -> optax.GradientTransformationExtraArgs:
    """The updates times schedule(step, total_steps), where total_steps is the keyword each
    update is given (optax hands such "extra args" down the chain)."""

    def init(params: Any) -> ScheduleState:
        del params
        return ScheduleState(count=jnp.zeros([], jnp.int32))

    def update(
        updates: Any, state: ScheduleState, params: Any = None, *, total_steps: jax.Array,
        **extra_args: Any,
    ) -> tuple[Any, ScheduleState]:  # fmt: skip
        del params, extra_args
        share = schedule(state.count, total_steps)
        updates = jax.tree.map(lambda u: u * share.astype(u.dtype), updates)
        return updates, ScheduleState(count=state.count + 1)

    return optax.GradientTransformationExtraArgs(init, update)


def param_labels(params: Any) -> Any:
    """ "muon" for each 2-D weight matrix inside the transformer blocks, "adam" for the rest.

    `params` is the model's nnx.Param state (arrays or nnx.Variables; the labels keep its
    structure); a parameter is inside the blocks when its path goes through `blocks`.
    """

    def label(path: tuple[Any, ...], leaf: jax.Array) -> str:
        names = {getattr(key, "key", getattr(key, "name", None)) for key in path}
        return "muon" if "blocks" in names and leaf.ndim == 2 else "adam"

    return jax.tree_util.tree_map_with_path(label, params)


def check_settings(config: TrainConfig) -> None:
    """TrainError for optimizer settings that cannot work, naming the flag to mend."""
    if not 0.0 <= config.cooldown_fraction <= 1.0:
        raise TrainError(
            f"--cooldown-fraction {config.cooldown_fraction} is not a share of the steps: "
            "give a number from 0 to 1, e.g. 0.2"
        )
    if not 0.0 <= config.ema_decay < 1.0:
        raise TrainError(
            f"--ema-decay {config.ema_decay} is outside [0, 1): "
            "give e.g. 0.999, or 0 for no average"
        )


def _muon(config: TrainConfig) -> optax.GradientTransformation:
    """Muon for the matrices `param_labels` sends it: Nesterov momentum, orthogonalised by
    Newton-Schulz (optax's scale_by_muon), scaled for the matrix's shape, decayed, scheduled.

    Built from optax's parts rather than optax.contrib.muon, which would route again by
    itself (every 2-D leaf, the embedding included, to Muon, the rest to an Adam that takes
    Muon's learning rate by default): here the routing is `param_labels`' alone.
    """

    def stacks(updates: Any) -> Any:  # (matrices, fan_in, fan_out): one stack per shape
        return jax.tree.map(
            lambda _: MuonDimensionNumbers(reduction_axis=1, output_axis=2), updates
        )

    return optax.chain(
        stacked_by_shape(
            scale_by_muon(
                beta=MUON_MOMENTUM,
                nesterov=True,
                ns_steps=MUON_NS_STEPS,
                preconditioning=MUON_PRECONDITIONING,
                weight_dimension_numbers=stacks,
            )
        ),
        optax.stateless(_scale_by_width),
        optax.add_decayed_weights(config.muon_weight_decay),
        optax.scale_by_learning_rate(config.muon_learning_rate),
    )


def stacked_by_shape(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """`inner` run on one stack per shape of matrix instead of on each matrix.

    The same numbers, computed faster: Muon's Newton-Schulz iteration is a few products of
    small matrices (256 x 1024 in the small preset), which a CPU runs far below its peak one
    at a time. Stacked, XLA runs each product as one batched product over all the matrices of
    that shape: on 2 cores, Muon's update of the small preset's matrices (SwiGLU) took 274 ms
    one by one and 135 ms stacked, side by side in one run. `inner` sees
    {"256x1024": (n, 256, 1024), ...} and keeps its state (the momentum) in that form;
    tests/test_training_optimizer.py checks the updates against optax's scale_by_muon on each
    matrix.
    """

    def group(tree: Any) -> tuple[dict[str, jax.Array], Any]:
        leaves, treedef = jax.tree.flatten(tree)
        names = ["x".join(map(str, leaf.shape)) for leaf in leaves]  # each leaf's stack
        stacks = {
            name: jnp.stack([leaf for leaf, its in zip(leaves, names, strict=True) if its == name])
            for name in set(names)
        }
        places = [names[:index].count(name) for index, name in enumerate(names)]  # in its stack
        return stacks, (treedef, names, places)

    def ungroup(stacks: dict[str, jax.Array], layout: Any) -> Any:
        treedef, names, places = layout
        leaves = [stacks[name][place] for name, place in zip(names, places, strict=True)]
        return jax.tree.unflatten(treedef, leaves)

    def init(params: Any) -> Any:
        return inner.init(group(params)[0])

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        stacked, layout = group(updates)
        stacked_params = None if params is None else group(params)[0]
        stacked, state = inner.update(stacked, state, stacked_params)
        return ungroup(stacked, layout), state

    return optax.GradientTransformation(init, update)


def _scale_by_width(updates: Any, params: Any = None) -> Any:
    """Keller Jordan's Muon scaling: an orthogonalised update times sqrt(max(1, fan_out /
    fan_in)), so a widening matrix (the feed-forward's first) moves its outputs as far as a
    square one; modded-nanogpt's learning rates assume it (optax.contrib.muon applies it too)."""
    return jax.tree.map(lambda u: u * math.sqrt(max(1.0, u.shape[1] / u.shape[0])), updates)
