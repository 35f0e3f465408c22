"""A trace: one joke and its branches as a JSON file, to keep, share and replay.

`trace_json` writes everything the page shows of each version without running the model
again: the request and seed, the tokens and their labels, each written token's top five with
the model's and the sampling probabilities, the logit lens of every written token, the head
roles and every head's attention, quantised to uint8 (weight x 255, the lower triangle only,
base64). `read_trace` reads one back, checking every field, and refuses a malformed or
foreign trace with one line naming what is wrong. The format is versioned (FORMAT); the
README describes it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from model.config import GPTConfig
from model.generate import Generation, SamplingSettings
from model.roles import HeadRoles
from serving.errors import RequestError
from serving.explainer import Explainer
from serving.explanations import Candidate, LayerGuess, LensView
from serving.joke import Joke, JokeRequest, Version

FORMAT = "punchline-trace-v1"
LEVELS = 255  # attention weights are stored as round(weight x LEVELS), one byte each
MAX_TRACE_BYTES = 1_000_000  # a trace of one joke and its branches, as the page accepts it
FIX = "load a file saved with 'Save the trace' by this app, unchanged"


class TraceError(RequestError):
    def __init__(self, message: str):
        super().__init__(f"{message}: {FIX}", title="Not a trace")


def pack_attention(attention: np.ndarray) -> str:
    """(L, H, T, T) weights -> base64 of their lower triangles (row by row), one byte each."""
    rows, columns = np.tril_indices(attention.shape[-1])
    levels = np.rint(np.clip(attention[..., rows, columns], 0, 1) * LEVELS).astype(np.uint8)
    return base64.b64encode(levels.tobytes()).decode("ascii")


def unpack_attention(data: str, layers: int, heads: int, length: int) -> np.ndarray:
    """pack_attention's text -> (L, H, T, T) float32, each row renormalised to sum to 1."""
    raw = np.frombuffer(base64.b64decode(data, validate=True), np.uint8)
    rows, columns = np.tril_indices(length)
    if raw.size != layers * heads * rows.size:
        raise ValueError(f"{raw.size} bytes for {layers} x {heads} x {length} tokens")
    attention = np.zeros((layers, heads, length, length), np.float32)
    attention[..., rows, columns] = raw.reshape(layers, heads, rows.size) / LEVELS
    totals = attention.sum(axis=-1, keepdims=True)
    return attention / np.where(totals > 0, totals, 1)


def lens_json(view: LensView) -> dict[str, Any]:
    return {
        "layers": [
            {
                "top": [c.token_id for c in guess.top],
                "top_labels": [c.label for c in guess.top],
                "probabilities": [round(c.probability, 5) for c in guess.top],
                "chosen_probability": round(guess.chosen_probability, 5),
                "chosen_rank": guess.chosen_rank,
            }
            for guess in view.layers
        ],
        "commitment": view.commitment,
    }


def version_json(version: Version, explainer: Explainer) -> dict[str, Any]:
    joke, g = version.joke, version.joke.generation
    request, settings = joke.request, joke.request.settings
    lens = [explainer.lens(g.token_ids, g.prompt_length, step) for step in range(len(g.forced))]
    return {
        "name": version.name,
        "parent": version.parent,
        "fork": version.fork,
        "request": {
            "prompt": request.prompt,
            "prompt_ids": request.prompt_ids,
            "settings": {
                "temperature": settings.temperature,
                "top_k": settings.top_k,
                "top_p": settings.top_p,
                "max_new_tokens": settings.max_new_tokens,
                "seed": settings.seed,
            },
            "trimmed": request.trimmed,
            "capped": request.capped,
            "notes": request.notes,
            "clean": request.clean,
        },
        "token_ids": g.token_ids,
        "labels": joke.labels,
        "prompt_length": g.prompt_length,
        "written": joke.written,
        "ended": g.ended,
        "trimmed": g.trimmed,
        "steps": [
            {
                "candidates": ids,
                "candidate_labels": joke.candidate_labels[step],
                "probabilities": [round(p, 6) for p in probabilities],
                "sampling": [round(p, 6) for p in g.sampling[step]],
                "chosen_probability": round(g.chosen_probabilities[step], 6),
                "forced": g.forced[step],
                "lens": lens_json(lens[step]),
            }
            for step, (ids, probabilities) in enumerate(g.candidates)
        ],
        "lens_heatmap": np.round(lens[-1].heatmap, 4).tolist() if lens else [],
        "attention": {
            "encoding": "uint8-lower-triangle-base64",
            "data": pack_attention(g.attention),
        },
    }


