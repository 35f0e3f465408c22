"""What happens on the page: handlers bound to the service, and the events that call them.

Each handler takes the components' values and returns new HTML; the model runs only in
`tell_joke` (and the /generate endpoint), through the JokeWriter. A RequestError raised by
the service is shown as a message by ui/gradio_internals.py. Clicks on tokens and heads are
answered from the visitor's finished Joke (gr.State), never by running the model again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import gradio as gr

from data.tokenizer import decode
from model.generate import Step
from serving.api import generate_json
from serving.joke import Joke
from serving.originality import OriginalityCheck
from serving.reproduce import reproduce
from serving.writer import DEFAULTS, JokeWriter, no_clean_joke
from ui import rendering
from ui.views import describe, matrix_view, token_views

if TYPE_CHECKING:
    from ui.layout import Page

# One joke at a time: XLA already spreads a single generation over both CPU cores, so a
# second one in parallel would make both slower. Clicks have their own, larger limit and
# never wait behind a joke being written.
WRITING = {"concurrency_limit": 1, "concurrency_id": "model"}
VIEWING = {"concurrency_limit": 4, "concurrency_id": "views", "api_visibility": "private"}
VIEWING |= {"show_progress": "hidden", "trigger_mode": "always_last"}


class Handlers:
    """The page's event handlers, bound to one JokeWriter and the page's components."""

    def __init__(self, writer: JokeWriter, originality: OriginalityCheck, page: Page, address: str):
        self.writer, self.originality, self.page, self.address = writer, originality, page, address

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
            **dict.fromkeys(inside.views(), ""),
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
        yield self.finished(joke, layer_index, head_index, request)

    def finished(
        self, joke: Joke, layer_index: int, head_index: int, request: gr.Request
    ) -> dict[Any, Any]:
        """The page once a joke is written: the card, the tokens, the last token's views."""
        joke_panel, inside = self.page.joke, self.page.inside
        meta, notes = describe(joke)
        found = self.originality.check(joke.text)
        last = len(joke.generation.token_ids) - 1  # show the last token's attention at once
        info, grid, one_head = token_views(joke, last, layer_index, head_index)
        origin = request.headers.get("origin") or self.address
        cli, python = reproduce(self.writer.folder, joke.request, origin.rstrip("/") + "/")
        originality = rendering.render_originality(
            found.verdict, found.similarity, found.joke, found.note
        )
        return {
            joke_panel.card: rendering.render_joke(
                joke.request.prompt,
                joke.written,
                writing=False,
                meta=meta,
                notes=notes,
                originality=originality,
            ),
            inside.tokens: rendering.render_token_row(
                joke.labels, joke.generation.prompt_length, last
            ),
            self.page.joke_state: joke,
            self.page.selected: last,
            inside.token_info: info,
            inside.heads: grid,
            inside.matrix: one_head,
            self.page.settings.seed: joke.request.settings.seed,
            joke_panel.command: cli,
            joke_panel.client_code: python,
        }

    def select_token(
        self, joke: Joke | None, layer_index: int, head_index: int, evt: gr.SelectData
    ) -> tuple:
        index = evt.index
        if joke is None or type(index) is not int or not 0 <= index < len(joke.labels):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return index, *token_views(joke, index, layer_index, head_index)

    def select_head(self, joke: Joke | None, index: int | None, evt: gr.SelectData) -> tuple:
        pair = evt.index
        valid = isinstance(pair, list) and len(pair) == 2 and all(type(i) is int for i in pair)
        if joke is None or index is None or not valid:
            return gr.skip(), gr.skip(), gr.skip()
        layer_index, head_index = pair
        c = self.writer.config
        if not (0 <= layer_index < c.n_layer and 0 <= head_index < c.n_head):
            return gr.skip(), gr.skip(), gr.skip()
        return layer_index, head_index, matrix_view(joke, index, layer_index, head_index)

    def change_head(
        self, joke: Joke | None, index: int | None, layer_index: int, head_index: int
    ) -> Any:
        if joke is None or index is None:
            return gr.skip()
        return matrix_view(joke, index, layer_index, head_index)


def generate_endpoint(writer: JokeWriter, originality: OriginalityCheck) -> Callable[..., dict]:
    """The /generate API function; its signature and docstring are what clients are shown."""
    c = writer.config

    def generate(
        prompt: str = "",
        temperature: float = DEFAULTS.temperature,
        top_k: int = min(DEFAULTS.top_k, c.vocab_size),
        top_p: float = DEFAULTS.top_p,
        max_new_tokens: int = min(DEFAULTS.max_new_tokens, c.block_size),
        seed: int = -1,
        clean: bool = True,
    ) -> dict:
        """Write one joke. Returns its text, tokens, attention (layers x heads x T x T) and
        the model's five most likely candidates at each written position. seed=-1: random.
        clean=True: a joke flagged as offensive is written again with the next seed (`tries`
        says how many were written; an error if none of 5 is clean). `nearest` compares the
        joke with the training jokes: {similarity, verdict: "new" | "close to a known joke" |
        null, joke: the nearest training joke, note: why there is no verdict}."""
        return generate_json(
            writer, originality, prompt, temperature, top_k, top_p, max_new_tokens, seed, clean
        )

    return generate


def connect(page: Page, handlers: Handlers) -> None:
    """Bind the page's events to the handlers, and add the /generate endpoint."""
    joke, settings, inside = page.joke, page.settings, page.inside
    views = inside.views()
    gr.on(
        [joke.tell.click, joke.prompt.submit],
        handlers.tell_joke,
        inputs=[joke.prompt, *settings.inputs(), inside.layer, inside.head],
        outputs=[
            joke.card,
            inside.tokens,
            page.joke_state,
            page.selected,
            *views,
            settings.seed,
            joke.command,
            joke.client_code,
        ],
        show_progress="hidden",
        api_visibility="private",
        **WRITING,
    )
    inside.tokens.select(
        handlers.select_token,
        [page.joke_state, inside.layer, inside.head],
        [page.selected, *views],
        **VIEWING,
    )
    inside.heads.select(
        handlers.select_head,
        [page.joke_state, page.selected],
        [inside.layer, inside.head, inside.matrix],
        **VIEWING,
    )
    gr.on(
        [inside.layer.input, inside.head.input],
        handlers.change_head,
        [page.joke_state, page.selected, inside.layer, inside.head],
        inside.matrix,
        **VIEWING,
    )
    # Typing a seed means "use this one".
    settings.seed.input(
        lambda: False, None, settings.random_seed, queue=False, api_visibility="private"
    )
    gr.api(generate_endpoint(handlers.writer, handlers.originality), api_name="generate", **WRITING)
