"""Drawing the explainer's answers as HTML: the "why this token" card, the logit lens, the
knockout grid and its effect, a rewrite, and what changed in a branch.

Like ui/rendering.py, nothing here runs the model: the numbers come from serving/explainer.py.
Clickable elements carry `data-*` attributes that the assets/*.js handlers send back.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import numpy as np

from serving.explanations import KnockoutView, LensView
from ui.rendering import _attr, _rgb, colours, surprise_colour

# ColorBrewer RdBu ends: red when a knockout lowers the token's probability, blue when it helps.
HURT, HELP, NEUTRAL = (np.array(c, np.float64) for c in ((178, 24, 43), (33, 102, 172), (247,) * 3))
IMPORTANCE_SCALE_BITS = 2.0  # an effect of this many bits is drawn in the full colour


def effect_colour(bits: float) -> str:
    """A change in log2 p -> red (the token lost probability) to blue (it gained)."""
    t = min(abs(bits) / IMPORTANCE_SCALE_BITS, 1.0)
    end = HURT if bits < 0 else HELP
    return _rgb(NEUTRAL + (end - NEUTRAL) * t)


def _text_on(colour_bits: float, scale: float) -> str:
    return "#fff" if abs(colour_bits) > 0.55 * scale else "#111"


def _percent(p: float) -> str:
    return f"{100 * p:.1f}%" if p >= 0.001 else "<0.1%"


def render_step_card(
    label: str,
    token_id: int,
    position: int,
    step: int,
    surprisal: float,
    candidates: list[tuple[int, str, float, float]],
    chosen_probability: float,
    forced: bool,
) -> str:
    """Why this token: the written token, its surprisal, and the five most likely candidates
    with the model's own probabilities beside those after temperature, top-k and top-p.

    candidates: (token id, label, model probability, sampling probability), best first.
    Each candidate is a button: a click writes the joke on from it (a branch).
    """
    chip = f'<span class="pl-chip pl-written">{html.escape(label)}</span>'
    how = "forced by you (a branch)" if forced else "drawn by the model"
    head = (
        f'<div class="pl-info-head">{chip} <span>token {position} · written step {step} · '
        f"{how}</span></div>"
    )
    surprise = (
        f'<p class="pl-surprisal"><span class="pl-swatch" style="background:'
        f'{surprise_colour(surprisal)}"></span>Surprisal <b>{surprisal:.2f} bits</b> '
        f"(−log₂ of the model's {_percent(chosen_probability)}): "
        f"{'expected' if surprisal < 2 else 'a surprise' if surprisal > 6 else 'plausible'}.</p>"
    )
    rows = []
    for rank, (candidate_id, name, model_p, sampling_p) in enumerate(candidates):
        chosen = candidate_id == token_id
        mark = " chosen" if chosen else ""
        rows.append(
            f'<li class="pl-cand-row{mark}"><button class="pl-branch" '
            f'data-token-id="{candidate_id}" '
            f'title="{_attr(f"write the joke on from {name} (a branch)")}">'
            f'<span class="pl-rank">{rank + 1}</span>'
            f'<span class="pl-cand">{html.escape(name)}</span>'
            f'<span class="pl-bar pl-bar-model"><i style="width:{100 * model_p:.1f}%"></i></span>'
            f'<span class="pl-p">{_percent(model_p)}</span>'
            f'<span class="pl-bar pl-bar-sampling"><i style="width:{100 * sampling_p:.1f}%"></i>'
            f'</span><span class="pl-p">{_percent(sampling_p)}</span>'
            f"{'<em>written</em>' if chosen else ''}</button></li>"
        )
    outside = (
        ""
        if any(candidate_id == token_id for candidate_id, *_ in candidates)
        else f'<p class="pl-note">The written token, <b>{html.escape(label)}</b> '
        f"({_percent(chosen_probability)}), was not among these five: "
        f"{'you forced it' if forced else 'temperature, top-k and top-p let it through'}.</p>"
    )
    table = (
        f'<p class="pl-predicting">Predicting token {position}: the model read tokens 0 to '
        f"{position - 1} and chose among these (its five most likely):</p>"
        '<div class="pl-cand-head"><span></span><span>token</span><span>model</span>'
        "<span>after temperature, top-k, top-p</span></div>"
        f'<ol class="pl-cands pl-cands-branch">{"".join(rows)}</ol>'
        f"{outside}"
        '<p class="pl-caption">Click a candidate to write the joke on from it, with the same '
        "seed: a branch. The sampling column is the distribution the token was drawn from.</p>"
    )
    return f'<div class="pl-info">{head}{surprise}{table}</div>'


def render_lens(view: LensView, written_labels: list[str], prompt_length: int) -> str:
    """The logit lens at one step (a table, layer by layer) and over the whole joke (a map)."""
    names = ["embeddings", *[f"after layer {layer}" for layer in range(1, len(view.layers))]]
    names[-1] += " (output)"
    rows = []
    for guess, name in zip(view.layers, names, strict=True):
        commits = guess.layer == view.commitment
        tops = " ".join(
            f'<span class="pl-guess{" hit" if c.token_id == view.token_id else ""}">'
            f"{html.escape(c.label)} <small>{_percent(c.probability)}</small></span>"
            for c in guess.top
        )
        badge = ' <span class="pl-badge">commits here</span>' if commits else ""
        rows.append(
            f"<tr{' class=pl-commit' if commits else ''}><th>{name}{badge}</th><td>{tops}</td>"
            f"<td>{_percent(guess.chosen_probability)}</td><td>{guess.chosen_rank + 1}</td></tr>"
        )
    commitment = (
        f"From layer {view.commitment} on, every layer's top guess is "
        f"<b>{html.escape(view.predicting)}</b>."
        if view.commitment is not None
        else f"The output's top guess is not <b>{html.escape(view.predicting)}</b>: sampling "
        "drew a less likely token."
    )
    table = (
        f'<p class="pl-caption">If the model stopped after each layer, what would it predict '
        f"for token {prompt_length + view.step}? {commitment}</p>"
        '<table class="pl-lens"><thead><tr><th>read after</th><th>top 3 guesses</th>'
        f"<th>p({html.escape(view.predicting)})</th><th>rank</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return table + render_lens_map(view, written_labels, prompt_length)


def render_lens_map(view: LensView, written_labels: list[str], prompt_length: int) -> str:
    """Layers x written tokens: each layer's probability of the token that was written.
    Click a column to select that token."""
    layers, steps = view.heatmap.shape
    rgb = colours(view.heatmap)  # (layers, steps, 3), the attention scale
    cells = []
    for layer in reversed(range(layers)):  # the output on top, as the layers stack up
        name = "emb" if layer == 0 else f"L{layer}"
        cells.append(f'<span class="pl-lmap-row">{name}</span>')
        for step in range(steps):
            p = view.heatmap[layer, step]
            mark = " sel" if step == view.step else ""
            tip = f"{written_labels[step]}: {_percent(p)} after {name}"
            cells.append(
                f'<i class="pl-lmap-cell{mark}" data-index="{prompt_length + step}" '
                f'style="background:{_rgb(rgb[layer, step])}" title="{_attr(tip)}"></i>'
            )
    columns = f"auto repeat({steps}, minmax(4px, 1fr))"
    grid = f'<div class="pl-lmap" style="grid-template-columns:{columns}">{"".join(cells)}</div>'
    return (
        '<p class="pl-caption">The whole joke: each column a written token, each row a layer '
        "(emb: the embeddings alone); darker means the layer already gave the written token "
        "more probability. Click a column to select its token.</p>" + grid
    )


def _head_grid(layers: int, heads: int, cell: Callable[[int, int], str]) -> str:
    """An L x H grid of small cells under "head h" and beside "layer l" labels; `cell(layer,
    head)` gives each cell's HTML (the knockout grid and what changed in a branch)."""
    cells = ['<span class="pl-corner"></span>']
    cells += [f'<span class="pl-col">head {h + 1}</span>' for h in range(heads)]
    for layer in range(layers):
        cells.append(f'<span class="pl-row">layer {layer + 1}</span>')
        cells += [cell(layer, head) for head in range(heads)]
    return (
        f'<div class="pl-kogrid" style="grid-template-columns:auto repeat({heads}, 1fr)">'
        f"{''.join(cells)}</div>"
    )


