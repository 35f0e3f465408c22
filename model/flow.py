"""Information flow: which earlier tokens, heads and feed-forward blocks a prediction drew on.

Each block adds to the residual stream twice. For the stream y of token i after layer l's
attention, and after its feed-forward:

    y = x + sum over earlier tokens j and heads h of z_jh + b     z_jh = A_h[i, j] v_h(x_j) W_O,h
    y = x + f(x)

x is the stream before, A_h head h's attention weights, v_h(x_j) its value of token j, W_O,h
its slice of the output projection and b the output bias. Which parts made the sum? Ferrando
and Voita (2024, "Information flow routes"), as LLM Transparency Tool computes it, measure
each part's proximity to the whole:

    proximity(z, y)    = max(||y||_1 - ||y - z||_1, 0)
    contribution(z, y) = proximity(z, y) / (sum of proximity(z', y) over every part z')

A part that nearly makes the whole alone scores high, one that points away from it 0, and
the contributions to each sum add up to 1. The bias, and what a knocked-out head outputs in
its place, belong to no token: they are in the whole, not among the parts, so a head that is
switched off contributes exactly nothing.

The graph (`flow_graph`): nodes are the stream of each token at each depth; from the
stream the output reads at the chosen position, follow back every edge whose contribution is
at least a threshold. It shows routes, not causes: a contribution says how much of a sum a
part makes, not what the model would do without it (that is a knockout, model/ablation.py).

Attention rollout (Abnar and Zuidema 2020, `attention_rollout`) is the older approximation:
it multiplies the layers' attention weights, averaged over heads, with the residual
connection counted as half of each step. It ignores what the values carry and the
feed-forward blocks, so a token can be looked at a lot and still pass on nothing.

`information_flow` is pure and runs under jax.jit (serving/explainer.py); the rest works on
its output in NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from model.gpt import GPT, Block
from model.knockout import HeadKnockout
from model.trace import trace

SIZE_SHARE = 1e-6  # see `proximity`


class Flow(NamedTuple):
    """Every contribution in one forward pass. B = rows, L = layers, T = tokens, H = heads."""

    attention: jax.Array  # (B, L, T, T, H), [b, l, i, j, h]: token j via head h into token i
    attention_residual: jax.Array  # (B, L, T): the stream before the attention, into its sum
    feed_forward: jax.Array  # (B, L, T): the feed-forward output into the stream after it
    feed_forward_residual: jax.Array  # (B, L, T): the stream before the feed-forward


def proximity(part: jax.Array, whole: jax.Array) -> jax.Array:
    """max(||y||_1 - ||y - z||_1, 0) + SIZE_SHARE ||z||_1 over the last axis: part
    (..., d_model) and whole broadcastable to it.

    The first term is summed feature by feature, |y_d| - |y_d - z_d|: the same sum, but
    exactly 0 for a part that is 0 (a future token, a head switched off). The second, a
    millionth of the part's size, changes no contribution visibly; it matters only where the
    parts cancel out so that none is closer to the whole than nothing: they then share it by
    size instead of dividing 0 by 0.
    """
    closer = jax.nn.relu((jnp.abs(whole) - jnp.abs(whole - part)).sum(axis=-1))
    return closer + SIZE_SHARE * jnp.abs(part).sum(axis=-1)


def token_parts(block: Block, x: jax.Array, weights: jax.Array, on: jax.Array) -> jax.Array:
    """The parts z_jh of one attention's sum: what token j sends through head h into token
    i's stream, [b, i, j, h], (B, T query, T key, H, d_model).

    x: (B, T, d_model), the stream entering the block; weights: (B, H, T query, T key), its
    attention weights; on: (rows, H), False for a head that is knocked out. Summed over j and
    h, plus the output bias, they give the attention's output (tests/test_flow.py).
    """
    values = block.attention.value_heads(block.attention_norm(x))  # (B, T, H, d_head)
    sent = block.attention.head_writes(values) * on[:, None, :, None]  # (B, T key, H, d_model)
    return weights.transpose(0, 2, 3, 1)[..., None] * sent[:, None]


def information_flow(model: GPT, tokens: jax.Array, knockout: HeadKnockout | None = None) -> Flow:
    """The contributions of every part of every sum in the forward pass over `tokens` (B, T)."""
    traced = trace(model, tokens, knockout)
    on = jnp.ones((1, model.config.n_layer, model.config.n_head), bool)
    if knockout is not None:
        on = ~knockout.off  # (rows, L, H): a head that is off sends no token's information
    attention, attention_residual, feed_forward, feed_forward_residual = [], [], [], []
    for index, block in enumerate(model.blocks):
        x = traced.residuals[:, index]  # (B, T, d_model): the stream entering the block
        middle = x + traced.attention_outputs[:, index]  # after the attention
        after = traced.residuals[:, index + 1]  # after the feed-forward
        # Under jit the parts are fused into the distances and never stored whole.
        parts = token_parts(block, x, traced.attention[:, index], on[:, index])
        from_tokens = proximity(parts, middle[:, :, None, None])  # (B, T, T, H)
        from_stream = proximity(x, middle)  # (B, T)
        total = from_tokens.sum(axis=(2, 3)) + from_stream  # > 0 unless every part is 0
        attention.append(from_tokens / total[:, :, None, None])
        attention_residual.append(from_stream / total)
        added = proximity(after - middle, after)  # (B, T): the feed-forward's output
        kept = proximity(middle, after)
        total = added + kept
        feed_forward.append(added / total)
        feed_forward_residual.append(kept / total)
    return Flow(*(jnp.stack(parts, axis=1) for parts in (
        attention, attention_residual, feed_forward, feed_forward_residual
    )))  # fmt: skip


# ---------------------------------------------------------------- the graph, in NumPy

EMBEDDING, ATTENTION, FEED_FORWARD, BLOCK = "embedding", "attention", "feed-forward", "block"


@dataclass(frozen=True)
class Node:
    """The stream of `token` at one depth: `embedding` (layer 0, the input), after the
    `attention` of a layer, the `feed-forward` of a layer (its output), or after the whole
    `block` of a layer."""

    kind: str
    layer: int
    token: int


@dataclass(frozen=True)
class Edge:
    source: Node
    target: Node
    weight: float  # the contribution, in [0, 1]
    heads: tuple[float, ...] = ()  # for an attention edge: the contribution through each head


@dataclass(frozen=True)
class FlowGraph:
    position: int  # the token whose stream the output reads
    threshold: float
    nodes: list[Node]  # every node reached, the output's first
    edges: list[Edge]


def stream_before(layer: int, token: int) -> Node:
    """The stream entering layer `layer`: the embedding, or the previous block's output."""
    return Node(EMBEDDING, 0, token) if layer == 0 else Node(BLOCK, layer - 1, token)


