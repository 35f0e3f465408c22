"""The JSON the /generate endpoint returns (its fields are listed in the README)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from data.tokenizer import token_strings
from serving.joke import Joke
from serving.originality import Originality, OriginalityCheck
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
    tokenizer: Tokenizer, joke: Joke, originality: Originality, tries: int = 1
) -> dict[str, Any]:
    """The /generate answer: one JSON object (the fields are listed in the README)."""
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
        "nearest": originality.as_json(),
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
    return joke_json(writer.tokenizer, joke, originality.check(joke.text), tries)