def render_knockout_grid(
    importance: np.ndarray, heads_off: list[tuple[int, int]], mode: str, predicting: str
) -> str:
    """L x H cells: the effect on the written token of knocking out each head alone, in bits
    of log2 p. A click switches a head off (or on again) for the combined knockout below."""

    def cell(layer: int, head: int) -> str:
        bits = float(importance[layer, head])
        off = (layer, head) in heads_off
        tip = (
            f"layer {layer + 1}, head {head + 1}: switched off alone, log2 p({predicting}) "
            f"changes by {bits:+.2f} bits. Click to switch it {'on' if off else 'off'}."
        )
        return (
            f'<button class="pl-ko{" off" if off else ""}" data-layer="{layer}" '
            f'data-head="{head}" style="background:{effect_colour(bits)};color:'
            f'{_text_on(bits, IMPORTANCE_SCALE_BITS)}" title="{_attr(tip)}">'
            f"{bits:+.2f}{' ✕' if off else ''}</button>"
        )

    return (
        f'<p class="pl-caption">Importance for <b>{html.escape(predicting)}</b>: the change in '
        f"its log₂ probability, in bits, when one head alone is switched off ({mode} "
        "ablation). Red: the head helped write it. Click heads to switch them off together.</p>"
        + _head_grid(*importance.shape, cell)
    )


