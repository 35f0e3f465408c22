"""Attention over training: the visitor's request written again by each training snapshot the
model folder ships (model/checkpoint.py Snapshots), same prompt, settings and seed.

For a snapshot it gives the joke that step's weights write, the logit lens at its last written
token and the heads' roles then; `role_history` gives each role's best score over the heads at
every snapshot, the points of the page's small plot. The weights stay compact in memory
(int8) and become float32 for one request at a time: the compiled writer and lens take them
as arguments, so no snapshot compiles anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from data.clean_mode import is_unfit
from model.checkpoint import model_from_parameters
from model.roles import KINDS
from model.snapshots import Snapshot, Snapshots, load_snapshots
from serving.errors import RequestError
from serving.explainer import Explainer
from serving.explanations import LensView
from serving.joke import Joke, JokeRequest
from serving.validation import validate_snapshot


@dataclass(frozen=True)
class SnapshotView:
    index: int
    snapshot: Snapshot
    joke: Joke | None  # None: clean mode flagged what this snapshot wrote
    lens: LensView | None  # at the last written token; None when nothing was written


class TrainingReplay:
    def __init__(self, explainer: Explainer):
        self.explainer = explainer
        writer = explainer.writer
        self.shipped: Snapshots | None = load_snapshots(writer.folder, writer.model)

    @property
    def count(self) -> int:
        return 0 if self.shipped is None else len(self.shipped.snapshots)

    def checked_index(self, index: Any) -> int:
        """`index` as a snapshot's index, or RequestError naming what is wrong."""
        if self.shipped is None:
            raise RequestError(
                "this model folder ships no training snapshots: train with --snapshots, or add a "
                "run's with python -m training.snapshots"
            )
        return validate_snapshot(index, self.count)

    def view(self, job: JokeRequest, index: Any) -> SnapshotView:
        """`job` written by snapshot `index`, its lens at the last written token."""
        index = self.checked_index(index)
        snapshot = self.shipped.snapshots[index]
        writer = self.explainer.writer
        at_step = model_from_parameters(writer.model, snapshot.weights())
        weights = writer.generator.parameter_list(at_step)
        joke = writer.write(job, weights=weights)
        if job.clean and is_unfit([joke.text])[0]:
            return SnapshotView(index, snapshot, None, None)
        g = joke.generation
        written = len(g.token_ids) - g.prompt_length
        lens = None
        if written:
            lens = self.explainer.lens(g.token_ids, g.prompt_length, written - 1, weights)
        return SnapshotView(index, snapshot, joke, lens)

    def role_history(self) -> dict[str, list[float]]:
        """Each role kind's best score over the heads, at every snapshot in order."""
        if self.shipped is None:
            return {}
        return {
            kind: [float(s.roles.scores[kind].max()) for s in self.shipped.snapshots]
            for kind in KINDS
        }
