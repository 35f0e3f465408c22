"""Learner mode: "guess the next token". The page hides the joke (CSS, assets/style.css),
shows the tokens before one the model wrote and a few options; a pick reveals the answer,
the model's top five and where its attention was, then "Next token" goes on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from serving.joke import Joke
from ui import learner_rendering, rendering
from ui.state import VIEWING

if TYPE_CHECKING:
    from gradio.events import Dependency

    from ui.layout import Page


def options(joke: Joke, step: int) -> list[tuple[int, str]]:
    """The model's top five at written `step` and the written token, sorted by their text so
    that the order tells nothing of the model's ranking."""
    g = joke.generation
    ids = list(g.candidates[step][0])
    labels = dict(zip(ids, joke.candidate_labels[step], strict=True))
    written = g.token_ids[g.prompt_length + step]
    labels.setdefault(written, joke.labels[g.prompt_length + step])
    return sorted(labels.items(), key=lambda item: (item[1].lower(), item[0]))


class LearnerHandlers:
    def __init__(self, page: Page):
        self.page = page

    def question(self, joke: Joke, state: dict[str, int]) -> dict[Any, Any]:
        """The panel asking for written token state["step"], or the end of the game."""
        learner, step = self.page.learner, state["step"]
        if step >= len(joke.generation.candidates):
            return {learner.panel: learner_rendering.render_finished(state["right"],
                                                                     state["asked"]),
                    learner.state: state}  # fmt: skip
        position = joke.generation.prompt_length + step
        html = learner_rendering.render_question(
            joke.labels, position, options(joke, step), state["right"], state["asked"]
        )
        return {learner.panel: html, learner.state: state}

    def start(self, joke: Joke | None, on: bool) -> dict[Any, Any]:
        """Learner mode switched on, or a new joke while it is on: from the first written token."""
        learner = self.page.learner
        if not on:
            return {learner.panel: "", learner.state: None}
        if joke is None:
            hint = rendering.render_placeholder("Ask for a joke: you will guess it token by token.")
            return {learner.panel: hint, learner.state: None}
        return self.question(joke, {"step": 0, "right": 0, "asked": 0, "answered": 0})

    def guess(
        self, joke: Joke | None, state: dict[str, int] | None, evt: gr.SelectData
    ) -> dict[Any, Any]:
        """A pick: the answer, once per token (a second click changes nothing)."""
        picked = evt.index
        if joke is None or not state or state["answered"] or type(picked) is not int:
            return {}
        step = state["step"]
        if step >= len(joke.generation.candidates):
            return {}
        g = joke.generation
        position = g.prompt_length + step
        written = g.token_ids[position]
        state = {**state, "asked": state["asked"] + 1, "answered": 1}
        state["right"] += picked == written
        html = learner_rendering.render_answer(
            joke.labels,
            position,
            picked,
            written,
            g.candidates[step],
            joke.candidate_labels[step],
            g.attention[:, :, position - 1, :position],
            state["right"],
            state["asked"],
        )
        return {self.page.learner.panel: html, self.page.learner.state: state}

    def next_token(self, joke: Joke | None, state: dict[str, int] | None) -> dict[Any, Any]:
        if joke is None or not state:
            return {}
        return self.question(joke, {**state, "step": state["step"] + 1, "answered": 0})


def connect_learner(page: Page, handlers: LearnerHandlers, told: Dependency) -> None:
    learner = page.learner
    outputs = [learner.panel, learner.state]
    learner.mode.input(handlers.start, [page.joke_state, learner.mode], outputs, **VIEWING)
    told.success(handlers.start, [page.joke_state, learner.mode], outputs, **VIEWING)
    learner.panel.select(handlers.guess, [page.joke_state, learner.state], outputs, **VIEWING)
    learner.next.click(handlers.next_token, [page.joke_state, learner.state], outputs, **VIEWING)
