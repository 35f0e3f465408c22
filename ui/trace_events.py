"""Save the visitor's joke and its branches as a trace, and replay a trace without the model
(serving/trace.py). A trace comes in as text in the request (pasted, or read in the browser
from a file the visitor picks): no upload, nothing written to disk."""

from __future__ import annotations

import base64
import html
import json
from typing import TYPE_CHECKING, Any

from serving.errors import RequestError
from serving.joke import Version
from serving.trace import MAX_TRACE_BYTES, read_trace, trace_json
from ui import rendering
from ui.state import VIEWING, Heads

if TYPE_CHECKING:
    from gradio.events import Dependency

    from ui.events import Handlers
    from ui.layout import Page

REPLAYED = (
    "Replayed from a trace: everything shown comes from the file, and the model is not run. "
    "Knockouts, information flow, attribution and branches need the model: ask for the joke "
    "again to use them."
)


def replayed_placeholder(what: str) -> str:
    return rendering.render_placeholder(
        f"This joke was replayed from a trace, which holds no {what}: the model is not run for it."
    )


class TraceHandlers:
    def __init__(self, base: Handlers):
        self.base = base

    def save(self, versions: list[Version] | None) -> str:
        """A link that downloads the trace of the joke and its branches (a data: URI: the file
        is made in the page, never stored on the server)."""
        if not versions:
            return rendering.render_placeholder("Ask for a joke first.")
        if versions[0].joke.replayed:
            return rendering.render_placeholder("This joke is a replayed trace already.")
        data = json.dumps(trace_json(versions, self.base.explainer), separators=(",", ":"))
        if len(data) > MAX_TRACE_BYTES:
            return rendering.render_placeholder(
                f"The trace of these {len(versions)} versions would be {len(data) / 1e6:.1f} MB, "
                f"over the {MAX_TRACE_BYTES / 1e6:.0f} MB a replay reads: save it with fewer "
                "branches (ask for the joke again, then branch less)."
            )
        seed = versions[0].joke.request.settings.seed
        name = f"punchline-trace-seed-{seed}.json"
        uri = "data:application/json;base64," + base64.b64encode(data.encode()).decode("ascii")
        return (
            f'<p class="pl-trace-link"><a href="{uri}" download="{html.escape(name)}">Download '
            f"{html.escape(name)}</a> ({len(data) / 1000:,.0f} kB, {len(versions)} version"
            f"{'s' * (len(versions) != 1)})</p>"
        )

    def replay(
        self, text: str, layer: int, head: int, heads_off: Heads, mode: str
    ) -> dict[Any, Any]:
        """Show the trace's versions as the page showed them, the original first."""
        page = self.base.page
        try:
            versions, _ = read_trace(text if isinstance(text, str) else "", self.base.writer.config)
        except RequestError as error:
            return {page.joke.card: rendering.render_placeholder(error.message)}
        versions[0].joke.request.notes.insert(0, REPLAYED)
        return self.base.show_version(versions, 0, layer, head, heads_off, mode)


def connect_trace(page: Page, handlers: TraceHandlers) -> Dependency:
    """Bind saving and replaying; returns the replay event (it selects a token)."""
    joke = page.joke
    joke.save_trace.click(handlers.save, [page.versions], joke.trace_link, **VIEWING)
    knobs = [page.one_head.layer, page.one_head.head, page.heads_off, page.explain.mode]
    shown = [*page.version_views(), *page.token_views()]
    return joke.replay.click(handlers.replay, [joke.trace_text, *knobs], shown, **VIEWING)