def _top_list(candidates: list, chosen: int) -> str:
    items = "".join(
        f"<li{' class=chosen' if c.token_id == chosen else ''}>"
        f'<span class="pl-cand">{html.escape(c.label)}</span>'
        f'<span class="pl-p">{_percent(c.probability)}</span></li>'
        for c in candidates
    )
    return f'<ol class="pl-cands pl-cands-small">{items}</ol>'


def render_knockout_result(view: KnockoutView | None, predicting: str, token_id: int) -> str:
    """The top five with every head and with the chosen heads off, and the written token's
    change."""
    if view is None or not view.heads:
        return (
            '<p class="pl-caption">No head is switched off. Click heads in the grid above to '
            "switch them off and see the top five change.</p>"
        )
    named = ", ".join(f"L{layer + 1}H{head + 1}" for layer, head in view.heads)
    change = (
        f"p({html.escape(predicting)}): {_percent(view.chosen_before)} → "
        f"{_percent(view.chosen_after)} ({view.change_bits:+.2f} bits)"
    )
    return (
        f'<p class="pl-ko-summary">With <b>{named}</b> off ({view.mode} ablation): {change}</p>'
        '<div class="pl-ko-compare"><div><h4>every head</h4>'
        f"{_top_list(view.before, token_id)}</div><div><h4>heads off</h4>"
        f"{_top_list(view.after, token_id)}</div></div>"
    )


def render_rewrite(original: str, rewritten: str, heads: list[tuple[int, int]], step: int) -> str:
    """The rest of the joke as written with every head, and again with the heads off."""
    named = ", ".join(f"L{layer + 1}H{head + 1}" for layer, head in heads) or "no head"
    return (
        f'<div class="pl-rewrite"><p class="pl-caption">From written step {step} on, same seed, '
        f"with {named} off:</p>"
        f'<p><span class="pl-tag">original</span>{html.escape(original)}</p>'
        f'<p><span class="pl-tag pl-tag-off">heads off</span>{html.escape(rewritten)}</p></div>'
    )


def render_changes(shift: np.ndarray | None, fork_label: str, steps: int) -> str:
    """What changed in a branch: how differently each head attended after the fork."""
    if shift is None:
        return (
            '<p class="pl-caption">The original joke. Click a candidate in the card of any '
            "written token to branch from it.</p>"
        )

    def cell(layer: int, head: int) -> str:
        value = float(shift[layer, head])
        colour = _rgb(colours(np.array([value]))[0])
        return (
            f'<span class="pl-ko" style="background:{colour};color:{_text_on(value, 1)}" '
            f'title="layer {layer + 1}, head {head + 1}: {value:.0%} of its attention moved">'
            f"{value:.0%}</span>"
        )

    return (
        f'<p class="pl-caption">What changed after forcing <b>{html.escape(fork_label)}</b>: '
        f"for the first {steps} tokens from the fork, the share of each head's attention that "
        "went elsewhere than in the version it branched from (0%: the same pattern).</p>"
        + _head_grid(*shift.shape, cell)
    )
