"""The reference to beat: Punchline's architecture and training step in plain PyTorch eager.

A nanoGPT-style re-implementation used only by the speed benchmark (torch is not a
dependency of the project: `pip install -r requirements-bench.txt`). It mirrors
model/gpt.py and train.py's step exactly where cost is concerned: learned positions,
pre-layer-norm blocks, causal attention (torch's fused scaled_dot_product_attention, as
training uses jax.nn.dot_product_attention), a tanh-GELU feed-forward network, dropout on
the embeddings and on both residual branches, tied embeddings, mean cross-entropy, global
gradient clipping and AdamW with weight decay on matrices only.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from model.config import GPTConfig


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        d = config.d_model
        self.n_head = config.n_head
        self.attention_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.qkv = nn.Linear(d, 3 * d)  # queries, keys and values in one matrix, as nanoGPT
        self.output = nn.Linear(d, d)
        self.feed_forward_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.widen = nn.Linear(d, config.d_ff)
        self.narrow = nn.Linear(config.d_ff, d)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape  # (B, T, d_model)
        qkv = self.qkv(self.attention_norm(x))  # (B, T, 3 d_model)
        # (B, T, d_model) -> (B, heads, T, d_head) for each of q, k, v
        q, k, v = (
            t.view(batch, length, self.n_head, width // self.n_head).transpose(1, 2)
            for t in qkv.split(width, dim=2)
        )
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, d_head)
        attended = attended.transpose(1, 2).reshape(batch, length, width)
        x = x + self.dropout(self.output(attended))
        hidden = F.gelu(self.widen(self.feed_forward_norm(x)), approximate="tanh")  # (B, T, d_ff)
        return x + self.dropout(self.narrow(hidden))


class TorchGPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embedding = nn.Embedding(config.block_size, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.final_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        for name, parameter in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(parameter)
            elif parameter.ndim == 2:
                # GPT-2: layers that write into the residual stream start smaller.
                scaled = name.endswith(("output.weight", "narrow.weight"))
                std = config.init_std / math.sqrt(2 * config.n_layer) if scaled else config.init_std
                nn.init.normal_(parameter, std=std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> logits (B, T, V); the output layer reuses the token embedding."""
        positions = torch.arange(tokens.shape[1])
        x = self.dropout(self.token_embedding(tokens) + self.position_embedding(positions))
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x) @ self.token_embedding.weight.T


def make_train_step(config: GPTConfig, learning_rate: float = 1e-3, seed: int = 0):
    """One AdamW step of next-token cross-entropy, as train.py's: returns step(x, y) -> loss."""
    torch.manual_seed(seed)
    model = TorchGPT(config)
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    others = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}],
        lr=learning_rate,
        betas=(0.9, 0.99),
    )

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    return step