def trace_json(versions: Sequence[Version], explainer: Explainer) -> dict[str, Any]:
    """The trace of a joke and its branches (`versions`, the original first)."""
    c = explainer.config
    roles = explainer.head_roles
    return {
        "format": FORMAT,
        "model": {
            "n_layer": c.n_layer,
            "n_head": c.n_head,
            "vocab_size": c.vocab_size,
            "block_size": c.block_size,
        },
        "roles": None if roles is None else roles.to_json(),
        "versions": [version_json(version, explainer) for version in versions],
    }


# ---------------------------------------------------------------- reading one back


class _Reader:
    """Reads fields of a parsed trace, naming the path of any that is missing or wrong."""

    def __init__(self, data: Any, path: str = "the trace"):
        self.data, self.path = data, path

    def get(self, name: str | int, check: Callable[[Any], bool], what: str) -> Any:
        path = f"{self.path}[{name}]" if isinstance(name, int) else f"{self.path}.{name}"
        try:
            value = self.data[name]
        except (KeyError, IndexError, TypeError):
            raise TraceError(f"{path} is missing") from None
        if not check(value):
            raise TraceError(f"{path} should be {what}")
        return value

    def at(self, name: str | int) -> _Reader:
        path = f"{self.path}[{name}]" if isinstance(name, int) else f"{self.path}.{name}"
        return _Reader(self.get(name, lambda v: isinstance(v, dict | list), "an object"), path)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)


def _list_of(check: Callable[[Any], bool], size: int | None = None) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and (size is None or len(v) == size) and all(map(check, v))


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _read_lens(r: _Reader, step: int, token_id: int, label: str, heatmap: np.ndarray, c: GPTConfig):
    layers = []
    rows = r.at("layers")
    if not isinstance(rows.data, list) or len(rows.data) != c.n_layer + 1:
        raise TraceError(f"{rows.path} should hold {c.n_layer + 1} layers")
    for layer in range(c.n_layer + 1):
        row = rows.at(layer)
        top = row.get("top", _list_of(lambda t: _whole(t) and 0 <= t < c.vocab_size), "token ids")
        names = row.get("top_labels", _list_of(_text, len(top)), f"{len(top)} labels")
        ps = row.get("probabilities", _list_of(_number, len(top)), f"{len(top)} numbers")
        layers.append(
            LayerGuess(
                layer,
                [Candidate(i, n, float(p)) for i, n, p in zip(top, names, ps, strict=True)],
                float(row.get("chosen_probability", _number, "a number")),
                int(row.get("chosen_rank", _whole, "a whole number")),
            )
        )
    commitment = r.get("commitment", lambda v: v is None or _whole(v), "a layer or null")
    return LensView(step, token_id, label, layers, commitment, heatmap)


