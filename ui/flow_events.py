"""What happens in the "how information reached it" panel: the flow graph, setup ->
punchline and attribution of the selected token, redrawn after every event that selects a
token (ui/events.py, ui/explain_events.py) and when the threshold moves."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from serving.explainer import Explainer
from serving.joke import Joke
from ui import flow_rendering, rendering
from ui.state import PICK_WRITTEN, VIEWING
from ui.trace_events import replayed_placeholder

if TYPE_CHECKING:
    from gradio.events import Dependency

    from ui.layout import Page


class FlowHandlers:
    def __init__(self, explainer: Explainer, page: Page):
        self.explainer = explainer
        self.page = page

    def show(self, joke: Joke | None, index: int | None, threshold: float) -> dict[Any, Any]:
        """The flow graph, setup -> punchline and gradient x input of the token at `index`."""
        panel = self.page.flow
        if joke is None or index is None:
            return {}
        g = joke.generation
        step = index - g.prompt_length
        if step < 0 or joke.replayed:
            placeholder = (
                replayed_placeholder("information flow or attribution")
                if step >= 0
                else rendering.render_placeholder(
                    PICK_WRITTEN.format(what="how information reached it")
                )
            )
            return {panel.graph: placeholder, panel.setup_punchline: "", panel.attribution: ""}
        flow = self.explainer.flow(g.token_ids, g.prompt_length, step, float(threshold))
        attribution = self.explainer.attribution(g.token_ids, g.prompt_length, step)
        n_layer = self.explainer.config.n_layer
        return {
            panel.graph: flow_rendering.render_flow(flow, joke.labels, n_layer),
            panel.setup_punchline: flow_rendering.render_setup_punchline(
                flow.setup_punchline, joke.labels
            ),
            panel.attribution: flow_rendering.render_attribution(attribution, joke.labels),
        }

    def integrated(self, joke: Joke | None, index: int | None) -> str:
        """Attribution again, with integrated gradients (a few hundred ms: on request)."""
        if joke is None or index is None or index < joke.generation.prompt_length:
            return rendering.render_placeholder(PICK_WRITTEN.format(what="its attribution"))
        if joke.replayed:
            return replayed_placeholder("attribution")
        g = joke.generation
        step = index - g.prompt_length
        view = self.explainer.attribution(g.token_ids, g.prompt_length, step, integrated=True)
        return flow_rendering.render_attribution(view, joke.labels)


def connect_flow(page: Page, handlers: FlowHandlers, selecting: Iterable[Dependency]) -> None:
    """Redraw the panel after each event in `selecting` (they set the selected token), and
    when the threshold is moved; integrated gradients on their button."""
    panel = page.flow
    inputs = [page.joke_state, page.selected, panel.threshold]
    outputs = [panel.graph, panel.setup_punchline, panel.attribution]
    for event in selecting:
        event.success(handlers.show, inputs, outputs, **VIEWING)
    panel.threshold.release(handlers.show, inputs, outputs, **VIEWING)
    panel.integrated.click(
        handlers.integrated, [page.joke_state, page.selected], panel.attribution, **VIEWING
    )
