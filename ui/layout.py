"""The page: one `create_...` helper per panel, and `create_demo` that puts them together.

The helpers only place components; what happens on a click is in ui/events.py, and the HTML
the components show comes from ui/views.py. The page loads nothing from other sites: system
fonts, no analytics.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from serving.explainer import Explainer
from serving.limits import CLEAN_TRIES, MAX_PROMPT_CHARS, MAX_SEED
from serving.originality import OriginalityCheck
from serving.trace import MAX_TRACE_BYTES
from serving.training_replay import TrainingReplay
from serving.writer import JokeWriter
from ui import events, rendering
from ui.gradio_internals import Blocks
from ui.study_panels import (
    FlowPanel,
    LearnerPanel,
    TrainingPanel,
    create_flow_panel,
    create_learner_panel,
    create_training_panel,
)
from ui.views import ASSETS, how_it_works, script

THEME = gr.themes.Soft(primary_hue="orange", font=["ui-sans-serif", "system-ui"])
STYLESHEETS = [ASSETS / "style.css"]
HELP = {  # the hint under each control
    "t": "Low: safe and repetitive. High: surprising, then nonsense.",
    "k": "Only the k most likely tokens may be drawn (0: all).",
    "p": "Only the most likely tokens that together reach p (of the whole vocabulary, "
    "counted before top-k: not renormalised after it).",
    "n": "New tokens at most.",
    "seed": "Picks one and shows it here.",
    "clean": f"A joke with offensive words or a sensitive topic is written again (up to "
    f"{CLEAN_TRIES} tries).",
}
MODE_NAMES = {"zero": "zeros (zero ablation)", "mean": "its average output (mean ablation)"}
ABOUT = {  # what each panel shows, and what it does not prove
    "lens": "Each layer's residual stream read out through the final norm and the output "
    "layer, as if the model stopped there. It shows when the answer becomes readable, not "
    "where it was computed: early layers were never trained to be read this way.",
    "knockout": "Switch heads off and see the prediction change. A knockout shows that a head "
    "was *necessary* here, not that it is *sufficient*: heads can stand in for each other, "
    "and a head whose knockout changes nothing may still matter together with others.",
    "branches": "Click any candidate in the card above to force that token and let the model "
    "write on, same seed and settings. Attention that moved after the fork shows where heads "
    "looked differently, not why: attention is not explanation.",
}


@dataclass
class JokePanel:
    prompt: gr.Textbox
    tell: gr.Button
    card: gr.HTML  # the joke as it is written, then its settings, notes and originality
    command: gr.Code  # the shell command that writes the same joke again
    client_code: gr.Code  # the same with gradio_client
    link: gr.Textbox  # the page's address with the joke's request: opening it writes the joke
    save_trace: gr.Button  # makes the trace of the joke and its branches
    trace_link: gr.HTML  # the link that downloads it
    trace_text: gr.Textbox  # a trace to replay: pasted, or read from a file in the browser
    replay: gr.Button


@dataclass
class SettingsPanel:
    temperature: gr.Slider
    top_k: gr.Slider
    top_p: gr.Slider
    max_new_tokens: gr.Slider
    seed: gr.Number
    random_seed: gr.Checkbox
    clean: gr.Checkbox

    def inputs(self) -> list[gr.components.Component]:
        """In the order ui.events.Handlers.tell_joke takes them, after the prompt."""
        return [
            self.temperature, self.top_k, self.top_p, self.max_new_tokens, self.seed,
            self.random_seed, self.clean,
        ]  # fmt: skip


@dataclass
class InsidePanel:
    tokens: gr.HTML  # the clickable token row, with the surprisal strip
    back: gr.Button  # the timeline: one token back,
    position: gr.Slider  # to any token,
    forward: gr.Button  # one token forward
    token_info: gr.HTML  # the selected token's card: "why this token"
    heads: gr.HTML  # the layers x heads grid of the selected token's attention


@dataclass
class MatrixPanel:
    layer: gr.Radio
    head: gr.Radio
    matrix: gr.HTML  # one head's whole matrix


@dataclass
class ExplainPanel:
    lens: gr.HTML  # the logit lens at the selected token, and over the whole joke
    knockout_grid: gr.HTML  # the importance map; a click switches a head off
    mode: gr.Radio  # zero or mean ablation
    knockout_result: gr.HTML  # the top five with the heads on and off
    rewrite: gr.Button
    rewritten: gr.HTML  # the rest of the joke written again with the heads off
    versions: gr.Radio  # the original joke and its branches
    changes: gr.HTML  # which heads attended differently after the fork


@dataclass
class Page:
    joke: JokePanel
    settings: SettingsPanel
    inside: InsidePanel
    explain: ExplainPanel
    flow: FlowPanel
    learner: LearnerPanel
    training: TrainingPanel
    one_head: MatrixPanel
    joke_state: gr.State  # the shown version's Joke (None while one is written)
    selected: gr.State  # the index of the selected token
    versions: gr.State  # list of ui.events.Version: the original joke and its branches
    heads_off: gr.State  # [(layer, head), ...] switched off by the visitor

    def html_views(self) -> list[gr.components.Component]:
        """The views of the selected token that are HTML (emptied while a joke is written)."""
        i, e = self.inside, self.explain
        return [i.token_info, i.heads, self.one_head.matrix, e.lens, e.knockout_grid,
                e.knockout_result, e.rewritten]  # fmt: skip

    def token_views(self) -> list[gr.components.Component]:
        """Everything ui.events.Handlers.views sets for a selected token."""
        return [self.selected, self.inside.position, *self.html_views()]

    def version_views(self) -> list[gr.components.Component]:
        """What else changes with the version shown (ui.events.Handlers.show_version)."""
        return [self.joke.card, self.inside.tokens, self.joke_state, self.versions,
                self.explain.versions, self.explain.changes]  # fmt: skip


def create_header() -> None:
    gr.HTML(
        '<header class="pl-header"><h1>Punchline</h1><p>A small GPT, written from scratch '
        "in JAX, tells a joke one token at a time. Then click any token to see what it was "
        "paying attention to.</p></header>"
    )


def create_joke_panel() -> JokePanel:
    prompt = gr.Textbox(
        label="Opening words (optional)",
        placeholder="Why did the chicken…",
        max_length=MAX_PROMPT_CHARS,
        lines=1,
    )
    tell = gr.Button("Tell me a joke", variant="primary", size="lg", elem_id="tell-joke")
    card = gr.HTML(
        rendering.render_placeholder("Your joke will be written here."),
        elem_id="joke",
        apply_default_css=False,
        js_on_load=None,
    )
    with gr.Accordion("Get this joke again", open=False):
        link = gr.Textbox(
            label="Link: opens this page and writes the same joke",
            interactive=False,
            buttons=["copy"],
            elem_id="joke-link",
        )
        command = gr.Code(label="Command line", language="shell", interactive=False)
        client_code = gr.Code(label="Python (gradio_client)", language="python", interactive=False)
        save_trace = gr.Button("Save the trace (JSON)", size="sm", elem_id="save-trace")
        trace_link = gr.HTML(elem_id="trace-link", apply_default_css=False)
    with gr.Accordion("Replay a trace", open=False):
        gr.HTML(
            '<label class="pl-trace-file">Open a trace file: <input type="file" '
            'accept=".json,application/json"></label>',
            apply_default_css=False,
            js_on_load=script("trace_file.js"),
        )
        trace_text = gr.Textbox(
            label="…or paste one",
            lines=3,
            max_lines=6,
            max_length=MAX_TRACE_BYTES,
            elem_id="trace-text",
        )
        replay = gr.Button("Replay", size="sm", elem_id="replay-trace")
    return JokePanel(
        prompt, tell, card, command, client_code, link, save_trace, trace_link, trace_text, replay
    )


def create_settings_panel(writer: JokeWriter) -> SettingsPanel:
    c, d = writer.config, writer.defaults
    with gr.Group():
        temperature = gr.Slider(0, 2, d.temperature, step=0.05, label="Temperature", info=HELP["t"])
        top_k = gr.Slider(0, c.vocab_size, d.top_k, step=1, label="Top-k", info=HELP["k"])
        top_p = gr.Slider(0.05, 1, d.top_p, step=0.05, label="Top-p", info=HELP["p"])
        max_new_tokens = gr.Slider(
            1, c.block_size, d.max_new_tokens, step=1, label="Maximum length", info=HELP["n"]
        )
        with gr.Row():
            seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
            random_seed = gr.Checkbox(True, label="Random seed", info=HELP["seed"])
        clean = gr.Checkbox(True, label="Clean jokes only", info=HELP["clean"])
    return SettingsPanel(temperature, top_k, top_p, max_new_tokens, seed, random_seed, clean)


def create_inside_panel() -> InsidePanel:
    gr.Markdown("### Tokens\nWhat the model read and wrote. Click one to look inside.")
    tokens = gr.HTML(
        rendering.render_placeholder("The tokens of your joke will appear here."),
        elem_id="tokens",
        apply_default_css=False,
        js_on_load=script("token_click.js"),
    )
    with gr.Row(equal_height=True, elem_id="timeline"):
        back = gr.Button("◀ Previous", size="sm", scale=0, min_width=110)
        position = gr.Slider(0, 1, 0, step=1, label="Token", show_label=False, scale=1)
        forward = gr.Button("Next ▶", size="sm", scale=0, min_width=110)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            token_info = gr.HTML(
                elem_id="token-info", apply_default_css=False, js_on_load=script("branch_click.js")
            )
        with gr.Column(scale=3, min_width=320):
            # No event: the page keeps both pictures and CSS shows one (assets/style.css).
            gr.Checkbox(
                False,
                label="Hide the first-token sink",
                info="Many heads park attention they do not need on ⟨start⟩ (a sink). Hide "
                "it to see where the rest of their attention went, renormalised to 100%.",
                elem_id="hide-sink",
            )
            heads = gr.HTML(
                elem_id="heads",
                apply_default_css=False,
                js_on_load=script("tooltip.js") + script("head_click.js") + script("png_export.js"),
            )
    return InsidePanel(tokens, back, position, forward, token_info, heads)


def create_matrix_panel(writer: JokeWriter) -> MatrixPanel:
    c = writer.config
    gr.Markdown("### One head, every token")
    with gr.Row():
        layer = gr.Radio([(str(i + 1), i) for i in range(c.n_layer)], value=0, label="Layer")
        head = gr.Radio([(str(i + 1), i) for i in range(c.n_head)], value=0, label="Head")
    matrix = gr.HTML(
        elem_id="matrix",
        apply_default_css=False,
        js_on_load=script("tooltip.js") + script("png_export.js"),
    )
    return MatrixPanel(layer, head, matrix)


def create_explain_panel(explainer: Explainer) -> ExplainPanel:
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            gr.Markdown("### Logit lens: what each layer was about to say\n" + ABOUT["lens"])
            lens = gr.HTML(
                elem_id="lens", apply_default_css=False, js_on_load=script("token_click.js")
            )
        with gr.Column(scale=1, min_width=300):
            gr.Markdown("### Head knockout: which heads mattered\n" + ABOUT["knockout"])
            mode = gr.Radio(
                [(MODE_NAMES[m], m) for m in explainer.modes],
                value=explainer.modes[-1],
                label="A switched-off head outputs",
            )
            knockout_grid = gr.HTML(
                elem_id="knockout", apply_default_css=False, js_on_load=script("head_click.js")
            )
            knockout_result = gr.HTML(elem_id="knockout-result", apply_default_css=False)
            rewrite = gr.Button("Rewrite the rest with these heads off", size="sm")
            rewritten = gr.HTML(elem_id="rewritten", apply_default_css=False)
    gr.Markdown("### Branches: what would have happened otherwise\n" + ABOUT["branches"])
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=240):
            versions = gr.Radio([("Original", 0)], value=0, label="Version shown")
        with gr.Column(scale=2, min_width=300):
            changes = gr.HTML(elem_id="changes", apply_default_css=False)
    return ExplainPanel(
        lens, knockout_grid, mode, knockout_result, rewrite, rewritten, versions, changes
    )


def create_how_it_works(writer: JokeWriter) -> None:
    with gr.Accordion("How it works", open=False), gr.Row():
        with gr.Column(scale=3, min_width=300):
            gr.Markdown(how_it_works(writer))
        with gr.Column(scale=2, min_width=280):
            gr.HTML(
                (ASSETS / "architecture.svg").read_text(),
                apply_default_css=False,
                js_on_load=None,
                elem_classes="pl-architecture",
            )


def create_demo(
    writer: JokeWriter,
    originality: OriginalityCheck,
    explainer: Explainer,
    address: str,
    replay: TrainingReplay | None = None,
) -> gr.Blocks:
    """The whole page, its events bound to the service. `address` is the server's own URL, for
    the "get this joke again" code when the browser does not say which address it used."""
    replay = TrainingReplay(explainer) if replay is None else replay
    # No analytics: the page and the server talk to nobody but each other.
    with Blocks(title="Punchline: a tiny GPT that tells jokes", analytics_enabled=False) as demo:
        create_header()
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                joke = create_joke_panel()
            with gr.Column(scale=2, min_width=260):
                settings = create_settings_panel(writer)
        learner = create_learner_panel()
        inside = create_inside_panel()
        explain = create_explain_panel(explainer)
        flow = create_flow_panel()
        one_head = create_matrix_panel(writer)
        training = create_training_panel(replay)
        create_how_it_works(writer)
        page = Page(
            joke, settings, inside, explain, flow, learner, training, one_head,
            joke_state=gr.State(None), selected=gr.State(None), versions=gr.State([]),
            heads_off=gr.State([]),
        )  # fmt: skip
        handlers = events.Handlers(writer, originality, explainer, page, address, replay)
        events.connect(demo, page, handlers)
    return demo
