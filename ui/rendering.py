"""Drawing what the model did, as HTML for `gr.HTML`: the joke, its tokens, attention, candidates.

Everything is rendered on the server from numbers already computed during generation, so a
click never runs the model again. Heatmaps are tiny PNG images (one pixel per weight, scaled
up with `image-rendering: pixelated`) rather than thousands of HTML cells: a 128 x 128 matrix
is a few kilobytes. The exact weights travel in `data-w` attributes so that assets/tooltip.js can
show the key token and the weight under the pointer.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math

import numpy as np
from PIL import Image

from model.roles import without_sink
from serving.labels import printable

MAX_LABEL_CHARS = 10  # longer token labels are cut with "…" on the matrix axes
PLAYBACK_MS = 45  # between two tokens when a checked joke's writing is played back

# ColorBrewer YlGnBu: sequential, readable by colour-blind visitors, pale for small weights.
SCALE = [
    "#ffffd9",
    "#edf8b1",
    "#c7e9b4",
    "#7fcdbb",
    "#41b6c4",
    "#1d91c0",
    "#225ea8",
    "#253494",
    "#081d58",
]
MASKED = (229, 231, 235)  # future positions, which causal attention never sees
LEGEND_TICKS = (0.0, 0.05, 0.25, 0.5, 1.0)
SURPRISE_SCALE_BITS = 12.0  # surprisal drawn darkest from here on
# ColorBrewer YlOrRd, for surprise: pale when expected, dark red when surprising.
SURPRISE = np.array(
    [[255, 255, 204], [255, 237, 160], [254, 217, 118], [254, 178, 76], [253, 141, 60],
     [252, 78, 42], [227, 26, 28], [189, 0, 38], [128, 0, 38]], dtype=np.float64,
)  # fmt: skip
_ANCHORS = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in SCALE], dtype=np.float64)


def _rgb(colour: np.ndarray) -> str:
    r, g, b = (round(float(c)) for c in colour)
    return f"rgb({r},{g},{b})"


def surprise_colour(bits: float) -> str:
    """Surprisal in bits -> a CSS colour, pale (expected) to dark red (surprising)."""
    t = min(max(bits, 0.0), SURPRISE_SCALE_BITS) / SURPRISE_SCALE_BITS * (len(SURPRISE) - 1)
    low = int(np.floor(t))
    high = min(low + 1, len(SURPRISE) - 1)
    return _rgb(SURPRISE[low] + (SURPRISE[high] - SURPRISE[low]) * (t - low))


def short(label: str, limit: int = MAX_LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def colours(weights: np.ndarray) -> np.ndarray:
    """Weights in [0, 1] -> RGB uint8, on a square-root scale so small weights stay visible."""
    t = np.sqrt(np.clip(weights, 0.0, 1.0)) * (len(SCALE) - 1)
    channels = [np.interp(t, np.arange(len(SCALE)), _ANCHORS[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def png_data_uri(rgb: np.ndarray) -> str:
    """An (H, W, 3) uint8 image as a data: URI, embedded in the HTML (no files are written)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _percent_rows(matrix: np.ndarray) -> str:
    """Rows of weights as '41.2,3.1;…' (percent, lower triangle only) for the tooltip."""
    return ";".join(
        ",".join(f"{100 * w:.1f}" for w in row[: q + 1]) for q, row in enumerate(matrix)
    )


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _labels_attr(labels: list[str]) -> str:
    return _attr(json.dumps(labels, ensure_ascii=False))


