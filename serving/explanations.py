"""What the explainer answers: one frozen dataclass per analysis of a written token
(serving/explainer.py computes them; ui/ draws them, serving/api.py writes them as JSON,
serving/trace.py saves them)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.flow import FlowGraph


@dataclass(frozen=True)
class Candidate:
    token_id: int
    label: str
    probability: float


@dataclass(frozen=True)
class LayerGuess:
    layer: int  # 0: the embeddings alone; l: after block l (the last is the model's output)
    top: list[Candidate]
    chosen_probability: float  # of the written token
    chosen_rank: int  # 0: the layer's top guess


@dataclass(frozen=True)
class LensView:
    step: int
    token_id: int  # the written token
    predicting: str  # its label
    layers: list[LayerGuess]
    commitment: int | None  # from this layer on the top guess is the written token
    heatmap: np.ndarray  # (L+1, written): each layer's probability of each written token


@dataclass(frozen=True)
class SetupPunchline:
    """Which setup tokens the punchline's tokens drew on, by information flow."""

    setup: list[int]  # positions of the setup's tokens (after the start token)
    punchline: list[int]  # positions of the punchline's tokens (the end-of-joke token aside)
    total: np.ndarray  # (P, S): the share of each punchline token's predicting stream that
    #                    came from each setup token, every route through every layer
    per_layer: np.ndarray  # (L, P, S): what each layer's attention read from the setup directly


@dataclass(frozen=True)
class FlowView:
    step: int
    position: int  # the stream the output reads to predict written token `step`
    threshold: float
    graph: FlowGraph
    token_flow: np.ndarray  # (position + 1,): the share of that stream from each token
    rollout: np.ndarray  # (position + 1,): attention rollout's approximation of the same
    setup_punchline: SetupPunchline | None  # None: no question and answer, no line break


@dataclass(frozen=True)
class AttributionView:
    step: int
    position: int  # the stream that predicts written token `step`
    gradient_times_input: np.ndarray  # (position + 1,): per token, in nats of log p
    attention: np.ndarray  # (position + 1,): the attention paid from `position`, mean over
    #                        every layer and head
    integrated: np.ndarray | None  # (position + 1,): integrated gradients, when asked for
    completeness_gap: float | None  # sum of integrated - (log p(real) - log p(baseline))
    change: float | None  # log p(real) - log p(start token in every place)


@dataclass(frozen=True)
class KnockoutView:
    step: int
    heads: list[tuple[int, int]]
    mode: str
    before: list[Candidate]  # the top five with every head
    after: list[Candidate]  # the top five with the heads off
    chosen_before: float  # the written token's probability with every head
    chosen_after: float
    change_bits: float  # log2 p(after) - log2 p(before) of the written token
