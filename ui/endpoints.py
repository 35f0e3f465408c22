"""The API: the functions behind /generate and the explainer's /lens, /knockout, /importance,
/branch, /roles, /flow, /attribution, /trace and /snapshots. Their signatures and docstrings
are what gradio_client shows; each hands the values it got, whatever they are, to
serving/api.py, which checks them.

Every endpoint but /roles takes a joke as /generate takes it (prompt, sampling settings, seed,
clean), then its own parameters: `joke_endpoint` builds each one's signature from one list,
JOKE_PARAMETERS, so the nine cannot drift apart.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from model.generate import SamplingSettings
from model.knockout import MEAN
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


def joke_parameters(d: SamplingSettings, seed: int) -> list[tuple[str, type, Any]]:
    """(name, type, default) of the parameters that describe a joke, in /generate's order."""
    return [
        ("prompt", str, ""),
        ("temperature", float, d.temperature),
        ("top_k", int, d.top_k),
        ("top_p", float, d.top_p),
        ("max_new_tokens", int, d.max_new_tokens),
        ("seed", int, seed),  # -1: a random one (/generate); the others take /generate's
        ("clean", bool, True),
    ]


def joke_endpoint(
    name: str,
    doc: str,
    answer: Callable[..., dict],
    defaults: SamplingSettings,
    extra: Sequence[tuple[str, Any, Any]] = (),
    seed: int = 0,
) -> Callable[..., dict]:
    """An API function named `name` taking a joke's parameters, then `extra` ((name, type,
    default) each), that returns answer(*the joke's values, **the extra ones)."""
    joke = joke_parameters(defaults, seed)
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [
        inspect.Parameter(n, keyword, default=default, annotation=kind)
        for n, kind, default in [*joke, *extra]
    ]
    signature = inspect.Signature(parameters, return_annotation=dict)

    def endpoint(*args: Any, **kwargs: Any) -> dict:
        values = signature.bind(*args, **kwargs)
        values.apply_defaults()
        sent = [values.arguments[n] for n, _, _ in joke]
        return answer(*sent, **{n: values.arguments[n] for n, _, _ in extra})

    endpoint.__name__ = endpoint.__qualname__ = name
    endpoint.__doc__ = inspect.cleandoc(doc)
    endpoint.__signature__ = signature  # what gradio and gradio_client read
    endpoint.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": dict}
    return endpoint


def generate_endpoint(writer: JokeWriter, originality: OriginalityCheck) -> Callable[..., dict]:
    return joke_endpoint(
        "generate",
        """Write one joke. Returns its text, tokens, attention (layers x heads x T x T) and the
        model's five most likely candidates at each written position. seed=-1: random.
        clean=True: a joke flagged as offensive or naming a sensitive topic is written again
        with the next seed (`tries` says how many were written; an error if none of 5 is
        clean). `nearest` compares the joke with the training jokes: {similarity, verdict:
        "new" | "close to a known joke" | null, joke: the nearest training joke, note: why
        there is no verdict}.""",
        lambda *sent: generate_json(writer, originality, *sent),
        writer.defaults,
        seed=-1,
    )


def explainer_endpoints(
    explainer: Explainer, replay: TrainingReplay
) -> dict[str, Callable[..., dict]]:
    """/lens, /knockout, /importance, /branch, /flow, /attribution, /trace and /snapshots
    (each takes the joke as /generate returned it: its prompt, settings and `seed` write it
    again word for word), and /roles."""
    writer = explainer.writer
    step = ("step", int, 0)

    def make(name: str, doc: str, answer: Callable[..., dict], *extra: tuple) -> None:
        endpoints[name] = joke_endpoint(name, doc, answer, writer.defaults, list(extra))

    endpoints: dict[str, Callable[..., dict]] = {}
    make(
        "lens",
        """The logit lens at written token `step` (0: the first token the model wrote): for
        each layer (0: the embeddings), its top 3 next tokens, the written token's probability
        and rank, the commitment layer, and the layers x written tokens heatmap.""",
        lambda *sent, step: lens_json(writer, explainer, *sent, step=step),
        step,
    )
    make(
        "knockout",
        """Switch off `heads` ([[layer, head], ...], from 0) with mode "zero" or "mean": the
        top 5 at written token `step` before and after, the change of the written token's log2
        probability in bits, and the rest of the joke rewritten with those heads off.""",
        lambda *sent, step, heads, mode: knockout_json(
            writer, explainer, *sent, step=step, heads=[] if heads is None else heads, mode=mode
        ),
        step,
        ("heads", list[list[int]] | None, None),
        ("mode", str, MEAN),
    )
    make(
        "importance",
        """The layers x heads map: the change in bits of the written token's log2 probability
        at `step` when each single head is switched off (negative: the head helped).""",
        lambda *sent, step, mode: importance_json(writer, explainer, *sent, step=step, mode=mode),
        step,
        ("mode", str, MEAN),
    )
    make(
        "branch",
        """Force `token_id` at written token `step` and let the model write on with the same
        seed and settings: the new joke, described as /generate describes one.""",
        lambda *sent, step, token_id: branch_json(
            writer, explainer, *sent, step=step, token_id=token_id
        ),
        step,
        ("token_id", int, 0),
    )
    make(
        "flow",
        """How information reached written token `step`: the graph of contributions of at
        least `threshold` (0 to 1) from earlier tokens through attention (per head) and
        feed-forward blocks into the stream that predicts it, each token's share of that
        stream, attention rollout's estimate of the same, and for a joke with a question and
        answer or a line break, which setup tokens each punchline token drew on.""",
        lambda *sent, step, threshold: flow_json(
            writer, explainer, *sent, step=step, threshold=threshold
        ),
        step,
        ("threshold", float, FLOW_THRESHOLD),
    )
    make(
        "attribution",
        """Gradient x input of written token `step`'s log-probability for each earlier token,
        beside the attention paid to it (mean over layers and heads); integrated=True adds
        integrated gradients and their completeness gap.""",
        lambda *sent, step, integrated: attribution_json(
            writer, explainer, *sent, step=step, integrated=integrated
        ),
        step,
        ("integrated", bool, False),
    )
    make(
        "trace",
        """The joke's trace, as "Save the trace" saves it (format punchline-trace-v1, see the
        README): request, tokens, top five, lens of every written token, head roles and
        attention (uint8). The page replays it without the model.""",
        lambda *sent: joke_trace_json(writer, explainer, *sent),
    )
    make(
        "snapshots",
        """The joke these settings and seed write, written by training snapshot `snapshot`
        (0: the earliest): its step, text, tokens, attention, the lens at its last written
        token, each head's role then, and every role's best score at each snapshot.""",
        lambda *sent, snapshot: snapshot_json(writer, replay, *sent, snapshot=snapshot),
        ("snapshot", int, 0),
    )

    def roles() -> dict:
        """Each head's role (previous-token, induction, duplicate-token, self, diffuse or
        null) and sink flag, with its scores on the probe texts (0 to 1), the bars a score
        must reach, and each head's pattern on its probe (thumbnails, 0-255, [layer][head])."""
        return roles_json(explainer)

    return endpoints | {"roles": roles}


def add_endpoints(
    writer: JokeWriter,
    originality: OriginalityCheck,
    explainer: Explainer,
    replay: TrainingReplay,
) -> None:
    """Register every API endpoint on the Blocks being built."""
    gr.api(generate_endpoint(writer, originality), api_name="generate", **WRITING)
    for name, function in explainer_endpoints(explainer, replay).items():
        gr.api(function, api_name=name, **WRITING)
