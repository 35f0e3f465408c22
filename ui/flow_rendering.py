"""Drawing how information reached a token: the flow graph, token flow beside attention
rollout, attribution beside attention, and setup -> punchline.

Nothing here runs the model: the numbers come from serving/explainer.py (model/flow.py and
model/attribution.py compute them). The graph is one SVG; a click on an edge between two
tokens shows its split over the heads (assets/flow_click.js), with no request.
"""

from __future__ import annotations

import html

import numpy as np

from model.flow import ATTENTION, BLOCK, EMBEDDING, FEED_FORWARD, Node
from serving.explanations import AttributionView, FlowView, SetupPunchline
from ui.analysis_rendering import IMPORTANCE_SCALE_BITS, effect_colour
from ui.rendering import _attr, _rgb, colours, short

COLUMN, LEVEL, MARGIN, LABELS = 46, 34, 24, 70  # pixels: per token, per depth, edges, labels
EDGE_WIDTH = 7.0  # pixels of an edge of contribution 1
EDGE_COLOURS = {ATTENTION: "#ea580c", FEED_FORWARD: "#16a34a", "residual": "#94a3b8"}

ABOUT_FLOW = (
    "How information reached the stream that predicts this token: each line is a "
    "contribution of at least the threshold, measured as how close each part of a sum is to "
    "the whole (Ferrando and Voita 2024). Orange: attention from an earlier token (click it "
    "for the heads); green: a feed-forward block; grey: the residual stream carried on. It "
    "shows routes, not causes: what the model would do without a route is a knockout."
)
ABOUT_ROLLOUT = (
    "Attention rollout (Abnar and Zuidema 2020) multiplies the layers' attention weights "
    "instead: it ignores what the values carry and the feed-forward blocks, so it is only an "
    "approximation, and it often overrates the first token."
)
ABOUT_ATTRIBUTION = (
    "Gradient × input: how much the written token's log-probability would change if each "
    "earlier token's embedding were taken away, to first order (red: that token helped, "
    "blue: it worked against; each row coloured to its own largest value). Attention only "
    "says where heads looked: a head can look hard at a token and pass on almost nothing, "
    "and what it passes on can be undone later, so the two rows can disagree."
)


def _level(node: Node) -> int:
    """Height of a node in the graph: 0 the embeddings, then 3 per layer, the output on top."""
    offset = {EMBEDDING: 0, ATTENTION: 1, FEED_FORWARD: 2, BLOCK: 3}[node.kind]
    return 0 if node.kind == EMBEDDING else 3 * node.layer + offset


def _xy(node: Node, n_layer: int) -> tuple[float, float]:
    top = 3 * n_layer
    x = MARGIN + node.token * COLUMN + (COLUMN / 3 if node.kind == FEED_FORWARD else 0)
    return x, MARGIN + (top - _level(node)) * LEVEL


def _node_name(node: Node) -> str:
    if node.kind == EMBEDDING:
        return f"the embedding of token {node.token}"
    where = {ATTENTION: "after the attention of", FEED_FORWARD: "the feed-forward of",
             BLOCK: "after"}[node.kind]  # fmt: skip
    return f"token {node.token}, {where} layer {node.layer + 1}"


