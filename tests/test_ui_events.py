"""ui/events.py and ui/layout.py: the page's handlers, called as Gradio calls them."""

from __future__ import annotations

import html
import re
from pathlib import Path
from types import SimpleNamespace

from tiny_app import FakeClassifier

import serving.writer
from serving.explainer import Explainer
from serving.labels import printable
from serving.originality import OriginalityCheck
from serving.writer import JokeWriter
from ui.layout import HELP, create_demo


def page_updates(writer: JokeWriter, clean: bool) -> list[str]:
    """The joke card after each update of the page's "Tell me a joke" event, seed 21."""
    demo = create_demo(writer, OriginalityCheck({}), Explainer(writer), "http://127.0.0.1:7860/")
    tell = next(fn.fn for fn in demo.fns.values() if fn.name == "tell_joke")
    request = SimpleNamespace(headers={})
    updates = tell("", 0.8, 50, 0.95, 12, 21, False, clean, 0, 0, [], "zero", request)
    return [value for update in updates for key, value in update.items() if key.elem_id == "joke"]


def test_clean_mode_never_shows_a_flagged_joke_even_in_part(writer, monkeypatch):
    classifier = FakeClassifier(flagged=1)
    monkeypatch.setattr(serving.writer, "is_unfit", classifier)
    cards = page_updates(writer, clean=True)
    flagged, shown = (html.escape(printable(text)) for text in classifier.texts)
    assert len(flagged) >= 3 and flagged != shown  # seed 21's joke was flagged, seed 22's shown
    # "Writing…", then the checked joke: never the flagged one, nor any part of it being written.
    assert len(cards) == 2 and "appears once it has been checked" in cards[0]
    texts = [re.sub(r"<[^>]+>", "", card) for card in cards]  # what the visitor reads
    assert flagged not in "".join(texts) and shown in texts[1] and "this is seed 22" in cards[1]
    # The checked joke's writing is played back in the browser, token by token.
    assert cards[1].count('class="pl-play"') >= 3 and "animation-delay:90ms" in cards[1]
    streamed = page_updates(writer, clean=False)  # without clean mode: token by token
    assert len(streamed) > 3 and flagged in streamed[-1]  # seed 21's joke, shown as written


def test_the_ui_and_the_readme_say_how_top_p_counts_after_top_k():
    # Top-p is not renormalised after top-k (tests/test_sampling.py shows it does not): the
    # visitor's hint and the API docs must say so.
    assert "whole vocabulary" in HELP["p"] and "not renormalised" in HELP["p"]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "top-p counts probability over the whole vocabulary, not\nrenormalised" in readme
