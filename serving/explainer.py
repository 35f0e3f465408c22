"""Explainer: why the model wrote each token, for every visitor, compiled once.

For a written token (its `step`: 0 is the first token the model wrote) it answers:

- `lens`: what each layer would have predicted there (model/lens.py), and the written
  token's probability at every layer and step of the joke (the heatmap);
- `knockout`: the top five before and after switching heads off (model/knockout.py), and
  `rewrite`: the rest of the joke written again with those heads off, same seed;
- `importance`: the effect of knocking out each single head (model/ablation.py);
- `branch`: the joke with another token forced at that step, written on with its seed;
- `flow`: the routes by which information reached it (model/flow.py), with attention
  rollout beside it, and for a joke with a setup and a punchline, which setup tokens each
  punchline token drew on;
- `attribution`: gradient x input of its log-probability for each earlier token, beside the
  attention paid to it, and integrated gradients on request (model/attribution.py).

The token at position p is predicted by the model's output at position p - 1: every
analysis of a step reads that position. The compiled functions (jax.jit) take the weights as
a list of arrays and the tokens padded to the whole context, so each compiles once, in
`warm_up`, and no joke's length compiles anything new. The app runs `warm_up` in the
background (`start_warm_up`), so that its page answers once the writer is compiled; an
analysis asked for meanwhile waits for it rather than compiling the same program twice.

One length rather than the writer's five (model/generate.py prefill_lengths) keeps about 155 MB
less in the server on the shipped model, each length's compiled analyses holding 40-65 MB; a
short joke's importance map takes about 75 ms instead of 19 (benchmarks/explainer_speed.py).
Integrated gradients are the exception: they run the model forward and back at every point of
their path, so they read only the shortest of a quarter, half or the whole context that holds
the position (the causal mask makes later tokens irrelevant), compiled for those three lengths.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from data.clean_mode import is_unfit
from data.tokenizer import token_strings
from model.ablation import importance_map, knockout_effect
from model.attribution import gradient_times_input, integrated_gradients
from model.checkpoint import load_head_means, load_head_roles
from model.flow import Flow, attention_rollout, flow_graph, information_flow, token_flow
from model.generate import CANDIDATES, Generation
from model.knockout import MEAN, MODES, ZERO, knockout
from model.lens import lens_log_probs, read_lens
from model.trace import trace
from serving.errors import RequestError
from serving.explanations import (
    AttributionView,
    Candidate,
    FlowView,
    KnockoutView,
    LayerGuess,
    LensView,
    SetupPunchline,
)
from serving.joke import Joke, JokeRequest
from serving.writer import JokeWriter

LENS_TOP = 3  # guesses shown per layer
FLOW_THRESHOLD = 0.04  # the graph's default: LLM Transparency Tool's
BITS = 1 / math.log(2)  # natural-log differences times this are differences in bits
PATH_SHARES = (4, 2, 1)  # integrated gradients read a quarter, half or all of the context


def punchline_start(pieces: Sequence[str]) -> int | None:
    """Where a joke's punchline starts: the first token after its first question mark or line
    break that has more text after it, or None. pieces: the text of each token."""
    for index, piece in enumerate(pieces[:-1]):
        if ("?" in piece or "\n" in piece) and "".join(pieces[index + 1 :]).strip():
            return index + 1
    return None


def surprisal_bits(generation: Generation) -> np.ndarray:
    """-log2 p of each written token under the model's own distribution: (written,)."""
    return -np.log2(np.maximum(np.asarray(generation.chosen_probabilities, np.float64), 1e-30))


