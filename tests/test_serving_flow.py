"""/flow and /attribution on the tiny model (serving/explainer.py, serving/api.py): the
answers describe the very joke /generate wrote, add up as model/flow.py promises, and refuse
bad thresholds and flags with one line naming them."""

from __future__ import annotations

import numpy as np
import pytest

from model.flow import ATTENTION, BLOCK, EMBEDDING
from serving.api import attribution_json, flow_json, trunk_joke
from serving.errors import RequestError
from serving.explainer import punchline_start, written

SENT = ("Why did the duck cross the road?\nTo", 1.0, 0, 1.0, 10, 3, False)
STEP = 3


@pytest.fixture(scope="module")
def ask(writer, explainer):
    return lambda endpoint, sent=SENT, **asked: endpoint(writer, explainer, *sent, **asked)


def test_the_punchline_starts_after_the_first_question_mark_or_line_break():
    assert punchline_start(["Why", " duck", "?", " To", " swim"]) == 3
    assert punchline_start(["A", " duck", "\n", "Quack"]) == 3
    assert punchline_start(["Why", "?", " ", "!"]) == 2  # text after it: "!"
    assert punchline_start(["Why", " duck", "?"]) is None  # nothing after it
    assert punchline_start(["Why", "?", "  "]) is None  # only spaces after it
    assert punchline_start(["A", " plain", " line"]) is None


def test_the_flow_graph_leads_from_earlier_tokens_to_the_predicting_stream(writer, ask):
    joke = trunk_joke(writer, *SENT)
    g = joke.generation
    answer = ask(flow_json, step=STEP, threshold=0.0)
    position = g.prompt_length + STEP - 1
    assert answer["position"] == position and answer["seed"] == 3
    assert len(answer["tokens"]) == len(g.token_ids)
    last = writer.config.n_layer - 1
    assert answer["nodes"][0] == {"kind": BLOCK, "layer": last, "token": position}
    # At threshold 0 every token up to the position is reached, none after it.
    reached = {n["token"] for n in answer["nodes"] if n["kind"] == EMBEDDING}
    assert reached == set(range(position + 1))
    for edge in answer["edges"]:
        assert 0 <= edge["weight"] <= 1 + 1e-6
        if edge["target"]["kind"] == ATTENTION and edge["heads"] is not None:
            assert len(edge["heads"]) == writer.config.n_head
            assert sum(edge["heads"]) == pytest.approx(edge["weight"], abs=1e-3)
    assert len(answer["token_flow"]) == len(answer["rollout"]) == position + 1
    assert sum(answer["token_flow"]) == pytest.approx(1, abs=1e-3)
    assert sum(answer["rollout"]) == pytest.approx(1, abs=1e-3)
    pruned = ask(flow_json, step=STEP, threshold=0.3)
    assert len(pruned["edges"]) < len(answer["edges"])
    assert all(e["weight"] >= 0.3 for e in pruned["edges"])


def test_a_joke_with_a_question_and_an_answer_shows_what_the_punchline_drew_on(
    writer, explainer, ask
):
    joke = trunk_joke(writer, *SENT)
    pieces = writer.labels(joke.generation.token_ids, start=True)
    drawn = ask(flow_json, step=0, threshold=0.04)["setup_punchline"]
    assert drawn is not None
    setup, punchline = drawn["setup"], drawn["punchline"]
    assert setup[0] == 1 and punchline[0] == setup[-1] + 1  # the start token is neither
    assert "?" in pieces[setup[-1]] or "↵" in pieces[setup[-1]] or "\\n" in pieces[setup[-1]]
    total = np.array(drawn["total"])
    assert total.shape == (len(punchline), len(setup))
    assert total.min() >= 0 and np.all(total.sum(axis=1) <= 1 + 1e-3)
    per_layer = np.array(drawn["per_layer"])
    assert per_layer.shape == (writer.config.n_layer, len(punchline), len(setup))
    # A joke with no question mark or line break has no such view.
    plain = [writer.end_of_joke, *writer.request("A duck walks to the pond", 1.0, 0, 1.0, 3, 3,
                                                 False).prompt_ids]  # fmt: skip
    assert explainer.flow(plain, len(plain) - 1, 0, 0.04).setup_punchline is None


def test_attribution_scores_every_earlier_token_and_integrated_gradients_add_up(writer, ask):
    joke = trunk_joke(writer, *SENT)
    position = joke.generation.prompt_length + STEP - 1
    quick = ask(attribution_json, step=STEP, integrated=False)
    assert len(quick["gradient_times_input"]) == len(quick["attention"]) == position + 1
    assert quick["tokens"] == quick["tokens"][: position + 1]
    assert sum(quick["attention"]) == pytest.approx(1, abs=1e-3)  # a mean of softmax rows
    assert quick["integrated_gradients"] is None and quick["completeness_gap"] is None
    full = ask(attribution_json, step=STEP, integrated=True)
    assert full["gradient_times_input"] == quick["gradient_times_input"]
    assert len(full["integrated_gradients"]) == position + 1
    assert abs(full["completeness_gap"]) < 0.05 * abs(full["change"]) + 0.01
    assert len(written(joke)) > STEP


@pytest.mark.parametrize("threshold", [-0.1, 1.5, "0.1", None, float("nan"), True])
def test_a_bad_threshold_is_refused_naming_threshold(ask, threshold):
    with pytest.raises(RequestError) as error:
        ask(flow_json, step=0, threshold=threshold)
    assert error.value.message.startswith("threshold must be a number from 0 to 1")


@pytest.mark.parametrize("integrated", ["yes", 1, None, "false"])
def test_integrated_must_be_true_or_false(ask, integrated):
    with pytest.raises(RequestError) as error:
        ask(attribution_json, step=0, integrated=integrated)
    assert error.value.message.startswith("integrated must be true or false")