def render_joke(
    prompt_text: str,
    written_text: str,
    *,
    writing: bool,
    meta: str = "",
    notes: list[str] | None = None,
    originality: str = "",
    playback: list[str] | None = None,
) -> str:
    """The joke card: opening words in one style, the model's words in another.

    `originality` is HTML from render_originality, shown last. `playback`: the written text
    cut at token boundaries; each piece then appears after the one before it (a CSS
    animation, PLAYBACK_MS apart), so a joke shown only once it was checked is still seen
    being written, without holding the server.
    """
    caret = '<span class="pl-caret" aria-hidden="true"></span>' if writing else ""
    if playback is None:
        written = html.escape(printable(written_text))
    else:
        written = "".join(
            f'<span class="pl-play" style="animation-delay:{n * PLAYBACK_MS}ms">'
            f"{html.escape(printable(piece))}</span>"
            for n, piece in enumerate(playback)
        )
    joke = (
        f'<span class="pl-joke-typed">{html.escape(printable(prompt_text))}</span>'
        f'<span class="pl-joke-written">{written}</span>{caret}'
    )
    parts = [f'<div class="pl-card" aria-live="polite"><p class="pl-joke">{joke}</p>']
    if meta:
        parts.append(f'<p class="pl-meta">{html.escape(meta)}</p>')
    parts.extend(f'<p class="pl-note">{html.escape(note)}</p>' for note in notes or [])
    parts.append(originality)
    parts.append("</div>")
    return "".join(parts)


def render_originality(
    verdict: str | None, similarity: float | None, nearest: str | None, note: str | None
) -> str:
    """The verdict on a joke's originality, and the one training joke nearest to it.

    verdict is "new" or "close to a known joke" (serving/originality.py decides); without
    one, `note` says why.
    """
    if verdict is None:
        return f'<p class="pl-origin pl-origin-note">{html.escape(note or "")}</p>'
    kind = "new" if verdict == "new" else "close"
    how = (
        "cosine similarity of the two jokes' words and word pairs (TF-IDF): 1 means the same "
        "words, 0 none in common"
    )
    head = (
        f'<p class="pl-origin-head"><strong>{html.escape(verdict.capitalize())}</strong> · '
        f'<span title="{_attr(how)}">similarity {similarity:.2f}</span> to the nearest joke '
        "it was trained on"
    )
    if nearest is None:  # no word in common, or the text cannot or may not be shown
        why = html.escape(note) if note else "None shares a word."
        return f'<div class="pl-origin pl-origin-{kind}">{head}. {why}</p></div>'
    return (
        f'<div class="pl-origin pl-origin-{kind}">{head}:</p>'
        f'<blockquote class="pl-origin-joke">{html.escape(printable(nearest))}</blockquote></div>'
    )


def render_placeholder(text: str) -> str:
    return f'<div class="pl-placeholder">{html.escape(text)}</div>'


def render_token_row(
    labels: list[str],
    prompt_length: int,
    selected: int | None,
    surprisal: list[float] | None = None,
) -> str:
    """Clickable chips: the start token, the typed tokens and the written tokens look different.

    surprisal: bits of each written token; a bar under each written chip shows it (the
    surprisal strip: where the model was surprised, a punchline often is).
    """
    chips = []
    for i, label in enumerate(labels):
        kind = "start" if i == 0 else "typed" if i < prompt_length else "written"
        who = {"start": "start token", "typed": "typed by you", "written": "written by the model"}
        mark = " selected" if i == selected else ""
        title, strip = f"token {i}: {who[kind]}", ""
        if kind == "written" and surprisal is not None:
            bits = surprisal[i - prompt_length]
            title += f", surprisal {bits:.1f} bits"
            strip = f'<i class="pl-surprise" style="background:{surprise_colour(bits)}"></i>'
        chips.append(
            f'<button class="pl-chip pl-{kind}{mark}" data-index="{i}" '
            f'title="{_attr(title)}">{html.escape(label)}{strip}</button>'
        )
    key = (
        '<div class="pl-key"><span class="pl-chip pl-start">⟨start⟩</span> opens every joke '
        '<span class="pl-chip pl-typed">typed</span> your opening words '
        '<span class="pl-chip pl-written">written</span> by the model · '
        "· is a space, ↵ a new line · the bar under a written token: how surprised the model "
        "was by it (darker: more surprising)</div>"
    )
    return f'<div class="pl-tokens">{"".join(chips)}</div>{key}'


