"""A checked request and the joke it wrote: the two values the service hands around.

The model's result (`model.generate.Generation`) is the one record of what was generated;
a Joke adds only what showing it needs: the request that asked for it and display labels.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.generate import Generation, SamplingSettings
from serving.explanations import LensView


@dataclass(frozen=True)
class JokeRequest:
    prompt: str  # the opening words exactly as the model reads them (cleaned, maybe trimmed)
    prompt_ids: list[int]
    settings: SamplingSettings
    trimmed: int  # prompt tokens dropped from the left to fit the context
    capped: bool  # max_new_tokens was lowered to the room left after the prompt
    notes: list[str]
    clean: bool = False  # check the finished joke for offensive language before showing it


@dataclass
class Joke:
    """A finished joke and everything the views need; kept in the visitor's gr.State."""

    request: JokeRequest
    generation: Generation  # tokens, attention (layers, heads, T, T), candidates, ended
    labels: list[str]  # display text of each token of generation.token_ids
    candidate_labels: list[list[str]]  # display text of each written token's candidates
    written: str  # the model's words
    # A joke read from a trace (serving/trace.py): the lens of each written token as the trace
    # holds it. The model is never run for such a joke. None: a joke written here.
    traced_lens: list[LensView] | None = None

    @property
    def replayed(self) -> bool:
        """Read from a trace: the views show what the trace holds, and nothing that would run
        the model (knockouts, branches, flow, attribution, snapshots) is offered."""
        return self.traced_lens is not None

    @property
    def text(self) -> str:
        """The joke as shown: the opening words as the model read them, then its own words."""
        return self.request.prompt + self.written


@dataclass
class Version:
    """One version of a visitor's joke: the original, or a branch of an earlier version."""

    joke: Joke
    name: str
    parent: int | None = None  # the version it branched from
    fork: int | None = None  # the position where it took another token