def render_flow(view: FlowView, labels: list[str], n_layer: int) -> str:
    """The graph of contributions into the stream at `view.position`, as an SVG."""
    graph = view.graph
    columns = view.position + 1
    width = 2 * MARGIN + columns * COLUMN
    height = 2 * MARGIN + 3 * n_layer * LEVEL + LABELS
    parts = []
    for edge in sorted(graph.edges, key=lambda e: e.weight):  # the strongest drawn on top
        (x1, y1), (x2, y2) = _xy(edge.source, n_layer), _xy(edge.target, n_layer)
        kind = "residual"
        if edge.heads:
            kind = ATTENTION
        elif FEED_FORWARD in (edge.source.kind, edge.target.kind):
            kind = FEED_FORWARD
        if edge.source.token != edge.target.token:  # up from the earlier token's column
            c1, c2 = (x1, y1 - LEVEL / 2), (x2, y2 + LEVEL / 2)
        elif kind == ATTENTION:  # a token attending to itself: bowed left of its residual line
            c1, c2 = (x1 - LEVEL / 2, y1 - LEVEL / 3), (x2 - LEVEL / 2, y2 + LEVEL / 3)
        else:
            c1, c2 = (x1, y1), (x2, y2)
        path = (
            f"M{x1:.1f},{y1:.1f} C{c1[0]:.1f},{c1[1]:.1f} {c2[0]:.1f},{c2[1]:.1f} {x2:.1f},{y2:.1f}"
        )
        text = f"{_node_name(edge.source)} → {_node_name(edge.target)}: {edge.weight:.0%}"
        if edge.heads:
            split = ", ".join(f"head {h + 1} {w:.0%}" for h, w in enumerate(edge.heads))
            text += f" ({split})"
        parts.append(
            f'<path class="pl-edge pl-edge-{kind.replace("-", "")}" d="{path}" '
            f'stroke="{EDGE_COLOURS[kind]}" '
            f'stroke-width="{max(0.8, EDGE_WIDTH * edge.weight):.2f}" '
            f'stroke-opacity="{0.35 + 0.65 * edge.weight:.2f}" fill="none"'
            f' data-text="{_attr(text)}"><title>{html.escape(text)}</title></path>'
        )
    for node in graph.nodes:
        x, y = _xy(node, n_layer)
        name = html.escape(_node_name(node))
        if node.kind == FEED_FORWARD:
            parts.append(f'<rect class="pl-node-ffn" x="{x - 4}" y="{y - 4}" width="8" '
                         f'height="8"><title>{name}</title></rect>')  # fmt: skip
        else:
            output = node == graph.nodes[0]
            parts.append(f'<circle class="pl-node{" pl-node-out" * output}" cx="{x}" cy="{y}" '
                         f'r="{6 if output else 4}"><title>{name}</title></circle>')  # fmt: skip
    bottom = MARGIN + 3 * n_layer * LEVEL + 12
    for token in range(columns):
        x = MARGIN + token * COLUMN
        chosen = " pl-flow-label-out" if token == view.position else ""
        parts.append(
            f'<text class="pl-flow-label{chosen}" x="{x}" y="{bottom}" '
            f'transform="rotate(40 {x} {bottom})">{html.escape(short(labels[token], 10))}</text>'
        )
    for layer in range(n_layer):
        y = MARGIN + (3 * n_layer - 3 * layer - 1) * LEVEL
        parts.append(f'<text class="pl-flow-layer" x="2" y="{y}">L{layer + 1}</text>')
    svg = (
        f'<svg class="pl-flow-graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="information flow into token {view.position}">{"".join(parts)}</svg>'
    )
    shown = len(graph.edges)
    return (
        f'<div class="pl-flow"><p class="pl-caption">Into <b>{html.escape(labels[view.position])}'
        f"</b> (token {view.position}), whose stream predicts <b>"
        f"{html.escape(labels[view.position + 1])}</b>: {shown} edge{'s' * (shown != 1)} at "
        f"threshold {view.threshold:.0%}. {html.escape(ABOUT_FLOW)}</p>"
        f'<div class="pl-flow-scroll">{svg}</div>'
        '<p class="pl-flow-detail" aria-live="polite">Click an orange line for its heads.</p>'
        f"{render_token_shares(view, labels)}</div>"
    )


def _share_row(name: str, shares: np.ndarray, labels: list[str]) -> str:
    cells = "".join(
        f'<td style="background:{_rgb(colours(np.array([min(1.0, s)]))[0])};'
        f'color:{"#fff" if s > 0.3 else "#111"}" title="{_attr(labels[j])}: {s:.1%}">'
        f"{100 * s:.0f}</td>"
        for j, s in enumerate(shares)
    )
    return f"<tr><th>{name}</th>{cells}</tr>"