def render_legend() -> str:
    """Colour bar of the heatmaps, with ticks placed on the same square-root scale."""
    stops = ", ".join(SCALE)
    ticks = "".join(
        f'<span style="left:{100 * math.sqrt(t):.1f}%">{t:.0%}</span>' for t in LEGEND_TICKS
    )
    return (
        '<div class="pl-legend"><span class="pl-legend-title">attention weight</span>'
        f'<div class="pl-legend-bar" style="background:linear-gradient(to right, {stops})"></div>'
        f'<div class="pl-legend-ticks">{ticks}</div>'
        f'<span class="pl-legend-masked"><i style="background:rgb{MASKED}"></i>'
        "later token (never seen)</span></div>"
    )


def render_read_token(label: str, position: int, kind: str) -> str:
    """The card of a token the model read but did not write: the start token or a typed one.
    (A written token's card is analysis_rendering.render_step_card.)"""
    chip = f'<span class="pl-chip pl-{kind}">{html.escape(label)}</span>'
    head = f'<div class="pl-info-head">{chip} <span>token {position}</span></div>'
    if kind == "start":
        body = (
            "<p>The start token. Every joke begins with it (it is the token that marks the end "
            "of a joke in training), so the model always has something to look at.</p>"
        )
    else:
        body = (
            "<p>You typed this token: it is part of the opening words, so the model did not "
            "choose it. Its attention below is still real: it is what the model computed while "
            "reading your words.</p>"
        )
    return f'<div class="pl-info">{head}{body}</div>'


def png_button(kind: str, filename: str, title: str = "") -> str:
    """A "Save as PNG" button: assets/png_export.js draws the picture in the browser."""
    return (
        f'<button class="pl-png" type="button" data-png="{kind}" data-name="{_attr(filename)}" '
        f'data-title="{_attr(title)}">Save as PNG</button>'
    )


def render_heads_grid(
    rows: np.ndarray, labels: list[str], position: int, badges: list[list[str]] | None = None
) -> str:
    """One strip per (layer, head): how the token at `position` spread its attention, and
    each head's role badge (ui/role_badges.py) when the model ships its roles.

    rows: (layers, heads, position + 1), each row summing to 1.
    """
    layers, heads, _ = rows.shape
    _, rest = without_sink(rows)  # for "hide the sink": the weight on other tokens, renormalised
    cells = ['<div class="pl-corner"></div>']
    cells += [f'<div class="pl-col">head {h + 1}</div>' for h in range(heads)]
    for layer in range(layers):
        cells.append(f'<div class="pl-row">layer {layer + 1}</div>')
        for head in range(heads):
            weights = rows[layer, head]
            top = int(np.argmax(weights))
            name = f"layer {layer + 1}, head {head + 1}"
            ranked = np.argsort(-weights)[:3]
            summary = ", ".join(f"{labels[k]} {weights[k]:.0%}" for k in ranked)
            strips = "".join(
                f'<img class="pl-strip {kind}" src="{png_data_uri(colours(shown)[None, :, :])}" '
                f'alt="{_attr(name)}" data-q0="{position}" data-cols="{position + 1}" '
                f'data-head="{_attr(name)}" data-w="{",".join(f"{100 * w:.1f}" for w in shown)}">'
                for kind, shown in (("pl-with-sink", weights), ("pl-no-sink", rest[layer, head]))
            )
            cells.append(
                f'<div class="pl-panel" data-layer="{layer}" data-head="{head}" '
                f'title="{_attr(f"{name}: {summary} (click for the whole matrix)")}">{strips}'
                f'<span class="pl-top">{html.escape(short(labels[top], 14))} '
                f"{weights[top]:.0%}</span>{badges[layer][head] if badges else ''}</div>"
            )
    grid = (
        f'<div class="pl-grid" style="grid-template-columns:auto repeat({heads}, minmax(0, 1fr))">'
        f"{''.join(cells)}</div>"
    )
    caption = (
        f'<p class="pl-caption">Where <b>{html.escape(labels[position])}</b> (token {position}) '
        "looked, in every layer and head. Each strip runs from the first token (left) to this "
        "one (right); darker means more attention. Hover for the exact weight, click a strip "
        "to see that head's whole matrix."
        + (
            " The badge under a head is its role, found on probe texts (hover it for the "
            "scores): the same for every token."
            if badges
            else ""
        )
        + "</p>"
    )
    return (
        f'<div class="pl-heads" data-labels="{_labels_attr(labels)}">'
        f"{caption}{grid}{render_legend()}"
        + png_button(
            "grid",
            f"punchline-heads-token-{position}.png",
            f"Where {labels[position]} (token {position}) looked, in every layer and head",
        )
        + "</div>"
    )


