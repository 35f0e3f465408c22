"""The API: the functions behind /generate and the explainer's /lens, /knockout, /importance,
/branch, /roles, /flow, /attribution, /trace and /snapshots. Their signatures and docstrings
are what gradio_client shows; each hands the values it got, whatever they are, to
serving/api.py, which checks them."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from serving.api import (
    attribution_json,
    branch_json,
    flow_json,
    generate_json,
    importance_json,
    joke_trace_json,
    knockout_json,
    lens_json,
    roles_json,
    snapshot_json,
)
from serving.explainer import FLOW_THRESHOLD, Explainer
from serving.originality import OriginalityCheck
from serving.training_replay import TrainingReplay
from serving.writer import JokeWriter

# One model call at a time, in the same queue as the page's jokes (ui/events.py).
WRITING = {"concurrency_limit": 1, "concurrency_id": "model"}


def generate_endpoint(writer: JokeWriter, originality: OriginalityCheck) -> Callable[..., dict]:
    """The /generate API function; its signature and docstring are what clients are shown."""
    d = writer.defaults

    def generate(
        prompt: str = "",
        temperature: float = d.temperature,
        top_k: int = d.top_k,
        top_p: float = d.top_p,
        max_new_tokens: int = d.max_new_tokens,
        seed: int = -1,
        clean: bool = True,
    ) -> dict:
        """Write one joke. Returns its text, tokens, attention (layers x heads x T x T) and
        the model's five most likely candidates at each written position. seed=-1: random.
        clean=True: a joke flagged as offensive or naming a sensitive topic is written again
        with the next seed (`tries` says how many were written; an error if none of 5 is
        clean). `nearest` compares the
        joke with the training jokes: {similarity, verdict: "new" | "close to a known joke" |
        null, joke: the nearest training joke, note: why there is no verdict}."""
        return generate_json(
            writer, originality, prompt, temperature, top_k, top_p, max_new_tokens, seed, clean
        )

    return generate


def explainer_endpoints(explainer: Explainer) -> dict[str, Callable[..., dict]]:
    """/lens, /knockout, /importance, /branch, /roles, /flow, /attribution and /trace. Each but
    /roles takes the joke as /generate returned it (prompt, settings and its `seed`: they write it
    again word for word) and a written step."""
    writer = explainer.writer
    d = writer.defaults

    def lens(
        prompt: str = "",
        temperature: float = d.temperature,
        top_k: int = d.top_k,
        top_p: float = d.top_p,
        max_new_tokens: int = d.max_new_tokens,
        seed: int = 0,
        clean: bool = True,
        step: int = 0,
    ) -> dict:
        """The logit lens at written token `step` (0: the first token the model wrote): for
        each layer (0: the embeddings), its top 3 next tokens, the written token's probability
        and rank, the commitment layer, and the layers x written tokens heatmap."""
        sent = (prompt, temperature, top_k, top_p, max_new_tokens, seed, clean)
        return lens_json(writer, explainer, *sent, step=step)

    def knockout(
        prompt: str = "",
        temperature: float = d.temperature,
        top_k: int = d.top_k,
        top_p: float = d.top_p,
        max_new_tokens: int = d.max_new_tokens,
        seed: int = 0,
        clean: bool = True,
        step: int = 0,
        heads: list[list[int]] | None = None,
        mode: str = "mean",
    ) -> dict:
        """Switch off `heads` ([[layer, head], ...], from 0) with mode "zero" or "mean": the
        top 5 at written token `step` before and after, the change of the written token's log2
        probability in bits, and the rest of the joke rewritten with those heads off."""
        sent = (prompt, temperature, top_k, top_p, max_new_tokens, seed, clean)
        heads = [] if heads is None else heads
        return knockout_json(writer, explainer, *sent, step=step, heads=heads, mode=mode)

    def importance(
        prompt: str = "",
        temperature: float = d.temperature,
        top_k: int = d.top_k,
        top_p: float = d.top_p,
        max_new_tokens: int = d.max_new_tokens,
        seed: int = 0,
        clean: bool = True,
        step: int = 0,
        mode: str = "mean",
    ) -> dict:
        """The layers x heads map: the change in bits of the written token's log2 probability
        at `step` when each single head is switched off (negative: the head helped)."""
        sent = (prompt, temperature, top_k, top_p, max_new_tokens, seed, clean)
        return importance_json(writer, explainer, *sent, step=step, mode=mode)

    def branch(
        prompt: str = "",
        temperature: float = d.temperature,
        top_k: int = d.top_k,
        top_p: float = d.top_p,
        max_new_tokens: int = d.max_new_tokens,
        seed: int = 0,
        clean: bool = True,
        step: int = 0,
        token_id: int = 0,
    ) -> dict:
        """Force `token_id` at written token `step` and let the model write on with the same
        seed and settings: the new joke, described as /generate describes one."""
        sent = (prompt, temperature, top_k, top_p, max_new_tokens, seed, clean)
        return branch_json(writer, explainer, *sent, step=step, token_id=token_id)

    def roles() -> dict:
        """Each head's role (previous-token, induction, duplicate-token, self, diffuse or
        null) and sink flag, with its scores on the probe texts (0 to 1), the bars a score
        must reach, and each head's pattern on its probe (thumbnails, 0-255, [layer][head])."""
        return roles_json(explainer)

    def flow(
        prompt: str = "",
        temperature: float = d.temperature,
        top_k: int = d.top_k,
        top_p: float = d.top_p,
        max_new_tokens: int = d.max_new_tokens,
        seed: int = 0,
        clean: bool = True,
        step: int = 0,
        threshold: float = FLOW_THRESHOLD,
    ) -> dict:
        """How information reached written token `step`: the graph of contributions of at
        least `threshold` (0 to 1) from earlier tokens through attention (per head) and
        feed-forward blocks into the stream that predicts it, each token's share of that
        stream, attention rollout's estimate of the same, and for a joke with a question and
        answer or a line break, which setup tokens each punchline token drew on."""
        sent = (prompt, temperature, top_k, top_p, max_new_tokens, seed, clean)
        return flow_json(writer, explainer, *sent, step=step, threshold=threshold)

    def attribution(
        prompt: str = "",
        temperature: float = d.temperature,
        top_k: int = d.top_k,
        top_p: float = d.top_p,
        max_new_tokens: int = d.max_new_tokens,
        seed: int = 0,
        clean: bool = True,
        step: int = 0,
        integrated: bool = False,
    ) -> dict:
        """Gradient x input of written token `step`'s log-probability for each earlier token,
        beside the attention paid to it (mean over layers and heads); integrated=True adds
        integrated gradients and their completeness gap."""
        sent = (prompt, temperature, top_k, top_p, max_new_tokens, seed, clean)
        return attribution_json(writer, explainer, *sent, step=step, integrated=integrated)

    def trace(
        prompt: str = "",
        temperature: float = d.temperature,
        top_k: int = d.top_k,
        top_p: float = d.top_p,
        max_new_tokens: int = d.max_new_tokens,
        seed: int = 0,
        clean: bool = True,
    ) -> dict:
        """The joke's trace, as "Save the trace" saves it (format punchline-trace-v1, see the
        README): request, tokens, top five, lens of every written token, head roles and
        attention (uint8). The page replays it without the model."""
        sent = (prompt, temperature, top_k, top_p, max_new_tokens, seed, clean)
        return joke_trace_json(writer, explainer, *sent)

    return {
        "lens": lens,
        "knockout": knockout,
        "importance": importance,
        "branch": branch,
        "roles": roles,
        "flow": flow,
        "attribution": attribution,
        "trace": trace,
    }


