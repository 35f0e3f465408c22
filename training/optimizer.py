"""The optimizer of every run: AdamW with warmup, cosine decay and gradient clipping."""

from __future__ import annotations

import jax
import optax

from training.config import TrainConfig


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """AdamW with linear warmup and cosine decay, gradient clipping, and weight decay
    on weight matrices only (biases and layer-norm gains are not pulled towards zero)."""
    warmup = min(config.warmup_steps, config.steps)
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(config.steps, warmup + 1),  # counts the warmup; must outlast it
        end_value=config.learning_rate * config.min_lr_ratio,
    )
    return optax.chain(
        optax.clip_by_global_norm(config.grad_clip),
        optax.adamw(
            schedule,
            b2=config.beta2,
            weight_decay=config.weight_decay,
            mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2, params),
        ),
    )
