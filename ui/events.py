"""What happens on the page: handlers bound to the service, and the events that call them.

Each handler takes the components' values and returns new HTML. A joke is written by
`tell_joke` through the JokeWriter; the views of a selected token come from the finished
Joke (gr.State) and from the Explainer (the lens and the knockouts run the model once per
click, in milliseconds); a branch or a rewrite writes again. A RequestError raised by the
service is shown as a message by ui/gradio_internals.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import gradio as gr

from data.tokenizer import decode
from model.branching import SHIFT_STEPS, attention_shift
from model.generate import Step
from serving.errors import RequestError
from serving.explainer import Explainer, surprisal_bits
from serving.joke import Joke, Version
from serving.originality import OriginalityCheck
from serving.reproduce import read_link, reproduce, share_link
from serving.training_replay import TrainingReplay
from serving.writer import JokeWriter, no_clean_joke
from ui import analysis_rendering, rendering
from ui.endpoints import add_endpoints
from ui.explain_events import ExplainHandlers, connect_explainer
from ui.flow_events import FlowHandlers, connect_flow
from ui.learner_events import LearnerHandlers, connect_learner
from ui.role_badges import role_badges
from ui.snapshot_events import SnapshotHandlers, connect_snapshots
from ui.state import PAGE_WRITING, PICK_WRITTEN, VIEWING, Heads
from ui.trace_events import TraceHandlers, connect_trace, replayed_placeholder
from ui.views import describe, matrix_view, token_views, written_pieces

if TYPE_CHECKING:
    from ui.layout import Page


class Handlers:
    """The page's event handlers, bound to the service and the page's components."""

    def __init__(
        self,
        writer: JokeWriter,
        originality: OriginalityCheck,
        explainer: Explainer,
        page: Page,
        address: str,
        replay: TrainingReplay,
    ):
        self.writer, self.originality, self.explainer = writer, originality, explainer
        self.replay = replay  # the folder's training snapshots, if it ships any
        roles = explainer.head_roles  # the heads' badges, the same for every joke
        self.badges = role_badges(roles) if roles is not None else None
        self.page, self.address = page, address

    # -- writing a joke

    def tell_joke(
        self,
        prompt_text: str,
        t: float,
        k: float,
        p: float,
        n: float,
        seed_value: float,
        random_choice: bool,
        clean_only: bool,
        layer_index: int,
        head_index: int,
        heads_off: Heads,
        mode: str,
        request: gr.Request,
    ) -> Iterator[dict]:
        joke_panel, inside, writer = self.page.joke, self.page.inside, self.writer
        job = writer.request(
            prompt_text, t, k, p, n, -1 if random_choice else seed_value, clean_only
        )
        # Forget the previous joke first, so a click during writing cannot show stale data.
        waiting = ["Clean mode: the joke appears once it has been checked."] if job.clean else []
        yield {
            joke_panel.card: rendering.render_joke(job.prompt, "", writing=True, notes=waiting),
            inside.tokens: rendering.render_placeholder("Writing…"),
            self.page.joke_state: None,
            self.page.selected: None,
            **dict.fromkeys(self.page.html_views(), ""),
        }
        if job.clean:
            # Never stream in clean mode: a flagged joke must not be seen, even in part.
            joke, _ = writer.write_checked(job)
            if joke is None:
                notes = [no_clean_joke(job).message]
                yield {
                    joke_panel.card: rendering.render_joke(
                        job.prompt, "", writing=False, notes=notes
                    ),
                    inside.tokens: rendering.render_placeholder("No clean joke this time."),
                }
                return
        else:
            steps: list[Step] = []
            for step in writer.steps(job):
                steps.append(step)
                if step.sampled:
                    text = decode(writer.tokenizer, [s.token for s in steps if s.sampled])
                    yield {joke_panel.card: rendering.render_joke(job.prompt, text, writing=True)}
            joke = writer.finish(job, steps)
        origin = request.headers.get("origin") or self.address
        page_address = origin.rstrip("/") + "/"
        cli, python = reproduce(writer.folder, joke.request, page_address)
        versions = [Version(joke, "Original")]
        yield {
            **self.show_version(
                versions, 0, layer_index, head_index, heads_off, mode, play=job.clean
            ),
            self.page.settings.seed: joke.request.settings.seed,
            joke_panel.command: cli,
            joke_panel.client_code: python,
            joke_panel.link: share_link(joke.request, page_address),
        }

    def open_link(self, request: gr.Request) -> dict[Any, Any]:
        """On page load: a link's request (serving/reproduce.py) fills in the prompt, the
        settings and the link box, and the page then asks for the joke (connect). A plain
        visit changes nothing. The values are checked as a joke request is; the card names a
        bad one, and nothing is written."""
        defaults = dataclasses.asdict(self.writer.defaults) | {"seed": -1}  # seed: a random one
        try:
            linked = read_link(request.query_params)
            if linked is None:
                return {}
            job = self.writer.request(**(defaults | linked))
        except RequestError as error:  # in the card: an event without a queue shows no toast
            message = f"This link cannot be used: {error.message}"
            return {self.page.joke.card: rendering.render_placeholder(message)}
        s, settings = self.page.settings, job.settings
        return {
            self.page.joke.prompt: linked["prompt"],
            s.temperature: settings.temperature,
            s.top_k: settings.top_k,
            s.top_p: settings.top_p,
            s.max_new_tokens: settings.max_new_tokens,
            s.seed: settings.seed,
            s.random_seed: False,
            s.clean: job.clean,
            self.page.joke.link: share_link(job, ""),
        }

    def show_version(
        self,
        versions: list[Version],
        current: int,
        layer_index: int,
        head_index: int,
        heads_off: Heads,
        mode: str,
        play: bool = False,
    ) -> dict[Any, Any]:
        """The page for one version of the joke: its card, its tokens, its last token's views,
        and what changed from the version it branched from. play: the joke was checked before
        it was shown (clean mode), so the card plays its writing back, token by token."""
        page, version = self.page, versions[current]
        joke = version.joke
        meta, notes = describe(joke)
        shift = fork_label = None
        if version.parent is not None:
            parent = versions[version.parent]
            fork_label = joke.labels[version.fork]
            step = version.fork - joke.generation.prompt_length
            notes.insert(
                0,
                f"A branch of {parent.name.split(' ·')[0]}: {fork_label} forced at written "
                f"step {step}, the "
                "rest written with the same seed and settings.",
            )
            shift = attention_shift(
                parent.joke.generation.attention, joke.generation.attention, version.fork
            )
        found = self.originality.check(joke.text, clean=joke.request.clean)
        originality = rendering.render_originality(
            found.verdict, found.similarity, found.joke, found.note
        )
        last = len(joke.generation.token_ids) - 1  # show the last token's views at once
        surprisal = surprisal_bits(joke.generation).tolist()
        return {
            page.joke.card: rendering.render_joke(
                joke.request.prompt,
                joke.written,
                writing=False,
                meta=meta,
                notes=notes,
                originality=originality,
                playback=written_pieces(self.writer.tokenizer, joke) if play else None,
            ),
            page.inside.tokens: rendering.render_token_row(
                joke.labels, joke.generation.prompt_length, last, surprisal
            ),
            page.joke_state: joke,
            page.versions: versions,
            page.explain.versions: gr.Radio(
                choices=[(v.name, i) for i, v in enumerate(versions)], value=current
            ),
            page.explain.changes: analysis_rendering.render_changes(
                shift, fork_label or "", SHIFT_STEPS
            ),
            **self.views(joke, last, layer_index, head_index, heads_off, mode),
        }

    # -- one selected token: every view of it

    def views(
        self, joke: Joke, index: int, layer: int, head: int, heads_off: Heads, mode: str
    ) -> dict[Any, Any]:
        inside, explain = self.page.inside, self.page.explain
        info, grid, matrix = token_views(joke, index, layer, head, self.badges)
        return {
            self.page.selected: index,
            inside.position: gr.Slider(value=index, maximum=len(joke.labels) - 1),
            inside.token_info: info,
            inside.heads: grid,
            self.page.one_head.matrix: matrix,
            explain.rewritten: "",
            **self.analysis(joke, index, heads_off, mode),
        }

    def analysis(self, joke: Joke, index: int, heads_off: Heads, mode: str) -> dict[Any, Any]:
        """The lens, the importance grid and the knockout of the token at `index`."""
        explain, g = self.page.explain, joke.generation
        step = index - g.prompt_length
        if step < 0:
            return {
                explain.lens: rendering.render_placeholder(PICK_WRITTEN.format(what="the lens")),
                explain.knockout_grid: rendering.render_placeholder(
                    PICK_WRITTEN.format(what="which heads it needed")
                ),
                explain.knockout_result: "",
            }
        written = joke.labels[g.prompt_length :]
        if joke.replayed:  # replayed from a trace: no model run
            return {
                explain.lens: analysis_rendering.render_lens(
                    joke.traced_lens[step], written, g.prompt_length
                ),
                explain.knockout_grid: replayed_placeholder("knockouts"),
                explain.knockout_result: "",
            }
        label, token_id = joke.labels[index], g.token_ids[index]
        lens = self.explainer.lens(g.token_ids, g.prompt_length, step)
        importance = self.explainer.importance(g.token_ids, g.prompt_length, step, mode)
        knocked = (
            self.explainer.knockout(g.token_ids, g.prompt_length, step, heads_off, mode)
            if heads_off
            else None
        )
        return {
            explain.lens: analysis_rendering.render_lens(lens, written, g.prompt_length),
            explain.knockout_grid: analysis_rendering.render_knockout_grid(
                importance, heads_off, mode, label
            ),
            explain.knockout_result: analysis_rendering.render_knockout_result(
                knocked, label, token_id
            ),
        }

    def select_token(
        self,
        joke: Joke | None,
        layer: int,
        head: int,
        heads_off: Heads,
        mode: str,
        evt: gr.SelectData,
    ) -> dict[Any, Any]:
        """A click on a token chip, or on a column of the lens map."""
        index = evt.index
        if joke is None or type(index) is not int or not 0 <= index < len(joke.labels):
            return {}
        return self.views(joke, index, layer, head, heads_off, mode)

    def move(
        self,
        joke: Joke | None,
        index: int | None,
        by: int,
        layer: int,
        head: int,
        heads_off: Heads,
        mode: str,
    ) -> dict[Any, Any]:
        """The timeline: one token back or forward, or to the slider's position (by=0)."""
        if joke is None or not isinstance(index, int | float):
            return {}
        index = min(max(int(index) + by, 0), len(joke.labels) - 1)
        return self.views(joke, index, layer, head, heads_off, mode)

    def select_head(self, joke: Joke | None, index: int | None, evt: gr.SelectData) -> tuple:
        pair = self.head_pair(evt)
        if joke is None or index is None or pair is None:
            return gr.skip(), gr.skip(), gr.skip()
        layer_index, head_index = pair
        return layer_index, head_index, matrix_view(joke, index, layer_index, head_index)

    def change_head(
        self, joke: Joke | None, index: int | None, layer_index: int, head_index: int
    ) -> Any:
        if joke is None or index is None:
            return gr.skip()
        return matrix_view(joke, index, layer_index, head_index)

    def head_pair(self, evt: gr.SelectData) -> tuple[int, int] | None:
        """The (layer, head) a click in a grid named, if it names one of this model's heads."""
        pair, c = evt.index, self.writer.config
        valid = isinstance(pair, list) and len(pair) == 2 and all(type(i) is int for i in pair)
        if not valid or not (0 <= pair[0] < c.n_layer and 0 <= pair[1] < c.n_head):
            return None
        return pair[0], pair[1]