def render_matrix(
    matrix: np.ndarray, labels: list[str], selected: int, layer: int, head: int
) -> str:
    """The query x key attention matrix of one head as an SVG with real token labels.

    matrix: (T, T), row q is what token q attended to (zero above the diagonal).
    Labels are thinned when cells get small, so they never overlap; the selected token's
    row and column are always labelled and its row is outlined.
    """
    n = matrix.shape[0]
    name = f"layer {layer + 1}, head {head + 1}"
    cell = max(4, min(18, 640 // n))
    font = 11
    step = math.ceil((font + 1) / cell)  # show every step-th label: one label per font height
    margin = 12 + int(font * 0.62 * MAX_LABEL_CHARS)
    size = n * cell
    future = np.triu(np.ones((n, n), dtype=bool), k=1)
    _, rest = without_sink(matrix)  # for "hide the sink": the other keys, renormalised

    def image(kind: str, weights: np.ndarray) -> str:
        rgb = colours(weights)
        rgb[future] = MASKED
        return (
            f'<image class="{kind}" href="{png_data_uri(rgb)}" x="{margin}" y="{margin}" '
            'style="image-rendering:pixelated" '
            f'width="{size}" height="{size}" preserveAspectRatio="none" data-q0="0" '
            f'data-cols="{n}" data-head="{_attr(name)}" data-w="{_percent_rows(weights)}"/>'
        )

    def shown(i: int) -> bool:
        if i == selected:
            return True
        return i % step == 0 and abs(i - selected) >= step

    texts = []
    for i in range(n):
        if not shown(i):
            continue
        mark = ' class="pl-sel"' if i == selected else ""
        label = html.escape(short(labels[i]))
        centre = margin + i * cell + cell / 2
        texts.append(
            f'<text{mark} x="{margin - 6}" y="{centre:.1f}" text-anchor="end" '
            f'dominant-baseline="central">{label}</text>'
        )
        texts.append(
            f'<text{mark} transform="translate({centre:.1f},{margin - 6}) rotate(-90)" '
            f'dominant-baseline="central">{label}</text>'
        )
    outline = (
        f'<rect class="pl-mark" x="{margin - 1}" y="{margin + selected * cell - 1}" '
        f'width="{size + 2}" height="{cell + 2}" fill="none" stroke="#dc2626"/>'
    )
    svg = (
        f'<svg class="pl-matrix" width="{margin + size + 4}" height="{margin + size + 4}" '
        f'role="img" aria-label="{_attr(f"attention matrix of {name}")}" font-size="{font}">'
        f"{image('pl-with-sink', matrix)}{image('pl-no-sink', rest)}{''.join(texts)}{outline}"
        "</svg>"
    )
    caption = (
        f'<p class="pl-caption">All of {name}: row = the token doing the looking (query), '
        "column = the token looked at (key); row q is what token q looked at while predicting "
        "token q + 1. Each row sums to 100%; the grey triangle is the "
        "future, which a causal model cannot see. The outlined row is "
        f"<b>{html.escape(labels[selected])}</b>.</p>"
    )
    name = f"punchline-matrix-layer-{layer + 1}-head-{head + 1}.png"
    return (
        f'<div class="pl-matrix-box" data-labels="{_labels_attr(labels)}">{caption}'
        f'<div class="pl-scroll">{svg}</div>{render_legend()}{png_button("matrix", name)}</div>'
    )