class Explainer:
    """The analyses of one JokeWriter's model, compiled once and shared by every visitor."""

    def __init__(self, writer: JokeWriter):
        self.writer = writer
        self.config = c = writer.config
        # The mean outputs are None for a folder exported before they existed: then only
        # zero ablation is offered.
        self.head_means = load_head_means(writer.folder, c)
        self.head_roles = load_head_roles(writer.folder, c)  # None: the folder has none
        self.zeros = np.zeros((c.n_layer, c.n_head, c.d_head), np.float32)
        self.blank = np.int32(writer.end_of_joke)  # integrated gradients' baseline token
        graphdef, params = nnx.split(writer.model)
        structure = jax.tree.structure(params)
        self.weights = jax.tree.leaves(params)

        def model_of(weights):
            return nnx.merge(graphdef, jax.tree.unflatten(structure, weights))

        def lens(weights, tokens, position):
            model = model_of(weights)
            log_probs = lens_log_probs(model, trace(model, tokens).residuals)[0]  # (L+1, T, V)
            following = jnp.roll(tokens[0], -1)  # (T,): the token written after each position
            chosen = jnp.take_along_axis(log_probs, following[None, :, None], axis=-1)[..., 0]
            return chosen, log_probs[:, position]  # (L+1, T), (L+1, V)

        self._lens = jax.jit(lens)
        self._effect = jax.jit(lambda w, *args: knockout_effect(model_of(w), *args))
        self._importance = jax.jit(lambda w, *args: importance_map(model_of(w), *args))

        def flow(weights, tokens):
            model = model_of(weights)
            return information_flow(model, tokens), trace(model, tokens).attention

        self._flow = jax.jit(flow)

        def gradient(weights, tokens, position, chosen):
            model = model_of(weights)
            attention = trace(model, tokens).attention  # (1, L, H, T, T)
            return gradient_times_input(model, tokens, position, chosen), attention

        self._gradient = jax.jit(gradient)
        self._integrated = jax.jit(lambda w, *args: integrated_gradients(model_of(w), *args))
        # Set while no background warm-up runs: only then may a visitor's analysis start.
        self._warmed = threading.Event()
        self._warmed.set()
        self._warming_thread: int | None = None

    @property
    def modes(self) -> tuple[str, ...]:
        """The knockout modes this model offers."""
        return MODES if self.head_means is not None else (ZERO,)

    def replacement(self, mode: str) -> np.ndarray:
        """What a head outputs while knocked out: (L, H, d_head)."""
        if mode == MEAN:
            if self.head_means is None:
                raise RequestError(
                    "mode='mean' needs the mean head outputs, which this model folder does not "
                    "ship: use mode='zero', or add them with python -m training.head_analyses "
                    f"{self.writer.folder}"
                )
            return self.head_means
        return self.zeros

    def _padded(self, token_ids: Sequence[int]) -> np.ndarray:
        """(1, block_size) tokens: `token_ids` padded with the end-of-joke token."""
        tokens = np.full((1, self.config.block_size), self.writer.end_of_joke, np.int32)
        tokens[0, : len(token_ids)] = token_ids
        return tokens

    @property
    def path_lengths(self) -> list[int]:
        """The lengths integrated gradients are compiled for, shortest first."""
        return [self.config.block_size // share for share in PATH_SHARES]

    def _candidates(self, ids: Sequence[int], probabilities: Sequence[float]) -> list[Candidate]:
        labels = self.writer.labels(list(ids), start=False)
        return [
            Candidate(int(i), label, float(p))
            for i, label, p in zip(ids, labels, probabilities, strict=True)
        ]

    def start_warm_up(self, done: Callable[[float], None] | None = None) -> threading.Thread:
        """Compile every analysis in a background thread; `done(seconds)` is called after.

        Until it ends, each analysis waits for it (a visitor who clicks a token in the first
        seconds gets the answer when the compilation is done, not a second compilation)."""
        self._warmed.clear()

        def run() -> None:
            self._warming_thread = threading.get_ident()
            started = time.perf_counter()
            try:
                self.warm_up()
            finally:
                self._warming_thread = None
                self._warmed.set()
            if done is not None:
                done(time.perf_counter() - started)

        thread = threading.Thread(target=run, name="explainer-warm-up", daemon=True)
        thread.start()
        return thread

    def _wait_for_warm_up(self) -> None:
        """Block a visitor's analysis until a background warm-up is over (not the warm-up's own)."""
        if threading.get_ident() != self._warming_thread:
            self._warmed.wait()

    def warm_up(self) -> None:
        """Compile every analysis, before the first visitor."""
        ids = [self.writer.end_of_joke] * 2  # the start token as the prompt, one written
        self.lens(ids, 1, 0)
        self.knockout(ids, 1, 0, [(0, 0)], ZERO)
        self.importance(ids, 1, 0, ZERO)
        self.flow(ids, 1, 0, FLOW_THRESHOLD)
        self.attribution(ids, 1, 0)
        for length in self.path_lengths:
            tokens = self._padded(ids)[:, :length]
            self._integrated(self.weights, tokens, np.int32(0), np.int32(0), self.blank)

    # Each analysis reads a sequence `token_ids` whose first `prompt_length` tokens are the
    # start token and the prompt; `step` counts the written tokens after them.

    def lens(
        self,
        token_ids: Sequence[int],
        prompt_length: int,
        step: int,
        weights: list[jax.Array] | None = None,
    ) -> LensView:
        """The logit lens at written token `step`, and the heatmap over every written one;
        with other `weights` of the same shapes (a training snapshot's), theirs."""
        self._wait_for_warm_up()
        position = prompt_length + step
        weights = self.weights if weights is None else weights
        chosen, at_position = self._lens(weights, self._padded(token_ids), position - 1)
        reading = read_lens(np.asarray(at_position), token_ids[position], LENS_TOP)
        layers = [
            LayerGuess(
                layer,
                self._candidates(reading.top_ids[layer], reading.top_probabilities[layer]),
                float(reading.chosen_probability[layer]),
                int(reading.chosen_rank[layer]),
            )
            for layer in range(self.config.n_layer + 1)
        ]
        # Column s: the prediction of written token s, read at the position before it.
        heatmap = np.exp(np.asarray(chosen)[:, prompt_length - 1 : len(token_ids) - 1])
        label = self.writer.labels([token_ids[position]], start=False)[0]
        return LensView(step, token_ids[position], label, layers, reading.commitment, heatmap)

    def knockout(
        self,
        token_ids: Sequence[int],
        prompt_length: int,
        step: int,
        heads: list[tuple[int, int]],
        mode: str,
    ) -> KnockoutView:
        """The top five at written token `step` with every head, and with `heads` off."""
        self._wait_for_warm_up()
        position = prompt_length + step
        heads_off = knockout(self.config, heads, self.replacement(mode))
        clean, knocked = self._effect(
            self.weights, self._padded(token_ids[:position]), np.int32(position - 1), heads_off
        )
        clean, knocked = np.asarray(clean), np.asarray(knocked)  # (V,) log-probabilities
        views = []
        for log_probs in (clean, knocked):
            top = np.argsort(-log_probs, kind="stable")[:CANDIDATES]
            views.append(self._candidates(top, np.exp(log_probs[top])))
        chosen = token_ids[position]
        return KnockoutView(
            step=step,
            heads=heads,
            mode=mode,
            before=views[0],
            after=views[1],
            chosen_before=float(np.exp(clean[chosen])),
            chosen_after=float(np.exp(knocked[chosen])),
            change_bits=float(knocked[chosen] - clean[chosen]) * BITS,
        )

    def importance(
        self, token_ids: Sequence[int], prompt_length: int, step: int, mode: str
    ) -> np.ndarray:
        """(L, H): the change in log2 p of written token `step` when each single head is
        knocked out, in bits (negative: the head helped write it)."""
        self._wait_for_warm_up()
        position = prompt_length + step
        grid = self._importance(
            self.weights,
            self._padded(token_ids[:position]),
            np.int32(position - 1),
            np.int32(token_ids[position]),
            self.replacement(mode),
        )
        return np.asarray(grid, np.float64) * BITS

    def flow(
        self, token_ids: Sequence[int], prompt_length: int, step: int, threshold: float
    ) -> FlowView:
        """How information reached written token `step`: the graph of every contribution of
        at least `threshold` into the stream that predicts it, and the flow per token."""
        self._wait_for_warm_up()
        position = prompt_length + step - 1
        flow, attention = self._flow(self.weights, self._padded(token_ids))
        length = len(token_ids)
        # NumPy before any slicing: slicing a jax.Array compiles a program for each length.
        flow = Flow(*(np.asarray(part, np.float64)[0] for part in flow))  # one row
        flow = Flow(  # the joke's tokens only: padding comes after them and never matters
            flow.attention[:, :length, :length],
            *(part[:, :length] for part in flow[1:]),
        )
        shares = token_flow(flow)
        attention = np.asarray(attention, np.float64)[0, :, :, :length, :length]  # (L, H, T, T)
        rollout = attention_rollout(attention)
        return FlowView(
            step=step,
            position=position,
            threshold=threshold,
            graph=flow_graph(flow, position, threshold),
            token_flow=shares[position, : position + 1],
            rollout=rollout[position, : position + 1],
            setup_punchline=self._setup_punchline(token_ids, flow, shares),
        )

    def _setup_punchline(
        self, token_ids: Sequence[int], flow: Flow, shares: np.ndarray
    ) -> SetupPunchline | None:
        ids = list(token_ids)
        if ids[-1] == self.writer.end_of_joke and len(ids) > 1:
            ids = ids[:-1]  # the end-of-joke token is not part of the punchline
        start = punchline_start(token_strings(self.writer.tokenizer, ids[1:]))
        if start is None:
            return None
        setup = list(range(1, start + 1))  # after the start token
        punchline = list(range(start + 1, len(ids)))
        rows = [p - 1 for p in punchline]  # each is predicted from the stream before it
        per_layer = flow.attention.sum(axis=-1)[:, rows][:, :, setup]  # (L, P, S)
        return SetupPunchline(setup, punchline, shares[rows][:, setup], per_layer)

    def attribution(
        self, token_ids: Sequence[int], prompt_length: int, step: int, integrated: bool = False
    ) -> AttributionView:
        """Gradient x input for written token `step` over every earlier token, the attention
        its predicting stream paid them, and integrated gradients if `integrated`."""
        self._wait_for_warm_up()
        position = prompt_length + step - 1
        chosen = np.int32(token_ids[position + 1])
        padded = self._padded(token_ids[: position + 1])
        at = np.int32(position)
        scores, attention = self._gradient(self.weights, padded, at, chosen)
        scores = np.asarray(scores, np.float64)
        paid = np.asarray(attention, np.float64)[0, :, :, position, : position + 1]  # (L, H, T)
        result = None
        if integrated:
            length = next(n for n in self.path_lengths if n > position)
            result = self._integrated(self.weights, padded[:, :length], at, chosen, self.blank)
        return AttributionView(
            step=step,
            position=position,
            gradient_times_input=scores[: position + 1],
            attention=paid.mean(axis=(0, 1)),
            integrated=None if result is None else np.asarray(result.attribution)[: position + 1],
            completeness_gap=None if result is None else float(result.gap),
            change=None if result is None else float(result.change),
        )

    # -- writing again: the rest of a joke with heads off, or from another token

    def rewrite(self, joke: Joke, step: int, heads: list[tuple[int, int]], mode: str) -> Joke:
        """The joke written again from `step` with `heads` off: the tokens before it kept,
        the same seed (so every difference comes from the heads)."""
        heads_off = knockout(self.config, heads, self.replacement(mode))
        kept = written(joke)[:step]
        return self._checked(joke.request, self.writer.write(joke.request, heads_off, kept))

    def branch(self, joke: Joke, step: int, token_id: int) -> Joke:
        """The joke with `token_id` forced at `step`, then written on with the same seed."""
        if token_id == self.writer.end_of_joke:
            raise RequestError(
                "token_id is the end-of-joke token: a branch must write a token; pick another"
            )
        forced = [*written(joke)[:step], token_id]
        return self._checked(joke.request, self.writer.write(joke.request, forced=forced))

    def _checked(self, job: JokeRequest, joke: Joke) -> Joke:
        if job.clean and is_unfit([joke.text])[0]:
            raise RequestError(
                "The new version was flagged as offensive or sensitive and clean mode is on: "
                "pick another token or heads, or turn off clean mode.",
                title="Offensive version",
            )
        return joke


def written(joke: Joke) -> list[int]:
    """The token ids the model wrote (after the start token and the prompt)."""
    return joke.generation.token_ids[joke.generation.prompt_length :]