def render_token_shares(view: FlowView, labels: list[str]) -> str:
    """Each token's share of the predicting stream, by flow and by rollout (percent)."""
    head = "".join(f"<th>{html.escape(short(labels[j], 8))}</th>" for j in range(view.position + 1))
    rows = _share_row("information flow", view.token_flow, labels)
    rows += _share_row("attention rollout", view.rollout, labels)
    return (
        '<div class="pl-flow-scroll"><table class="pl-shares">'
        f"<tr><th>% of the stream from</th>{head}</tr>{rows}</table></div>"
        f'<p class="pl-caption">{html.escape(ABOUT_ROLLOUT)}</p>'
    )


def render_attribution(view: AttributionView, labels: list[str]) -> str:
    """Gradient × input per earlier token, the attention paid to it, and integrated
    gradients with their completeness gap once asked for."""
    tokens = range(view.position + 1)
    head = "".join(f"<th>{html.escape(short(labels[j], 8))}</th>" for j in tokens)

    def signed_row(name: str, values: np.ndarray) -> str:
        # Red where the token raised the log-probability (as a knockout that hurts is red),
        # full colour at the row's largest value: gradients and integrals differ in scale.
        scale = max(float(np.abs(values).max()), 1e-9) / IMPORTANCE_SCALE_BITS
        cells = "".join(
            f'<td style="background:{effect_colour(-v / scale)}" '
            f'title="{_attr(labels[j])}: {v:+.3f}">{v:+.2f}</td>'
            for j, v in enumerate(values)
        )
        return f"<tr><th>{name}</th>{cells}</tr>"

    rows = signed_row("gradient × input", view.gradient_times_input)
    rows += _share_row("attention paid (%)", view.attention, labels)
    note = ""
    if view.integrated is not None:
        rows += signed_row("integrated gradients", view.integrated)
        note = (
            f'<p class="pl-caption">Integrated gradients add up to {np.sum(view.integrated):+.3f}; '
            f"the log-probability changed by {view.change:+.3f} between the start token in "
            f"every place and the real tokens: a completeness gap of "
            f"{view.completeness_gap:+.4f}.</p>"
        )
    return (
        f'<div class="pl-attribution"><p class="pl-caption">{html.escape(ABOUT_ATTRIBUTION)}</p>'
        f'<div class="pl-flow-scroll"><table class="pl-shares"><tr><th>token</th>{head}</tr>'
        f"{rows}</table></div>{note}</div>"
    )


def render_setup_punchline(drawn: SetupPunchline | None, labels: list[str]) -> str:
    """Rows: the punchline's tokens; columns: the setup's; each cell the share of the
    stream predicting that punchline token that came from that setup token. Then, per
    layer, how much the punchline's attention read from the setup directly."""
    if drawn is None:
        return (
            '<p class="pl-placeholder">This joke has no setup and punchline to tell apart: '
            "no question mark or line break with text after it.</p>"
        )
    head = "".join(f"<th>{html.escape(short(labels[j], 8))}</th>" for j in drawn.setup)
    rows = "".join(
        _share_row(
            html.escape(short(labels[p], 12)), drawn.total[r], [labels[j] for j in drawn.setup]
        )
        for r, p in enumerate(drawn.punchline)
    )
    direct = drawn.per_layer.sum(axis=-1).mean(axis=-1)  # (L,): mean over punchline tokens
    layers = "".join(
        f'<li style="background:linear-gradient(to right, var(--pl-written-bg) '
        f'{100 * share:.0f}%, transparent {100 * share:.0f}%)">layer {layer + 1}: {share:.0%}</li>'
        for layer, share in enumerate(direct)
    )
    return (
        '<div class="pl-setup"><p class="pl-caption">How much of each punchline token came '
        "from each setup token, by information flow through every layer (percent).</p>"
        f'<div class="pl-flow-scroll"><table class="pl-shares"><tr><th>punchline ↓ · setup →'
        f"</th>{head}</tr>{rows}</table></div>"
        '<p class="pl-caption">Per layer: the share of the punchline tokens\' attention sums '
        "that each layer read from the setup directly.</p>"
        f'<ul class="pl-layer-bars">{layers}</ul></div>'
    )
