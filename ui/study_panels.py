"""The panels for studying the model further, placed by ui/layout.py: information flow and
attribution, learner mode ("guess the next token") and attention over training. Like the
rest of the page's helpers they only place components; ui/flow_events.py,
ui/learner_events.py and ui/snapshot_events.py answer their events."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from serving.explainer import FLOW_THRESHOLD
from serving.training_replay import TrainingReplay
from ui.views import script


@dataclass
class LearnerPanel:
    mode: gr.Checkbox  # on: the joke is hidden and the visitor guesses it token by token
    panel: gr.HTML  # the question, then the answer
    next: gr.Button
    state: gr.State  # {"step", "right", "asked", "answered"}, or None while off


@dataclass
class TrainingPanel:
    snapshot: gr.Slider  # which training snapshot writes the joke again
    view: gr.HTML  # its joke, attention, lens, roles and the role plot


@dataclass
class FlowPanel:
    threshold: gr.Slider  # the smallest contribution the graph draws
    graph: gr.HTML  # how information reached the selected token, and each token's share
    setup_punchline: gr.HTML  # which setup tokens the punchline drew on
    attribution: gr.HTML  # gradient x input beside the attention paid
    integrated: gr.Button  # adds integrated gradients


def create_learner_panel() -> LearnerPanel:
    mode = gr.Checkbox(
        False,
        label="Learner mode: guess the next token",
        info="Hides the joke; you pick the token the model wrote, then see its top five and "
        "where it looked.",
        elem_id="learner-mode",
    )
    panel = gr.HTML(
        elem_id="learner", apply_default_css=False, js_on_load=script("branch_click.js")
    )
    next_token = gr.Button("Next token", size="sm", elem_id="learner-next")
    return LearnerPanel(mode, panel, next_token, gr.State(None))


def create_flow_panel() -> FlowPanel:
    gr.Markdown("### Information flow: how it reached the token")
    threshold = gr.Slider(
        0.01, 0.5, FLOW_THRESHOLD, step=0.01, label="Threshold",
        info="The smallest contribution drawn: lower shows more routes.",
        elem_id="flow-threshold",
    )  # fmt: skip
    graph = gr.HTML(elem_id="flow", apply_default_css=False, js_on_load=script("flow_click.js"))
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            gr.Markdown("### Setup → punchline")
            setup_punchline = gr.HTML(elem_id="setup-punchline", apply_default_css=False)
        with gr.Column(scale=1, min_width=300):
            gr.Markdown("### Attribution: which earlier tokens moved it")
            attribution = gr.HTML(elem_id="attribution", apply_default_css=False)
            integrated = gr.Button("Add integrated gradients", size="sm", elem_id="integrated")
    return FlowPanel(threshold, graph, setup_punchline, attribution, integrated)


def create_training_panel(replay: TrainingReplay) -> TrainingPanel:
    """Hidden when the model folder ships no training snapshots."""
    shipped = replay.shipped
    steps = [] if shipped is None else [s.step for s in shipped.snapshots]
    with gr.Group(visible=bool(steps)):
        gr.Markdown("### Attention over training")
        snapshot = gr.Slider(
            0, max(len(steps) - 1, 1), max(len(steps) - 1, 0), step=1,
            label="Training snapshot",
            info="Steps " + ", ".join(f"{s:,}" for s in steps) + ": drag to replay the joke on "
            "the weights of that step.",
            elem_id="snapshot",
        )  # fmt: skip
        view = gr.HTML(
            elem_id="training",
            apply_default_css=False,
            js_on_load=script("tooltip.js") + script("png_export.js"),
        )
    return TrainingPanel(snapshot, view)