def snapshots_endpoint(replay: TrainingReplay) -> Callable[..., dict]:
    """/snapshots: the joke written again by one of the folder's training snapshots."""
    writer = replay.explainer.writer
    d = writer.defaults

    def snapshots(
        prompt: str = "",
        temperature: float = d.temperature,
        top_k: int = d.top_k,
        top_p: float = d.top_p,
        max_new_tokens: int = d.max_new_tokens,
        seed: int = 0,
        clean: bool = True,
        snapshot: int = 0,
    ) -> dict:
        """The joke these settings and seed write, written by training snapshot `snapshot` (0:
        the earliest): its step, text, tokens, attention, the lens at its last written token,
        each head's role then, and every role's best score at each snapshot."""
        sent = (prompt, temperature, top_k, top_p, max_new_tokens, seed, clean)
        return snapshot_json(writer, replay, *sent, snapshot=snapshot)

    return snapshots


def add_endpoints(
    writer: JokeWriter,
    originality: OriginalityCheck,
    explainer: Explainer,
    replay: TrainingReplay,
) -> None:
    """Register every API endpoint on the Blocks being built."""
    gr.api(generate_endpoint(writer, originality), api_name="generate", **WRITING)
    for name, function in explainer_endpoints(explainer).items():
        gr.api(function, api_name=name, **WRITING)
    gr.api(snapshots_endpoint(replay), api_name="snapshots", **WRITING)