PRESS_TELL_IF_LINKED = "(link) => { if (link) document.getElementById('tell-joke').click(); }"


def connect(demo: gr.Blocks, page: Page, handlers: Handlers) -> None:
    """Bind the page's events to the handlers, and add the API endpoints."""
    joke, settings, inside, explain = page.joke, page.settings, page.inside, page.explain
    views = page.token_views()
    shown = [*page.version_views(), *views]
    knobs = [page.one_head.layer, page.one_head.head, page.heads_off, explain.mode]
    selecting = []  # the events that select a token: the flow panel follows each
    told = gr.on(
        [joke.tell.click, joke.prompt.submit],
        handlers.tell_joke,
        inputs=[joke.prompt, *settings.inputs(), *knobs],
        outputs=[*shown, settings.seed, joke.command, joke.client_code, joke.link],
        **PAGE_WRITING,
    )
    selecting.append(told)
    # A page opened from a joke's link: fill in its settings, then press "Tell me a joke"
    # in the browser, so that the joke is asked for as any other (same queue, same limits).
    demo.load(
        handlers.open_link,
        None,
        [joke.prompt, *settings.inputs(), joke.link, joke.card],
        queue=False,  # reads the address only: no model time, no place in the queue
        show_progress="hidden",  # no spinner over the settings a visitor may already use
        api_visibility="private",
    ).success(None, [joke.link], None, js=PRESS_TELL_IF_LINKED)
    for clickable in (inside.tokens, explain.lens):  # token chips and lens-map columns
        selecting.append(
            clickable.select(handlers.select_token, [page.joke_state, *knobs], views, **VIEWING)
        )
    for button, by in ((inside.back, -1), (inside.forward, 1)):
        moved = button.click(
            lambda *values, by=by: handlers.move(values[0], values[1], by, *values[2:]),
            [page.joke_state, page.selected, *knobs],
            views,
            **VIEWING,
        )
        selecting.append(moved)
    slid = inside.position.release(
        lambda *values: handlers.move(values[0], values[1], 0, *values[2:]),
        [page.joke_state, inside.position, *knobs],
        views,
        **VIEWING,
    )
    selecting.append(slid)
    inside.heads.select(
        handlers.select_head,
        [page.joke_state, page.selected],
        [page.one_head.layer, page.one_head.head, page.one_head.matrix],
        **VIEWING,
    )
    gr.on(
        [page.one_head.layer.input, page.one_head.head.input],
        handlers.change_head,
        [page.joke_state, page.selected, page.one_head.layer, page.one_head.head],
        page.one_head.matrix,
        **VIEWING,
    )
    selecting += connect_explainer(page, ExplainHandlers(handlers))
    replayed = connect_trace(page, TraceHandlers(handlers))
    connect_flow(page, FlowHandlers(handlers.explainer, page), [*selecting, replayed])
    connect_learner(page, LearnerHandlers(page), told)
    connect_snapshots(page, SnapshotHandlers(handlers.replay), told)
    # Typing a seed means "use this one". In the browser, with no round trip to the server: a
    # click on "Tell me a joke" right after typing must already find "Random seed" off.
    settings.seed.input(None, None, settings.random_seed, js="() => false")
    add_endpoints(handlers.writer, handlers.originality, handlers.explainer, handlers.replay)