def _read_version(r: _Reader, c: GPTConfig, count: int) -> Version:
    is_id = lambda t: _whole(t) and 0 <= t < c.vocab_size  # noqa: E731
    token_ids = r.get("token_ids", lambda v: _list_of(is_id)(v) and 1 <= len(v) <= c.block_size,
                      f"1 to {c.block_size} token ids below {c.vocab_size}")  # fmt: skip
    length = len(token_ids)
    labels = r.get("labels", _list_of(_text, length), f"{length} labels")
    prompt_length = r.get("prompt_length", lambda v: _whole(v) and 1 <= v <= length,
                          f"a whole number from 1 to {length}")  # fmt: skip
    written = length - prompt_length
    steps = r.at("steps")
    if not isinstance(steps.data, list) or len(steps.data) != written:
        raise TraceError(f"{steps.path} should hold {written} written tokens")
    rows_of_steps = _list_of(_list_of(_number, written), c.n_layer + 1)
    shape = f"{c.n_layer + 1} rows of {written} numbers"
    heatmap = r.get("lens_heatmap", rows_of_steps if written else lambda v: v == [], shape)
    heatmap = np.asarray(heatmap, np.float64)
    candidates, candidate_labels, sampling, chosen, forced, lens = [], [], [], [], [], []
    for step in range(written):
        s = steps.at(step)
        ids = s.get("candidates", _list_of(is_id), "token ids")
        n = len(ids)
        candidate_labels.append(s.get("candidate_labels", _list_of(_text, n), f"{n} labels"))
        probabilities = s.get("probabilities", _list_of(_number, n), f"{n} numbers")
        candidates.append(([int(i) for i in ids], [float(p) for p in probabilities]))
        sampling.append([float(p) for p in s.get("sampling", _list_of(_number, n), f"{n} numbers")])
        chosen.append(float(s.get("chosen_probability", _number, "a number")))
        forced.append(s.get("forced", lambda v: isinstance(v, bool), "true or false"))
        position = prompt_length + step
        lens.append(
            _read_lens(s.at("lens"), step, token_ids[position], labels[position], heatmap, c)
        )
    q = r.at("request")
    settings = q.at("settings")
    request = JokeRequest(
        prompt=q.get("prompt", _text, "text"),
        prompt_ids=q.get("prompt_ids", _list_of(is_id), "token ids"),
        settings=SamplingSettings(
            temperature=float(settings.get("temperature", _number, "a number")),
            top_k=settings.get("top_k", _whole, "a whole number"),
            top_p=float(settings.get("top_p", _number, "a number")),
            max_new_tokens=settings.get("max_new_tokens", _whole, "a whole number"),
            seed=settings.get("seed", _whole, "a whole number"),
        ),
        trimmed=q.get("trimmed", _whole, "a whole number"),
        capped=q.get("capped", lambda v: isinstance(v, bool), "true or false"),
        notes=q.get("notes", _list_of(_text), "a list of texts"),
        clean=q.get("clean", lambda v: isinstance(v, bool), "true or false"),
    )
    packed = r.at("attention")
    try:
        attention = unpack_attention(
            packed.get("data", _text, "base64 text"), c.n_layer, c.n_head, length
        )
    except (ValueError, binascii.Error) as error:
        message = f"{packed.path}.data does not hold this joke's attention ({error})"
        raise TraceError(message) from None
    generation = Generation(
        token_ids=[int(t) for t in token_ids],
        prompt_length=prompt_length,
        attention=attention,
        candidates=candidates,
        sampling=sampling,
        chosen_probabilities=chosen,
        forced=forced,
        ended=r.get("ended", lambda v: isinstance(v, bool), "true or false"),
        trimmed=r.get("trimmed", _whole, "a whole number"),
    )
    joke = Joke(
        request, generation, labels, candidate_labels, r.get("written", _text, "text"), lens
    )
    parent = r.get("parent", lambda v: v is None or (_whole(v) and 0 <= v < count), "a version")
    fork = r.get("fork", lambda v: v is None or (_whole(v) and 0 <= v < length), "a position")
    name = r.get("name", _text, "text")
    return Version(joke, name, parent, fork)


def read_trace(text: str, config: GPTConfig) -> tuple[list[Version], HeadRoles | None]:
    """The versions a trace holds (the original first) and its head roles, or TraceError."""
    if len(text.encode()) > MAX_TRACE_BYTES:
        raise TraceError(f"the trace is over {MAX_TRACE_BYTES:,} bytes")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise TraceError(f"the trace is not JSON ({str(error).splitlines()[0][:80]})") from None
    r = _Reader(data)
    found = r.get("format", _text, "text") if isinstance(data, dict) else None
    if found != FORMAT:
        raise TraceError(f"the trace's format should be {FORMAT!r}; got {str(found)[:40]!r}")
    model = r.at("model")
    for name in ("n_layer", "n_head", "vocab_size", "block_size"):
        value = model.get(name, _whole, "a whole number")
        if value != getattr(config, name):
            raise TraceError(
                f"the trace is of a model with {name} {value}, this app's has "
                f"{getattr(config, name)}"
            )
    roles = None
    if r.get("roles", lambda v: v is None or isinstance(v, dict), "an object or null"):
        try:
            roles = HeadRoles.from_json(data["roles"], config.n_layer, config.n_head)
        except ValueError as error:
            raise TraceError(f"the trace.roles are malformed ({error})") from None
    versions = r.at("versions")
    if not isinstance(versions.data, list) or not versions.data:
        raise TraceError("the trace.versions should list at least one version")
    count = len(versions.data)
    return [_read_version(versions.at(i), config, count) for i in range(count)], roles
