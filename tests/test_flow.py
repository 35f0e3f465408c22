"""Information flow (model/flow.py): the decomposition is exact, contributions add up to 1,
a knocked-out head contributes nothing, and the graph and rollouts follow their formulas."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from model.ablation import mean_head_outputs
from model.flow import (
    ATTENTION,
    BLOCK,
    EMBEDDING,
    FEED_FORWARD,
    Flow,
    Node,
    attention_rollout,
    flow_graph,
    information_flow,
    proximity,
    token_flow,
    token_parts,
)
from model.knockout import knockout
from model.trace import trace
from tests.test_inspect import CONFIG, VARIANTS, make_model, tokens


def one_row(flow: Flow) -> Flow:
    return Flow(*(np.asarray(part[0], np.float64) for part in flow))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_parts_add_up_to_what_the_attention_added(variant):
    model, t = make_model(variant), tokens(12)
    traced = trace(model, t)
    on = jnp.ones((1, CONFIG.n_head), bool)
    for index, block in enumerate(model.blocks):
        parts = token_parts(block, traced.residuals[:, index], traced.attention[:, index], on)
        assert parts.shape == (1, 12, 12, CONFIG.n_head, CONFIG.d_model)
        output_bias = block.attention.output.bias
        bias = 0.0 if output_bias is None else output_bias[...]
        added = parts.sum(axis=(2, 3)) + bias  # over the earlier tokens and the heads
        np.testing.assert_allclose(added, traced.attention_outputs[:, index], atol=1e-4)
        # Each head's write, summed over the heads, is the merged output too.
        writes = block.attention.head_writes(traced.head_outputs[:, index]).sum(axis=2)
        np.testing.assert_allclose(writes + bias, traced.attention_outputs[:, index], atol=1e-4)
        # A later token sends nothing back: the causal mask.
        assert np.all(np.triu(np.abs(np.asarray(parts[0])).sum(axis=(2, 3)), k=1) == 0)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_contributions_to_every_sum_add_up_to_one(variant):
    model = make_model(variant)
    flow = one_row(information_flow(model, tokens(12)))
    assert flow.attention.shape == (CONFIG.n_layer, 12, 12, CONFIG.n_head)
    into_attention = flow.attention.sum(axis=(2, 3)) + flow.attention_residual  # (L, T)
    np.testing.assert_allclose(into_attention, 1.0, atol=1e-5)
    np.testing.assert_allclose(flow.feed_forward + flow.feed_forward_residual, 1.0, atol=1e-5)
    assert flow.attention.min() >= 0 and np.all(np.triu(flow.attention.sum(-1), k=1) == 0)
    # Not all in one place: the model's tokens really do draw on each other.
    assert flow.attention.sum(axis=(2, 3)).mean() > 0.05


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_a_knocked_out_head_contributes_nothing(mode):
    model, t = make_model(), tokens(12)
    jokes = [list(map(int, tokens(10, seed)[0])) for seed in range(3)]
    replacement = mean_head_outputs(model, jokes, pad_id=0) if mode == "mean" else None
    flow = one_row(information_flow(model, t, knockout(CONFIG, [(1, 0)], replacement)))
    assert np.all(flow.attention[1, :, :, 0] == 0)
    assert flow.attention[1, :, :, 1].sum() > 0  # the other head of that layer still does
    np.testing.assert_allclose(flow.attention.sum(axis=(2, 3)) + flow.attention_residual, 1.0,
                               atol=1e-5)  # fmt: skip


def test_proximity_by_hand():
    whole = jnp.array([2.0, 0.0])
    # Half of the whole: ||y|| - ||y - z|| = 2 - 1; orthogonal: 2 - 3 < 0, so 0.
    assert float(proximity(jnp.array([1.0, 0.0]), whole)) == pytest.approx(1.0, abs=1e-5)
    assert float(proximity(jnp.array([0.0, 1.0]), whole)) == pytest.approx(0.0, abs=1e-5)
    assert float(proximity(whole, whole)) == pytest.approx(2.0, abs=1e-5)
    assert float(proximity(jnp.zeros(2), whole)) == 0.0  # exactly: a part that is nothing
    # Parts that cancel out, none closer than nothing: shares by size, adding up to 1.
    parts = jnp.array([[3.0, 0.0], [-2.0, 0.0]])
    shares = proximity(parts, parts.sum(axis=0)) / proximity(parts, parts.sum(axis=0)).sum()
    np.testing.assert_allclose(shares, [0.6, 0.4], rtol=1e-5)


def test_token_flow_and_rollout_are_products_of_row_stochastic_layers():
    model, t = make_model(), tokens(10)
    flow = one_row(information_flow(model, t))
    total = token_flow(flow)
    np.testing.assert_allclose(total.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(np.triu(total, k=1) == 0) and total.min() >= 0  # never from the future
    attention = np.asarray(trace(model, t).attention[0], np.float64)  # (L, H, T, T)
    rollout = attention_rollout(attention)
    np.testing.assert_allclose(rollout.sum(axis=1), 1.0, atol=1e-6)
    # One layer by hand: half the heads' mean weights plus half the identity.
    one = attention_rollout(attention[:1])
    np.testing.assert_allclose(one, 0.5 * attention[0].mean(axis=0) + 0.5 * np.eye(10))


def test_the_graph_follows_every_edge_above_the_threshold_back_from_the_output():
    model = make_model()
    flow = one_row(information_flow(model, tokens(8)))
    last = CONFIG.n_layer - 1
    everything = flow_graph(flow, 5, threshold=0.0)
    assert everything.nodes[0] == Node(BLOCK, last, 5)
    # At threshold 0 every earlier token's embedding is reached, and no later one.
    embeddings = {n.token for n in everything.nodes if n.kind == EMBEDDING}
    assert embeddings == set(range(6))
    kinds = {(e.source.kind, e.target.kind) for e in everything.edges}
    assert kinds == {
        (FEED_FORWARD, BLOCK), (ATTENTION, BLOCK), (ATTENTION, FEED_FORWARD),
        (BLOCK, ATTENTION), (EMBEDDING, ATTENTION),
    }  # fmt: skip
    pruned = flow_graph(flow, 5, threshold=0.2)
    assert all(e.weight >= 0.2 for e in pruned.edges)
    assert len(pruned.edges) < len(everything.edges)
    reached = set(pruned.nodes)
    assert all(e.source in reached and e.target in reached for e in pruned.edges)
    for edge in pruned.edges:  # an edge between tokens carries its split over the heads
        if edge.heads:
            i, j = edge.target.token, edge.source.token
            assert edge.heads == pytest.approx(flow.attention[edge.target.layer, i, j])
    assert flow_graph(flow, 5, threshold=1.01).nodes == [Node(BLOCK, last, 5)]
