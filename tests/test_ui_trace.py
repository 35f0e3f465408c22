"""Saving and replaying traces on the page (ui/trace_events.py): the download link holds the
trace of every version, a replay shows it without running the model, and a bad trace is
named in the card."""

from __future__ import annotations

import base64
import json
import re

import pytest

from serving.joke import Version
from serving.originality import OriginalityCheck
from serving.trace import MAX_TRACE_BYTES, read_trace
from ui.gradio_internals import MAX_BODY_BYTES
from ui.layout import create_demo

SENT = ("Why did the duck", 1.0, 0, 1.0, 10, 3, False)


@pytest.fixture(scope="module")
def handlers(writer, explainer):
    demo = create_demo(writer, OriginalityCheck({}), explainer, "http://127.0.0.1:7860/")
    return {fn.name: fn.fn for fn in demo.fns.values()}


@pytest.fixture(scope="module")
def versions(writer, explainer):
    joke = writer.write(writer.request(*SENT))
    return [Version(joke, "Original"), Version(explainer.branch(joke, 1, 7), "Branch 1", 0, 5)]


def by_id(update: dict) -> dict:
    return {getattr(c, "elem_id", None) or id(c): value for c, value in update.items()}


def saved_text(link_html: str) -> str:
    uri = re.search(r'href="data:application/json;base64,([^"]+)"', link_html).group(1)
    return base64.b64decode(uri).decode()


def test_the_link_downloads_the_trace_of_every_version(handlers, versions):
    link = handlers["save"](versions)
    assert 'download="punchline-trace-seed-3.json"' in link and "2 versions" in link
    trace = json.loads(saved_text(link))
    assert [v["name"] for v in trace["versions"]] == ["Original", "Branch 1"]
    assert "Ask for a joke first" in handlers["save"](None)


def test_a_replay_shows_the_joke_from_the_trace_without_the_model(handlers, versions, monkeypatch):
    text = saved_text(handlers["save"](versions))
    explainer = handlers["replay"].__self__.base.explainer
    for name in ("lens", "importance", "knockout", "flow", "attribution", "branch", "rewrite"):
        monkeypatch.setattr(explainer, name, lambda *a, **k: pytest.fail("the model ran"))
    shown = by_id(handlers["replay"](text, 0, 0, [], "zero"))
    joke = versions[0].joke
    assert "Replayed from a trace" in shown["joke"]
    assert shown["tokens"].count("data-index=") == len(joke.labels)
    assert "pl-lens" in shown["lens"]  # the lens, read from the trace
    assert "holds no knockouts" in shown["knockout"]
    state = next(v for v in shown.values() if getattr(v, "traced_lens", None) is not None)
    assert state.generation.token_ids == joke.generation.token_ids
    flow = handlers["show"](state, len(joke.labels) - 1, 0.04)
    assert any("holds no information flow" in value for value in flow.values())
    assert "holds no attribution" in handlers["integrated"](state, len(joke.labels) - 1)


@pytest.mark.parametrize("text", ["", "{}", "not a trace", '{"format": "punchline-trace-v0"}'])
def test_a_bad_trace_is_named_in_the_card(handlers, text):
    shown = by_id(handlers["replay"](text, 0, 0, [], "zero"))
    assert list(shown) == ["joke"]
    assert "Save the trace" in shown["joke"]


def test_a_replayed_joke_is_not_saved_again(handlers, versions, writer):
    text = saved_text(handlers["save"](versions))
    replayed, _ = read_trace(text, writer.config)
    assert "replayed trace already" in handlers["save"](replayed)


def test_any_trace_the_page_accepts_fits_in_a_request_the_app_reads():
    """A replayed trace travels inside a JSON request, where escaping can double it (every
    character a quote): the app must still read such a request, not refuse it with 413."""
    worst = '"' * MAX_TRACE_BYTES
    request = {"data": [worst], "event_data": None, "fn_index": 99, "session_hash": "x" * 100}
    assert len(json.dumps(request).encode()) <= MAX_BODY_BYTES
