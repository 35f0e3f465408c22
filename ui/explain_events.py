"""What happens in the explainer's panels: head knockout, rewrites and branches.

The handlers of the token views (ui/events.py) show the lens and the knockout of the
selected token; these answer the clicks that change them: a head switched off or on, the
ablation mode, "rewrite the rest", a candidate clicked to branch, another version shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from data.tokenizer import decode
from model.branching import fork_position
from serving.joke import Joke, Version
from ui import analysis_rendering, rendering
from ui.state import PAGE_WRITING, PICK_WRITTEN, VIEWING, Heads
from ui.trace_events import replayed_placeholder

if TYPE_CHECKING:
    from gradio.events import Dependency

    from ui.events import Handlers
    from ui.layout import Page


class ExplainHandlers:
    """The explainer panels' handlers; the token views come from the page's Handlers."""

    def __init__(self, base: Handlers):
        self.base = base

    def toggle_head(
        self, joke: Joke | None, index: int | None, heads_off: Heads, mode: str, evt: gr.SelectData
    ) -> dict[Any, Any]:
        """A click in the importance grid switches that head off, or on again."""
        pair = self.base.head_pair(evt)
        if joke is None or index is None or pair is None:
            return {}
        heads_off = [h for h in heads_off if h != pair] if pair in heads_off else [*heads_off, pair]
        return {
            self.base.page.heads_off: heads_off,
            self.base.page.explain.rewritten: "",
            **self.base.analysis(joke, index, heads_off, mode),
        }

    def change_mode(
        self, joke: Joke | None, index: int | None, heads_off: Heads, mode: str
    ) -> dict[Any, Any]:
        if joke is None or index is None:
            return {}
        return {
            self.base.page.explain.rewritten: "",
            **self.base.analysis(joke, index, heads_off, mode),
        }

    def rewrite(self, joke: Joke | None, index: int | None, heads_off: Heads, mode: str) -> str:
        """The rest of the joke, from the selected written token, with the heads off."""
        if joke is None or index is None or index < joke.generation.prompt_length:
            return rendering.render_placeholder(PICK_WRITTEN.format(what="it rewritten"))
        if joke.replayed:
            return replayed_placeholder("model to write with")
        if not heads_off:
            return rendering.render_placeholder("Switch heads off in the grid first.")
        step = index - joke.generation.prompt_length
        rewritten = self.base.explainer.rewrite(joke, step, heads_off, mode)
        kept = joke.generation.prompt_length + step
        original = decode(self.base.writer.tokenizer, joke.generation.token_ids[kept:])
        new = decode(self.base.writer.tokenizer, rewritten.generation.token_ids[kept:])
        return analysis_rendering.render_rewrite(original, new, heads_off, step)

    def branch_from_candidate(
        self,
        versions: list[Version] | None,
        current: int | None,
        index: int | None,
        layer: int,
        head: int,
        heads_off: Heads,
        mode: str,
        evt: gr.SelectData,
    ) -> dict[Any, Any]:
        """A click on a candidate in the card: write the joke on from that token."""
        token_id = evt.index
        if not versions or current is None or index is None or type(token_id) is not int:
            return {}
        joke = versions[current].joke
        step = index - joke.generation.prompt_length
        if step < 0 or not 0 <= token_id < self.base.writer.config.vocab_size:
            return {}
        if joke.replayed:  # a replayed trace: branching would run the model
            return {self.base.page.explain.rewritten: replayed_placeholder("branches")}
        if token_id == joke.generation.token_ids[index]:
            return {}  # the token it wrote: this very version
        new = self.base.explainer.branch(joke, step, token_id)
        fork = fork_position(joke.generation.token_ids, new.generation.token_ids)
        # Named so that the list reads as the tree it is: which token, where, from which version.
        parent = versions[current].name.split(" ·")[0]
        name = f"Branch {len(versions)} · {new.labels[fork]} at step {step} · from {parent}"
        versions = [*versions, Version(new, name, current, fork)]
        return self.base.show_version(versions, len(versions) - 1, layer, head, heads_off, mode)

    def switch_version(
        self,
        versions: list[Version] | None,
        current: int | None,
        layer: int,
        head: int,
        heads_off: Heads,
        mode: str,
    ) -> dict[Any, Any]:
        if not versions or type(current) is not int or not 0 <= current < len(versions):
            return {}
        return self.base.show_version(versions, current, layer, head, heads_off, mode)


def connect_explainer(page: Page, handlers: ExplainHandlers) -> list[Dependency]:
    """Bind the explainer panels' events; returns those that select a token (a branch, a
    version shown)."""
    inside, explain = page.inside, page.explain
    knobs = [page.one_head.layer, page.one_head.head, page.heads_off, explain.mode]
    shown = [*page.version_views(), *page.token_views()]
    analysis = [page.heads_off, explain.lens, explain.knockout_grid, explain.knockout_result]
    explain.knockout_grid.select(
        handlers.toggle_head,
        [page.joke_state, page.selected, page.heads_off, explain.mode],
        [*analysis, explain.rewritten],
        **VIEWING,
    )
    explain.mode.input(
        handlers.change_mode,
        [page.joke_state, page.selected, page.heads_off, explain.mode],
        [*analysis, explain.rewritten],
        **VIEWING,
    )
    explain.rewrite.click(
        handlers.rewrite,
        [page.joke_state, page.selected, page.heads_off, explain.mode],
        explain.rewritten,
        **PAGE_WRITING,
    )
    branched = inside.token_info.select(
        handlers.branch_from_candidate,
        [page.versions, explain.versions, page.selected, *knobs],
        shown,
        **PAGE_WRITING,
    )
    switched = explain.versions.input(
        handlers.switch_version, [page.versions, explain.versions, *knobs], shown, **VIEWING
    )
    return [branched, switched]
