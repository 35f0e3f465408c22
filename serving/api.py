"""The JSON the API returns: /generate, and the explainer's /lens, /knockout, /importance,
/branch, /roles, /flow, /attribution, /trace and /snapshots (their fields are listed in the
README)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from data.clean_mode import is_unfit
from data.tokenizer import token_strings
from model.flow import Node
from model.knockout import MODES
from model.roles import KINDS
from serving.errors import RequestError
from serving.explainer import Explainer, surprisal_bits, written
from serving.explanations import Candidate, FlowView
from serving.joke import Joke, Version
from serving.originality import Originality, OriginalityCheck
from serving.trace import trace_json
from serving.training_replay import TrainingReplay
from serving.validation import (
    validate_choice,
    validate_flag,
    validate_heads,
    validate_step,
    validate_threshold,
    validate_token_id,
)
from serving.writer import JokeWriter, no_clean_joke


def round_rows(weights: np.ndarray, decimals: int = 4) -> np.ndarray:
    """Round attention weights so that every row still sums to exactly 1.

    Plain rounding of a 128-wide row can drift by more than 1e-3; here the last units go to
    the entries that lost the most when rounded down (largest-remainder rounding).
    """
    scale = 10**decimals
    scaled = weights.astype(np.float64) * scale
    floor = np.floor(scaled)
    missing = np.rint(scaled.sum(-1, keepdims=True)) - floor.sum(-1, keepdims=True)
    rank = np.argsort(np.argsort(floor - scaled, axis=-1), axis=-1)  # 0 = largest remainder
    return (floor + (rank < missing)) / scale


def joke_json(
    tokenizer: Tokenizer, joke: Joke, originality: Originality | None, tries: int = 1
) -> dict[str, Any]:
    """The /generate answer: one JSON object (the fields are listed in the README).
    `nearest` is None where no originality check was asked for (a /branch answer)."""
    settings = joke.request.settings
    generation = joke.generation
    pieces = token_strings(tokenizer, generation.token_ids)
    top = []
    for offset, (ids, probabilities) in enumerate(generation.candidates):
        position = generation.prompt_length + offset
        chosen = generation.token_ids[position]
        top.append(
            {
                "position": position,
                "sampled": {"token": pieces[position], "token_id": chosen},
                "sampled_rank": ids.index(chosen) if chosen in ids else None,
                "candidates": [
                    {"token": name, "token_id": i, "probability": round(p, 4)}
                    for name, i, p in zip(
                        token_strings(tokenizer, ids), ids, probabilities, strict=True
                    )
                ],
            }
        )
    return {
        "text": joke.text,
        "prompt": joke.request.prompt,
        "written": joke.written,
        "tokens": pieces,
        "token_ids": generation.token_ids,
        "prompt_length": generation.prompt_length,
        "attention": round_rows(generation.attention).tolist(),
        "top_candidates": top,
        "seed": settings.seed,
        "settings": dataclasses.asdict(settings),
        "ended": generation.ended,
        "trimmed": joke.request.trimmed,
        "notes": joke.request.notes,
        "clean": joke.request.clean,
        "tries": tries,
        "surprisal_bits": [round(float(b), 3) for b in surprisal_bits(generation)],
        "sampling_probabilities": [[round(p, 4) for p in row] for row in generation.sampling],
        "forced": generation.forced,
        "nearest": None if originality is None else originality.as_json(),
    }


def generate_json(
    writer: JokeWriter,
    originality: OriginalityCheck,
    prompt: Any,
    temperature: Any,
    top_k: Any,
    top_p: Any,
    max_new_tokens: Any,
    seed: Any,
    clean: Any,
) -> dict[str, Any]:
    """What the /generate endpoint does with the values a program sent, whatever they are."""
    job = writer.request(prompt, temperature, top_k, top_p, max_new_tokens, seed, clean)
    joke, tries = writer.write_checked(job)
    if joke is None:
        raise no_clean_joke(job)
    found = originality.check(joke.text, clean=job.clean)
    return joke_json(writer.tokenizer, joke, found, tries)


# -- the explainer's endpoints. Each writes the joke again from what /generate returned (the
# prompt, the settings and the seed write it word for word), then analyses one written token.


def trunk_joke(writer: JokeWriter, *sent: Any) -> Joke:
    """The joke (prompt, temperature, top_k, top_p, max_new_tokens, seed, clean) writes."""
    job = writer.request(*sent)
    joke = writer.write(job)
    if job.clean and is_unfit([joke.text])[0]:
        raise RequestError(
            f"seed {job.settings.seed} writes a joke flagged as offensive or sensitive and clean "
            "is on: use the seed /generate returned, or clean=False"
        )
    return joke


def trunk_joke_at(writer: JokeWriter, sent: tuple[Any, ...], step: Any) -> tuple[Joke, int]:
    """The joke `sent` writes (trunk_joke) and `step` checked to be one of its written tokens."""
    joke = trunk_joke(writer, *sent)
    return joke, validate_step(step, len(written(joke)))


def candidates_json(tokenizer: Tokenizer, candidates: list[Candidate]) -> list[dict[str, Any]]:
    names = token_strings(tokenizer, [c.token_id for c in candidates])
    return [
        {"token": name, "token_id": c.token_id, "probability": round(c.probability, 4)}
        for name, c in zip(names, candidates, strict=True)
    ]


def lens_json(writer: JokeWriter, explainer: Explainer, *sent: Any, step: Any) -> dict[str, Any]:
    """The /lens answer: what each layer would have predicted at written token `step`."""
    joke, step = trunk_joke_at(writer, sent, step)
    g = joke.generation
    view = explainer.lens(g.token_ids, g.prompt_length, step)
    return {
        "step": step,
        "predicting": token_strings(writer.tokenizer, [written(joke)[step]])[0],
        "layers": [
            {
                "layer": guess.layer,
                "top": candidates_json(writer.tokenizer, guess.top),
                "chosen_probability": round(guess.chosen_probability, 4),
                "chosen_rank": guess.chosen_rank,
            }
            for guess in view.layers
        ],
        "commitment_layer": view.commitment,
        "heatmap": np.round(view.heatmap, 4).tolist(),
        "written_tokens": token_strings(writer.tokenizer, written(joke)),
        "seed": joke.request.settings.seed,
    }


def knockout_json(
    writer: JokeWriter, explainer: Explainer, *sent: Any, step: Any, heads: Any, mode: Any
) -> dict[str, Any]:
    """The /knockout answer: the top five at `step` with and without `heads`, and the rest
    of the joke written again without them."""
    joke, step = trunk_joke_at(writer, sent, step)
    g, c = joke.generation, writer.config
    heads = validate_heads(heads, c.n_layer, c.n_head)
    mode = validate_choice("mode", mode, MODES)  # explainer.replacement: is it shipped?
    view = explainer.knockout(g.token_ids, g.prompt_length, step, heads, mode)
    rewritten = explainer.rewrite(joke, step, heads, mode)
    return {
        "step": step,
        "heads": [list(pair) for pair in heads],
        "mode": mode,
        "before": candidates_json(writer.tokenizer, view.before),
        "after": candidates_json(writer.tokenizer, view.after),
        "chosen_probability_before": round(view.chosen_before, 4),
        "chosen_probability_after": round(view.chosen_after, 4),
        "change_bits": round(view.change_bits, 4),
        "rewritten": {
            "text": rewritten.text,
            "written": rewritten.written,
            "token_ids": rewritten.generation.token_ids,
        },
        "seed": joke.request.settings.seed,
    }


def importance_json(
    writer: JokeWriter, explainer: Explainer, *sent: Any, step: Any, mode: Any
) -> dict[str, Any]:
    """The /importance answer: the layers x heads map of single-head knockout effects."""
    joke, step = trunk_joke_at(writer, sent, step)
    g = joke.generation
    mode = validate_choice("mode", mode, MODES)  # explainer.replacement: is it shipped?
    grid = explainer.importance(g.token_ids, g.prompt_length, step, mode)
    return {
        "step": step,
        "mode": mode,
        "predicting": token_strings(writer.tokenizer, [written(joke)[step]])[0],
        "change_bits": np.round(grid, 4).tolist(),
        "seed": joke.request.settings.seed,
    }


def branch_json(
    writer: JokeWriter, explainer: Explainer, *sent: Any, step: Any, token_id: Any
) -> dict[str, Any]:
    """The /branch answer: the joke with `token_id` at `step`, written on with its seed, as
    /generate describes a joke (without `nearest`)."""
    joke, step = trunk_joke_at(writer, sent, step)
    token_id = validate_token_id(token_id, writer.config.vocab_size)
    branch = explainer.branch(joke, step, token_id)
    return {"step": step, "token_id": token_id, **joke_json(writer.tokenizer, branch, None)}


def node_json(node: Node) -> dict[str, Any]:
    return {"kind": node.kind, "layer": node.layer, "token": node.token}


def flow_view_json(view: FlowView, tokens: list[str]) -> dict[str, Any]:
    """A FlowView as JSON; `tokens`: the text of every token of the joke."""
    graph = view.graph
    drawn = view.setup_punchline
    return {
        "step": view.step,
        "position": view.position,
        "threshold": view.threshold,
        "tokens": tokens,
        "nodes": [node_json(node) for node in graph.nodes],
        "edges": [
            {
                "source": node_json(edge.source),
                "target": node_json(edge.target),
                "weight": round(edge.weight, 4),
                "heads": [round(h, 4) for h in edge.heads] or None,
            }
            for edge in graph.edges
        ],
        "token_flow": np.round(view.token_flow, 4).tolist(),
        "rollout": np.round(view.rollout, 4).tolist(),
        "setup_punchline": None
        if drawn is None
        else {
            "setup": drawn.setup,
            "punchline": drawn.punchline,
            "total": np.round(drawn.total, 4).tolist(),
            "per_layer": np.round(drawn.per_layer, 4).tolist(),
        },
    }


def flow_json(
    writer: JokeWriter, explainer: Explainer, *sent: Any, step: Any, threshold: Any
) -> dict[str, Any]:
    """The /flow answer: how information reached written token `step` (model/flow.py)."""
    joke, step = trunk_joke_at(writer, sent, step)
    g = joke.generation
    threshold = validate_threshold(threshold)
    view = explainer.flow(g.token_ids, g.prompt_length, step, threshold)
    tokens = token_strings(writer.tokenizer, g.token_ids)
    return flow_view_json(view, tokens) | {"seed": joke.request.settings.seed}


def attribution_json(
    writer: JokeWriter, explainer: Explainer, *sent: Any, step: Any, integrated: Any
) -> dict[str, Any]:
    """The /attribution answer: gradient x input (and integrated gradients) at `step`."""
    joke, step = trunk_joke_at(writer, sent, step)
    g = joke.generation
    integrated = validate_flag("integrated", integrated)
    view = explainer.attribution(g.token_ids, g.prompt_length, step, integrated)
    rounded = None if view.integrated is None else np.round(view.integrated, 4).tolist()
    return {
        "step": step,
        "position": view.position,
        "tokens": token_strings(writer.tokenizer, g.token_ids[: view.position + 1]),
        "gradient_times_input": np.round(view.gradient_times_input, 4).tolist(),
        "attention": np.round(view.attention, 4).tolist(),
        "integrated_gradients": rounded,
        "completeness_gap": view.completeness_gap,
        "change": view.change,
        "seed": joke.request.settings.seed,
    }


def joke_trace_json(writer: JokeWriter, explainer: Explainer, *sent: Any) -> dict[str, Any]:
    """The /trace answer: the trace of the joke (serving/trace.py), as the page saves it."""
    joke = trunk_joke(writer, *sent)
    return trace_json([Version(joke, "Original")], explainer)


def snapshot_json(
    writer: JokeWriter, replay: TrainingReplay, *sent: Any, snapshot: Any
) -> dict[str, Any]:
    """The /snapshots answer: the joke `sent` asks for, written by training snapshot
    `snapshot`, with its attention, its lens at the last written token and its heads' roles."""
    job = writer.request(*sent)
    view = replay.view(job, snapshot)
    s = view.snapshot
    answer: dict[str, Any] = {
        "snapshot": view.index,
        "step": s.step,
        "fraction": s.fraction,
        "tokens_seen": s.tokens_seen,
        "note": replay.shipped.note,
        "steps": [other.step for other in replay.shipped.snapshots],
        "roles": s.roles.roles,
        "sinks": s.roles.sinks.tolist(),
        "role_history": {k: [round(v, 4) for v in values]
                         for k, values in replay.role_history().items()},
        "flagged": view.joke is None,
    }  # fmt: skip
    if view.joke is not None:
        g = view.joke.generation
        answer |= {
            "text": view.joke.text,
            "token_ids": g.token_ids,
            "tokens": token_strings(writer.tokenizer, g.token_ids),
            "prompt_length": g.prompt_length,
            "attention": round_rows(g.attention).tolist(),
        }
    if view.lens is not None:
        answer["lens"] = [
            {
                "layer": guess.layer,
                "top": candidates_json(writer.tokenizer, guess.top),
                "chosen_probability": round(guess.chosen_probability, 4),
            }
            for guess in view.lens.layers
        ]
    return answer


def roles_json(explainer: Explainer) -> dict[str, Any]:
    """The /roles answer: each head's role, sink flag and scores, from the model folder."""
    roles = explainer.head_roles
    if roles is None:
        raise RequestError(
            "this model folder ships no head roles: add them with python -m "
            f"training.head_analyses {explainer.writer.folder}"
        )
    record = roles.to_json()
    heads = [
        {
            "layer": layer,
            "head": head,
            "role": roles.roles[layer][head],
            "sink": bool(roles.sinks[layer, head]),
            "scores": {kind: record["scores"][kind][layer][head] for kind in KINDS},
        }
        for layer in range(len(roles.roles))
        for head in range(len(roles.roles[0]))
    ]
    probes = {
        name: token_strings(explainer.writer.tokenizer, ids)
        for name, ids in roles.thumbnail_tokens.items()
    }
    return {
        "heads": heads,
        "bars": record["bars"],
        "max_per_role": record["max_per_role"],
        "thumbnails": record["thumbnails"],
        "thumbnail_probes": probes,
    }
