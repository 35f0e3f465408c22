"""The information-flow panel (ui/flow_events.py, ui/flow_rendering.py): drawn for the
selected written token from the explainer's numbers, called as Gradio calls it."""

from __future__ import annotations

import re

import pytest

from model.flow import ATTENTION
from serving.originality import OriginalityCheck
from ui import flow_rendering
from ui.layout import create_demo

SENT = ("Why did the duck cross the road?\nTo", 1.0, 0, 1.0, 8, 3, False)


@pytest.fixture(scope="module")
def handlers(writer, explainer):
    demo = create_demo(writer, OriginalityCheck({}), explainer, "http://127.0.0.1:7860/")
    functions = {fn.name: fn.fn for fn in demo.fns.values()}
    return functions["show"], functions["integrated"]


@pytest.fixture(scope="module")
def joke(writer):
    return writer.write(writer.request(*SENT))


def by_id(update: dict) -> dict[str, str]:
    return {component.elem_id: value for component, value in update.items()}


def test_the_panel_draws_every_edge_of_the_graph_and_each_tokens_share(explainer, handlers, joke):
    show, _ = handlers
    g = joke.generation
    index = len(g.token_ids) - 1
    shown = by_id(show(joke, index, 0.04))
    view = explainer.flow(g.token_ids, g.prompt_length, index - g.prompt_length, 0.04)
    graph = shown["flow"]
    assert graph.count("<path ") == len(view.graph.edges)
    assert graph.count('class="pl-node pl-node-out"') == 1
    assert f"{len(view.graph.edges)} edges at threshold 4%" in graph
    assert f"(token {view.position}), whose stream predicts" in graph
    # Every edge between tokens says how it splits over the heads, for the click.
    between = [e for e in view.graph.edges if e.target.kind == ATTENTION and e.heads]
    assert graph.count("(head 1 ") == len(between)
    assert "information flow" in graph and "attention rollout" in graph
    assert graph.count('<text class="pl-flow-label') == view.position + 1
    # The attribution row has one cell per token up to the predicting stream.
    row = re.search(r"<tr><th>gradient × input</th>(.*?)</tr>", shown["attribution"]).group(1)
    assert row.count("<td") == view.position + 1
    assert "completeness gap" not in shown["attribution"]
    # This joke has a question and its answer: the setup -> punchline table is there.
    assert view.setup_punchline is not None
    table = shown["setup-punchline"]
    assert table.count("<tr>") == 1 + len(view.setup_punchline.punchline)
    assert table.count("<li ") == explainer.config.n_layer


def test_a_higher_threshold_draws_fewer_edges(handlers, joke):
    show, _ = handlers
    index = len(joke.generation.token_ids) - 1
    low = by_id(show(joke, index, 0.0))["flow"].count("<path ")
    high = by_id(show(joke, index, 0.3))["flow"].count("<path ")
    assert 0 < high < low


def test_integrated_gradients_report_their_completeness_gap(handlers, joke):
    _, integrated = handlers
    html = integrated(joke, len(joke.generation.token_ids) - 1)
    assert "integrated gradients" in html and "completeness gap of" in html


def test_a_token_of_the_prompt_or_no_joke_gets_a_hint_not_a_graph(handlers, joke):
    show, integrated = handlers
    assert show(None, None, 0.04) == {}
    hint = by_id(show(joke, 1, 0.04))
    assert "Select a token the model wrote" in hint["flow"] and hint["attribution"] == ""
    assert "Select a token the model wrote" in integrated(joke, 0)


def test_no_setup_and_punchline_says_why():
    assert "no question mark or line break" in flow_rendering.render_setup_punchline(None, [])
