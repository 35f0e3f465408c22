"""Learner mode (ui/learner_events.py, ui/learner_rendering.py): the next token is hidden,
the options give nothing away, a pick is scored once and reveals the answer."""

from __future__ import annotations

import re

import gradio as gr
import pytest

from serving.explainer import Explainer
from serving.originality import OriginalityCheck
from serving.writer import JokeWriter
from ui.layout import create_demo
from ui.learner_events import options

SENT = ("Why did the", 1.0, 0, 1.0, 6, 4, False)


@pytest.fixture(scope="module")
def handlers(writer: JokeWriter):
    demo = create_demo(writer, OriginalityCheck({}), Explainer(writer), "http://127.0.0.1:7860/")
    return {fn.name: fn.fn for fn in demo.fns.values()}


@pytest.fixture(scope="module")
def joke(writer):
    return writer.write(writer.request(*SENT))


def by_id(update: dict) -> dict:
    return {
        getattr(component, "elem_id", None) or "state": value for component, value in update.items()
    }


def pick(token_id: int) -> gr.SelectData:
    return gr.SelectData(None, {"index": token_id, "value": ""})


def test_the_options_hold_the_written_token_and_the_top_five_in_text_order(joke):
    g = joke.generation
    for step in range(len(g.candidates)):
        chosen = options(joke, step)
        ids = [token_id for token_id, _ in chosen]
        assert g.token_ids[g.prompt_length + step] in ids
        assert set(g.candidates[step][0]) <= set(ids) and len(ids) <= 6
        labels = [label.lower() for _, label in chosen]
        assert labels == sorted(labels)  # not the model's ranking


def test_a_game_hides_the_token_scores_each_pick_once_and_ends(handlers, joke):
    g = joke.generation
    started = by_id(handlers["start"](joke, True))
    state = started["state"]
    assert state == {"step": 0, "right": 0, "asked": 0, "answered": 0}
    question = started["learner"]
    assert question.count('class="pl-chip pl-guess"') == len(options(joke, 0))
    shown = re.findall(r'<span class="pl-chip(?! pl-hidden)[^"]*">([^<]*)</span>', question)
    assert len(shown) == g.prompt_length  # the tokens read so far
    assert question.count('class="pl-chip pl-hidden"') == 1  # the written one, hidden
    written = g.token_ids[g.prompt_length]
    answer = by_id(handlers["guess"](joke, state, pick(written)))
    assert "Right: the model wrote" in answer["learner"]
    assert answer["state"]["right"] == 1 and answer["state"]["asked"] == 1
    assert "Where it looked" in answer["learner"] and answer["learner"].count("layer ") >= 2
    assert handlers["guess"](joke, answer["state"], pick(written)) == {}  # counted once
    state = answer["state"]
    for step in range(1, len(g.candidates)):
        state = by_id(handlers["next_token"](joke, state))["state"]
        assert state["step"] == step and state["answered"] == 0
        wrong = next(i for i, _ in options(joke, step) if i != g.token_ids[g.prompt_length + step])
        answer = by_id(handlers["guess"](joke, state, pick(wrong)))
        assert "you picked" in answer["learner"]
        state = answer["state"]
    assert state["right"] == 1 and state["asked"] == len(g.candidates)
    finished = by_id(handlers["next_token"](joke, state))["learner"]
    assert f"you guessed 1 of {len(g.candidates)} tokens" in finished


def test_learner_mode_off_or_without_a_joke(handlers, joke):
    assert by_id(handlers["start"](joke, False)) == {"learner": "", "state": None}
    assert "Ask for a joke" in by_id(handlers["start"](None, True))["learner"]
    assert handlers["guess"](joke, None, pick(1)) == {}
    assert handlers["next_token"](None, None) == {}
