"""Attention over training on the page: a slider over the model folder's training snapshots;
each position writes the visitor's joke again with that step's weights
(serving/training_replay.py) and shows it with its attention, lens and head roles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serving.errors import RequestError
from serving.joke import Joke
from serving.training_replay import TrainingReplay
from ui import rendering
from ui.role_badges import role_badges
from ui.snapshot_rendering import render_snapshot
from ui.state import PAGE_WRITING

if TYPE_CHECKING:
    from gradio.events import Dependency

    from ui.layout import Page


class SnapshotHandlers:
    def __init__(self, replay: TrainingReplay):
        self.replay = replay
        shipped = replay.shipped
        snapshots = [] if shipped is None else shipped.snapshots
        self.steps = [s.step for s in snapshots]
        self.history = replay.role_history()
        self.badges = [role_badges(s.roles) for s in snapshots]  # built once per snapshot

    def show_snapshot(self, joke: Joke | None, index: float | None) -> str:
        """The visitor's joke as snapshot `index` writes it."""
        if not self.steps:
            return ""
        if joke is None:
            return rendering.render_placeholder("Ask for a joke: each snapshot writes it again.")
        if joke.replayed:
            return rendering.render_placeholder(
                "This joke was replayed from a trace: the snapshots would have to run the model."
            )
        position = min(max(int(index or 0), 0), len(self.steps) - 1)
        try:
            view = self.replay.view(joke.request, position)
        except RequestError as error:
            return rendering.render_placeholder(error.message)
        note = self.replay.shipped.note
        return render_snapshot(view, note, self.history, self.steps, self.badges[position])


def connect_snapshots(page: Page, handlers: SnapshotHandlers, told: Dependency) -> None:
    panel = page.training
    inputs = [page.joke_state, panel.snapshot]
    panel.snapshot.release(handlers.show_snapshot, inputs, panel.view, **PAGE_WRITING)
    told.success(handlers.show_snapshot, inputs, panel.view, **PAGE_WRITING)
