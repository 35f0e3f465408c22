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
from typing import Any

import jax
import jax.numpy as jnp
import optax
from optax.contrib import MuonDimensionNumbers, scale_by_muon

from training.average import track_average
from training.config import TrainConfig, TrainError

MUON_MOMENTUM = 0.95  # modded-nanogpt's, with Nesterov momentum


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Clip, then AdamW on everything (adamw) or Muon on the blocks' matrices and AdamW on
    the rest (muon); with --ema-decay, then average the weights (training/average.py)."""
    adamw = optax.adamw(
        make_schedule(config, config.learning_rate),
        b2=config.beta2,
        weight_decay=config.weight_decay,
        mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2, params),
    )
    if config.optimizer == "adamw":
        update = adamw
    else:
        update = optax.multi_transform({"adam": adamw, "muon": _muon(config)}, param_labels)
    links = [optax.clip_by_global_norm(config.grad_clip), update]
    if config.ema_decay > 0:
        # Last: it averages the weights as they are after the whole update.
        links.append(track_average(config.ema_decay))
    return optax.chain(*links)


def make_schedule(config: TrainConfig, peak: float) -> optax.Schedule:
    """The learning rate at each optimizer step (0-based), from `peak`.

    cosine: linear warmup to the peak, cosine decay to min_lr_ratio * peak at the last step.
    wsd: linear warmup to the peak, flat, then a linear cooldown over the last
    cooldown_fraction of the steps to min_lr_ratio * peak. It can be cut short and cooled
    down from any point of the flat part, and its flat part learns faster than cosine's
    decaying one, which is why time-budgeted runs may prefer it.
    """
    warmup = min(config.warmup_steps, config.steps)
    end = peak * config.min_lr_ratio
    if config.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=peak,
            warmup_steps=warmup,
            decay_steps=max(config.steps, warmup + 1),  # counts the warmup; must outlast it
            end_value=end,
        )
    cooldown = min(round(config.cooldown_fraction * config.steps), config.steps - warmup)
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, peak, warmup),
            optax.constant_schedule(peak),
            optax.linear_schedule(peak, end, cooldown),  # reaches `end` at step `steps`
        ],
        boundaries=[warmup, config.steps - cooldown],
    )


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
            scale_by_muon(beta=MUON_MOMENTUM, nesterov=True, weight_dimension_numbers=stacks)
        ),
        optax.stateless(_scale_by_width),
        optax.add_decayed_weights(config.muon_weight_decay),
        optax.scale_by_learning_rate(make_schedule(config, config.muon_learning_rate)),
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
