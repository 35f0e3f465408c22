"""Drawing attention over training: one snapshot's joke, attention grid, lens and head roles,
and a small plot of each role's best score against the training step.

Nothing here runs the model: serving/training_replay.py wrote the snapshot's joke.
"""

from __future__ import annotations

import html
from math import log

from model.roles import KINDS
from model.snapshots import Snapshot
from serving.training_replay import SnapshotView
from ui.analysis_rendering import render_lens
from ui.rendering import render_heads_grid, render_placeholder

PLOT = (420, 150, 36)  # width, height, margin (pixels)
# One colour per role kind, ColorBrewer Dark2.
KIND_COLOURS = dict(zip(KINDS, ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#a6761d"),
                        strict=True))  # fmt: skip
ABOUT = (
    "The same opening words, settings and seed, written by the weights saved at this step of "
    "training: where the heads looked, what the layers were about to say and which role each "
    "head had then. Early weights write noise; watch the heads' patterns sharpen."
)


def render_role_plot(history: dict[str, list[float]], steps: list[int], current: int) -> str:
    """Each role's best score over the heads (y, 0 to 1) against the training step (x, log
    scale), the shown snapshot marked."""
    width, height, margin = PLOT
    low, high = min(steps), max(steps)
    span = max(high / low, 1.0001)

    def x(step: int) -> float:
        return margin + (width - 2 * margin) * log(step / low) / log(span)

    def y(score: float) -> float:
        return height - margin + (2 * margin - height) * score

    lines = []
    for kind, scores in history.items():
        points = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in zip(steps, scores, strict=True))
        lines.append(
            f'<polyline points="{points}" fill="none" stroke="{KIND_COLOURS[kind]}" '
            f'stroke-width="2"><title>{html.escape(kind)}</title></polyline>'
        )
    marker = f'<line x1="{x(steps[current]):.1f}" x2="{x(steps[current]):.1f}" y1="{margin - 8}" '
    marker += f'y2="{height - margin}" stroke="#dc2626" stroke-dasharray="3 2"/>'
    axes = (
        f'<line x1="{margin}" x2="{width - margin}" y1="{height - margin}" '
        f'y2="{height - margin}" stroke="#888"/>'
        f'<text x="{margin}" y="{height - 8}" font-size="10">step {low:,}</text>'
        f'<text x="{width - margin}" y="{height - 8}" font-size="10" text-anchor="end">'
        f"step {high:,}</text>"
        f'<text x="4" y="{margin}" font-size="10">1</text>'
        f'<text x="4" y="{height - margin}" font-size="10">0</text>'
    )
    legend = " ".join(
        f'<span style="color:{KIND_COLOURS[kind]}">■ {html.escape(kind)}</span>' for kind in history
    )
    return (
        f'<svg class="pl-role-plot" width="{width}" height="{height}" role="img" '
        f'aria-label="role scores over training">{axes}{"".join(lines)}{marker}</svg>'
        f'<p class="pl-caption">Best score of each role over the heads, at each snapshot '
        f"(log steps): {legend}</p>"
    )


def render_snapshot(
    view: SnapshotView,
    note: str,
    history: dict[str, list[float]],
    steps: list[int],
    badges: list[list[str]],
) -> str:
    """The panel for one snapshot: where it stands, the joke it wrote, the attention grid and
    lens at its last written token, and the role plot."""
    s: Snapshot = view.snapshot
    head = (
        f'<p class="pl-caption"><b>Step {s.step:,}</b> ({s.fraction:.0%} of the run, '
        f"{s.tokens_seen:,} tokens seen), from {html.escape(note)}. {html.escape(ABOUT)}</p>"
    )
    plot = render_role_plot(history, steps, view.index)
    if view.joke is None:
        body = render_placeholder(
            "Clean mode: what this snapshot wrote was flagged as offensive or sensitive, so it "
            "is not shown. Turn off clean mode to see it."
        )
        return f'<div class="pl-snapshot">{head}{body}{plot}</div>'
    joke, g = view.joke, view.joke.generation
    text = f'<p class="pl-joke">{html.escape(joke.text)}</p>'
    if view.lens is None:
        return f'<div class="pl-snapshot">{head}{text}{plot}</div>'
    last = len(g.token_ids) - 1
    grid = render_heads_grid(g.attention[:, :, last, : last + 1], joke.labels, last, badges)
    lens = render_lens(view.lens, joke.labels[g.prompt_length :], g.prompt_length)
    return f'<div class="pl-snapshot">{head}{text}{plot}{grid}{lens}</div>'
