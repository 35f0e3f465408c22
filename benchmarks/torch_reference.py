"""The reference to beat: Punchline's architecture and training step in plain PyTorch eager.

A nanoGPT-style re-implementation used only by the speed benchmark (torch is not a
dependency of the project: `pip install -r requirements-bench.txt`). It mirrors
model/gpt.py and train.py's step exactly where cost is concerned: learned positions,
pre-layer-norm blocks, causal attention (torch's fused scaled_dot_product_attention, as
training uses jax.nn.dot_product_attention), a tanh-GELU feed-forward network, dropout on
the embeddings and on both residual branches, tied embeddings, mean cross-entropy, global
gradient clipping and AdamW with weight decay on matrices only.

benchmarks/time_to_quality.py trains it with nanoGPT's recipe on the project's own batches:
`config.bias` and `config.dropout` switch biases and dropout, and `positions` and `segments`
(data/packing.py: several jokes per row) give each joke its own positions from 0 and a causal
mask that stays inside the joke, as model/attention.py's same_joke_causal_mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from model.config import GPTConfig

# What this model is, whatever else a config says: the GPT-2 components, written out below.
COMPONENTS = {"positional": "learned", "norm": "layernorm", "activation": "gelu", "qk_norm": False}


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        d = config.d_model
        self.n_head = config.n_head
        bias = config.bias
        self.attention_norm = nn.LayerNorm(d, eps=config.layer_norm_eps, bias=bias)
        # queries, keys and values in one matrix, as nanoGPT
        self.qkv = nn.Linear(d, 3 * d, bias=bias)
        self.output = nn.Linear(d, d, bias=bias)
        self.feed_forward_norm = nn.LayerNorm(d, eps=config.layer_norm_eps, bias=bias)
        self.widen = nn.Linear(d, config.d_ff, bias=bias)
        self.narrow = nn.Linear(config.d_ff, d, bias=bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """mask: None (one text per row: causal) or booleans (B, 1, T, T), True where a
        query may look at a key."""
        batch, length, width = x.shape  # (B, T, d_model)
        qkv = self.qkv(self.attention_norm(x))  # (B, T, 3 d_model)
        # (B, T, d_model) -> (B, heads, T, d_head) for each of q, k, v
        q, k, v = (
            t.view(batch, length, self.n_head, width // self.n_head).transpose(1, 2)
            for t in qkv.split(width, dim=2)
        )
        # (B, H, T, d_head); without a mask, plain causal attention
        attended = F.scaled_dot_product_attention(q, k, v, mask, is_causal=mask is None)
        attended = attended.transpose(1, 2).reshape(batch, length, width)
        x = x + self.dropout(self.output(attended))
        hidden = F.gelu(self.widen(self.feed_forward_norm(x)), approximate="tanh")  # (B, T, d_ff)
        return x + self.dropout(self.narrow(hidden))


class TorchGPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        other = {k: getattr(config, k) for k in COMPONENTS if getattr(config, k) != COMPONENTS[k]}
        if other:
            raise ValueError(f"TorchGPT has only {COMPONENTS}, not {other}: set them so")
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embedding = nn.Embedding(config.block_size, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.final_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, bias=config.bias)
        for name, parameter in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(parameter)
            elif parameter.ndim == 2:
                # GPT-2: layers that write into the residual stream start smaller.
                scaled = name.endswith(("output.weight", "narrow.weight"))
                std = config.init_std / math.sqrt(2 * config.n_layer) if scaled else config.init_std
                nn.init.normal_(parameter, std=std)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token ids (B, T) -> logits (B, T, V); the output layer reuses the token embedding.

        positions, segments (B, T): rows of several jokes (data/packing.py); each token sits
        at its place in its own joke and attends only to earlier tokens of the same joke.
        """
        mask = None
        if segments is None:
            positions = torch.arange(tokens.shape[1])
        else:
            index = torch.arange(tokens.shape[1])
            same_joke = segments[:, :, None] == segments[:, None, :]  # (B, query, key)
            mask = (same_joke & (index[None, :] <= index[:, None]))[:, None]  # (B, 1, T, T)
        x = self.dropout(self.token_embedding(tokens) + self.position_embedding(positions))
        for block in self.blocks:
            x = block(x, mask)
        return self.final_norm(x) @ self.token_embedding.weight.T


def summed_nll(
    model: TorchGPT,
    tokens: torch.Tensor,
    targets: torch.Tensor,
    positions: torch.Tensor | None = None,
    segments: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """Summed next-token NLL (nats) of a batch and how many targets it counts: all of them,
    or with `segments` those of real jokes (segment > 0; padding is 0)."""
    logits = model(tokens, positions, segments)  # (B, T, V)
    if segments is not None:
        targets = targets.masked_fill(segments == 0, -1)  # nanoGPT's ignore_index
    nll = F.cross_entropy(
        logits.view(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1, reduction="sum"
    )
    return nll, int((targets >= 0).sum())


class TrainStep:
    """One AdamW step of mean next-token cross-entropy, as train.py's:
    step(x, y[, positions, segments]) -> loss. `schedule(step)`, if given, sets the learning
    rate of each step (0-based); `model` is the model it trains."""

    def __init__(
        self,
        config: GPTConfig,
        learning_rate: float = 1e-3,
        seed: int = 0,
        schedule: Callable[[int], float] | None = None,
    ):
        torch.manual_seed(seed)
        self.model = TorchGPT(config)
        matrices = [p for p in self.model.parameters() if p.ndim >= 2]
        others = [p for p in self.model.parameters() if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": matrices, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}],
            lr=learning_rate,
            betas=(0.9, 0.99),
        )
        self.schedule, self.steps_done = schedule, 0

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        positions: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
    ) -> float:
        if self.schedule is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.schedule(self.steps_done)
        nll, count = summed_nll(self.model, x, y, positions, segments)
        loss = nll / max(count, 1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.steps_done += 1
        return loss.item()


def make_train_step(
    config: GPTConfig,
    learning_rate: float = 1e-3,
    seed: int = 0,
    schedule: Callable[[int], float] | None = None,
) -> TrainStep:
    """The training step of a fresh model (weights drawn from `seed`)."""
    return TrainStep(config, learning_rate, seed, schedule)