def flow_graph(flow: Flow, position: int, threshold: float) -> FlowGraph:
    """The routes into the output at `position`: every edge with a contribution of at least
    `threshold`, followed back from the last block's stream there. `flow` holds one row
    (its arrays without the B axis, as NumPy)."""
    n_layer = flow.attention_residual.shape[0]
    output = Node(BLOCK, n_layer - 1, position)
    nodes, edges, waiting = [output], [], [output]
    seen = {output}

    def reach(source: Node, target: Node, weight: float, heads: tuple[float, ...] = ()) -> None:
        if weight < threshold:
            return
        edges.append(Edge(source, target, weight, heads))
        if source not in seen:
            seen.add(source)
            nodes.append(source)
            waiting.append(source)

    while waiting:
        node = waiting.pop(0)
        layer, i = node.layer, node.token
        if node.kind == BLOCK:
            reach(Node(FEED_FORWARD, layer, i), node, float(flow.feed_forward[layer, i]))
            reach(Node(ATTENTION, layer, i), node, float(flow.feed_forward_residual[layer, i]))
        elif node.kind == FEED_FORWARD:  # it reads the stream after the attention, only
            reach(Node(ATTENTION, layer, i), node, float(flow.feed_forward[layer, i]))
        elif node.kind == ATTENTION:
            reach(stream_before(layer, i), node, float(flow.attention_residual[layer, i]))
            for j in range(i + 1):
                heads = flow.attention[layer, i, j]  # (H,)
                reach(stream_before(layer, j), node, float(heads.sum()), tuple(map(float, heads)))
    return FlowGraph(position, threshold, nodes, edges)


def token_flow(flow: Flow) -> np.ndarray:
    """(T, T): how much of token i's final stream came from input token j, [i, j].

    Layer by layer, token i's stream after the attention is made of the stream before it
    (its residual share) and of token j's (the contributions via every head); the
    feed-forward works within a token, so it moves nothing between tokens. Multiplying the
    layers' (T, T) matrices follows every route at once; each row sums to 1.
    """
    n_layer, length = flow.attention_residual.shape
    total = np.eye(length)
    for layer in range(n_layer):
        step = flow.attention[layer].sum(axis=-1) + np.diag(flow.attention_residual[layer])
        total = step @ total  # (T, T)
    return total


def attention_rollout(attention: np.ndarray) -> np.ndarray:
    """Abnar and Zuidema's rollout: attention (L, H, T, T) of one text -> (T, T).

    Each layer: the heads' mean weights, half of each row kept for the residual connection,
        step_l = (mean over heads of A_l + I) / 2        (rows still sum to 1)
    and the layers multiplied in order: rollout = step_L ... step_1.
    """
    length = attention.shape[-1]
    total = np.eye(length)
    for weights in attention:
        total = ((weights.mean(axis=0) + np.eye(length)) / 2) @ total
    return total
