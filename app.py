"""Punchline's web app: ask for a joke, watch it being written, then see where the model looked.

    python app.py                                   # http://127.0.0.1:7860
    PUNCHLINE_CHECKPOINT=path/to/model GRADIO_SERVER_PORT=7861 python app.py

The model folder is loaded and compiled once, before the server starts; every click on a
token is answered from the attention kept in the visitor's gr.State, never by running the
model again. The HTML of the heatmaps comes from visuals.py. Programs can call the
`/generate` endpoint (see README) with gradio_client.

In clean mode (the default) every finished joke is checked for offensive language before it is
shown, and a flagged one is written again with the next seed. Under each joke the app shows the
nearest joke of the training data, from an index built in the background at start.
PUNCHLINE_LOG_COMPILES=1 logs every JAX compilation (benchmarks/load.py counts them).
"""

from __future__ import annotations

import dataclasses
import html
import inspect
import math
import os
import reprlib
import secrets
import shlex
import sys
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import jax
import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse
from gradio.exceptions import InvalidPathError

import visuals
from data.corpus import model_data
from data.errors import DataError
from data.offensive import is_offensive
from data.originality import JokeIndex, Nearest
from data.tokenizer import END_OF_JOKE, decode, encode, end_of_joke_id, token_strings
from model.checkpoint import CheckpointError, load_model
from model.generate import Generator, SamplingSettings, Step, attention_matrix, prompt_room
from model.gpt import count_parameters
from model.host_memory import reuse_freed_memory

ASSETS = Path(__file__).resolve().parent / "assets"
CHECKPOINT = os.environ.get("PUNCHLINE_CHECKPOINT", "checkpoints/punchline")
SERVER_NAME = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
SERVER_PORT = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
LOG_COMPILES = os.environ.get("PUNCHLINE_LOG_COMPILES") == "1"
# Compiled programs are kept here between starts (JAX's persistent compilation cache), so a
# restart skips most of the warm-up's compiling (benchmarks/README.md has the seconds).
# JAX_COMPILATION_CACHE_DIR, if set, wins; set it to "" to switch the cache off.
COMPILATION_CACHE = Path.home() / ".cache" / "punchline" / "jax"
MAX_PROMPT_CHARS = 1_000
MAX_SEED = 2**31 - 1
RANDOM_SEEDS = 1_000_000  # random seeds stay below this, so they are easy to retype
DEFAULTS = SamplingSettings()
# Clean mode writes a flagged joke again with the next seed, this many jokes in all. With the
# shipped model at the default settings 2.4% of jokes are flagged and 1,000 requests never
# needed more than three (benchmarks/clean_rate.py), so five tries find a clean joke all but
# always, and a request never costs more than five jokes' time.
CLEAN_TRIES = 5
# Requests that may wait for the model. One joke takes well under a second, so the last of
# them waits some seconds; beyond that a visitor is told at once that the app is busy.
QUEUE_SIZE = 32
NEW, CLOSE = "new", "close to a known joke"  # the originality verdicts
HELP = {  # the hint under each control
    "t": "Low: safe and repetitive. High: surprising, then nonsense.",
    "k": "Only the k most likely tokens may be drawn (0: all).",
    "p": "Only the most likely tokens that together reach p (of the whole vocabulary, "
    "counted before top-k: not renormalised after it).",
    "n": "New tokens at most.",
    "seed": "Picks one and shows it here.",
    "clean": f"A joke flagged as offensive is written again (up to {CLEAN_TRIES} tries).",
}


# ---------------------------------------------------------------- checking what visitors send


def invalid(message: str) -> gr.Error:
    """A gr.Error for bad input: shown to the visitor or client, no traceback in the log."""
    return gr.Error(message, title="Invalid input", print_exception=False)


class _ShortRepr(reprlib.Repr):
    """repr() of whatever was sent, cut short: little work for huge or deeply nested values."""

    def __init__(self) -> None:
        super().__init__()  # (keyword arguments for the limits need Python 3.12)
        self.maxlevel, self.maxstring, self.maxother = 2, 40, 40

    def repr_int(self, x: int, level: int) -> str:
        # Python refuses to turn an integer of more than 4,300 digits into text.
        if x.bit_length() > 256:
            return f"an integer of about {int(x.bit_length() * math.log10(2)):,} digits"
        return super().repr_int(x, level)


_REPR = _ShortRepr()


def _shown(value: Any) -> str:
    # Error messages are rendered as HTML in the browser: never echo markup back.
    text = _REPR.repr(value)
    return html.escape(text if len(text) <= 40 else text[:39] + "…", quote=False)


def _checked(name: str, value: Any, allowed: str, ok: Any, whole: bool = False) -> float:
    """`value` if it is a finite number (whole if asked) for which ok(value) holds."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    # Integers are compared as they are: math.isfinite(10**400) would overflow converting to float.
    finite = number and (isinstance(value, int) or math.isfinite(value))
    if not (finite and (not whole or value == int(value)) and ok(value)):
        kind = "a whole number" if whole else "a number"
        raise invalid(f"{name} must be {kind} {allowed}; got {_shown(value)}")
    return value


def validate_settings(
    temperature: Any, top_k: Any, top_p: Any, max_new_tokens: Any, seed: Any, *,
    vocab_size: int, block_size: int,
) -> SamplingSettings:  # fmt: skip
    """Check every sampling setting; a seed of -1 is replaced by a random one."""
    t = _checked("temperature", temperature, "from 0 to 2", lambda v: 0 <= v <= 2)
    k = _checked(
        "top_k", top_k, f"from 0 to {vocab_size} (0 keeps every token)",
        lambda v: 0 <= v <= vocab_size, whole=True,
    )  # fmt: skip
    p = _checked("top_p", top_p, "greater than 0 and at most 1", lambda v: 0 < v <= 1)
    n = _checked(
        "max_new_tokens", max_new_tokens, f"from 1 to {block_size}",
        lambda v: 1 <= v <= block_size, whole=True,
    )  # fmt: skip
    s = _checked(
        "seed", seed, f"from 0 to {MAX_SEED}, or -1 for a random seed",
        lambda v: -1 <= v <= MAX_SEED, whole=True,
    )  # fmt: skip
    return SamplingSettings(
        temperature=float(t),
        top_k=int(k),
        top_p=float(p),
        max_new_tokens=int(n),
        seed=secrets.randbelow(RANDOM_SEEDS) if s == -1 else int(s),
    )


def validate_clean(clean: Any) -> bool:
    """Clean mode is on or off: only true or false, so that "false" (a string) cannot mean on."""
    if not isinstance(clean, bool):
        raise invalid(f"clean must be true or false; got {_shown(clean)}")
    return clean


def clean_prompt(prompt: Any) -> tuple[str, list[str]]:
    """Opening words ready for the tokenizer, and notes on anything that was changed.

    Emoji and every script are kept (the tokenizer reads bytes); control characters other
    than newline and tab, and lone surrogates, are removed because they cannot be typed and
    cannot be shown. Trailing spaces are dropped: the tokenizer glues a space to the word after
    it, so a prompt ending in a space would start the model off on an unusual token.
    """
    if prompt is None:
        return "", []
    if not isinstance(prompt, str):
        raise invalid(f"prompt must be text; got {_shown(prompt)}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise invalid(
            f"prompt is {len(prompt):,} characters long; the limit is {MAX_PROMPT_CHARS:,} "
            "characters"
        )
    text = prompt.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cs"))
    notes = []
    if len(kept) < len(text):
        notes.append(f"Removed {len(text) - len(kept)} control character(s) from your words.")
    kept = kept.rstrip(" \t")
    return (kept if kept.strip() else ""), notes


# ---------------------------------------------------------------- the model and its jokes


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
    token_ids: list[int]  # start token, prompt, written tokens
    labels: list[str]  # display text of each token (whitespace made visible)
    prompt_length: int  # start token + prompt tokens
    attention: np.ndarray  # (layers, heads, T, T)
    candidates: list[tuple[list[int], list[float]]]  # per written token: top ids, probabilities
    candidate_labels: list[list[str]]  # display text of those top ids
    ended: bool  # the model chose to end the joke (rather than hitting the length limit)
    written: str  # the model's words


class JokeWriter:
    """The model, its tokenizer and the compiled generator: loaded once, shared by all visitors."""

    def __init__(self, folder: str | Path):
        self.folder = str(folder)
        self.model, self.tokenizer, self.metadata = load_model(folder)
        self.config = self.model.config
        self.end_of_joke = end_of_joke_id(self.tokenizer)
        if self.end_of_joke is None:
            raise CheckpointError(f"{Path(folder) / 'tokenizer.json'} has no {END_OF_JOKE} token")
        self.generator = Generator(self.model, self.end_of_joke)

    def warm_up(self) -> None:
        """Compile before the first visitor arrives.

        The warm-up joke reads a prompt that fills all but the last position and then writes
        one token, so every position and both paths (reading, writing) have run once.
        """
        filler = encode(self.tokenizer, "Knock knock. Who's there? ")
        prompt = (filler * self.config.block_size)[: self.config.block_size - 2]
        self.generator.generate(prompt, dataclasses.replace(DEFAULTS, max_new_tokens=1))
        is_offensive(["Knock knock."])  # reads the classifier's weights once, now

    def fit(self, text: str, limit: int) -> tuple[str, list[int], int]:
        """Drop words from the left until the prompt is at most `limit` tokens.

        Cutting text (not token ids) keeps the joke reproducible: encoding the kept text
        gives exactly the ids the model read. Returns (kept text, its ids, tokens dropped).
        """
        ids = encode(self.tokenizer, text)
        if len(ids) <= limit:
            return text, ids, 0
        low, high = 0, len(text)  # find the smallest cut that fits
        while low < high:
            middle = (low + high) // 2
            if len(encode(self.tokenizer, text[middle:])) <= limit:
                high = middle
            else:
                low = middle + 1
        space = text.find(" ", low, low + 30)  # start at a word when one is near
        kept = text[space + 1 :] if space >= 0 else text[low:]
        kept_ids = encode(self.tokenizer, kept)
        while len(kept_ids) > limit:  # BPE lengths are not strictly monotonic: cut a bit more
            kept = kept[1:]
            kept_ids = encode(self.tokenizer, kept)
        return kept, kept_ids, len(ids) - len(kept_ids)

    def request(
        self,
        prompt: Any,
        temperature: Any,
        top_k: Any,
        top_p: Any,
        max_new_tokens: Any,
        seed: Any,
        clean: Any = False,
    ) -> JokeRequest:
        """Validate everything a visitor or program sent; raises gr.Error with the reason."""
        clean = validate_clean(clean)
        text, notes = clean_prompt(prompt)
        # Every joke would start with flagged words: refuse now rather than write five in vain.
        if clean and text and is_offensive([text])[0]:
            raise gr.Error(
                "Your opening words were flagged as offensive and clean mode is on: change them, "
                "or turn off clean mode (clean=False in the API).",
                title="Offensive opening words",
                print_exception=False,
            )
        block = self.config.block_size
        settings = validate_settings(
            temperature, top_k, top_p, max_new_tokens, seed,
            vocab_size=self.config.vocab_size, block_size=block,
        )  # fmt: skip
        text, ids, trimmed = self.fit(text, prompt_room(block, settings.max_new_tokens))
        if trimmed:
            notes.append(
                f"Your opening words were longer than the model can read ({block} tokens in "
                f"all): the first {trimmed} tokens were dropped to leave room for the joke."
            )
        room = block - 1 - len(ids)  # the start token takes one place
        capped = settings.max_new_tokens > room
        settings = dataclasses.replace(settings, max_new_tokens=min(room, settings.max_new_tokens))
        return JokeRequest(text, ids, settings, trimmed, capped, notes, clean)

    def steps(self, job: JokeRequest) -> Iterator[Step]:
        return self.generator.stream(job.prompt_ids, job.settings)

    def finish(self, job: JokeRequest, steps: list[Step]) -> Joke:
        """Collect the streamed steps into a Joke (the same numbers Generator.generate gives)."""
        length = len(steps)
        attention = attention_matrix(steps)
        written = [s for s in steps if s.sampled]
        token_ids = [s.token for s in steps]
        candidates = [(s.candidates.tolist(), s.probabilities.tolist()) for s in written]
        return Joke(
            request=job,
            token_ids=token_ids,
            labels=self.labels(token_ids, start=True),
            prompt_length=length - len(written),
            attention=attention,
            candidates=candidates,
            candidate_labels=[self.labels(ids, start=False) for ids, _ in candidates],
            ended=len(written) < job.settings.max_new_tokens,
            written=decode(self.tokenizer, [s.token for s in written]),
        )

    def labels(self, token_ids: list[int], start: bool) -> list[str]:
        """Display text of tokens. The end-of-joke token also opens every joke: in a joke it
        reads ⟨start⟩; among the candidates it means the model wanted to stop, ⟨end⟩."""
        special = visuals.START_LABEL if start else visuals.END_LABEL
        pieces = token_strings(self.tokenizer, token_ids)
        return [
            special if token_id == self.end_of_joke else visuals.visible_whitespace(piece) or "∅"
            for token_id, piece in zip(token_ids, pieces, strict=True)
        ]

    def write(self, job: JokeRequest) -> Joke:
        return self.finish(job, list(self.steps(job)))

    def write_checked(self, job: JokeRequest) -> tuple[Joke | None, int]:
        """Write the joke; in clean mode, until one is not flagged as offensive.

        A flagged joke is written again with the next seed, CLEAN_TRIES jokes at most. Returns
        the joke (None when every try was flagged) and how many jokes were written. The joke's
        request holds the seed that wrote it, so it can be written again.
        """
        if not job.clean:
            return self.write(job), 1
        for attempt in range(CLEAN_TRIES):
            tried = retry(job, attempt)
            joke = self.write(tried)
            if not is_offensive([joke_text(joke)])[0]:
                return joke, attempt + 1
        return None, CLEAN_TRIES


def joke_text(joke: Joke) -> str:
    """The joke as shown: the opening words as the model read them, then its own words."""
    return joke.request.prompt + joke.written


def retry(job: JokeRequest, attempt: int) -> JokeRequest:
    """The request for clean mode's attempt number `attempt` (0: the request itself)."""
    if attempt == 0:
        return job
    first = job.settings.seed
    seed, last_flagged = ((first + i) % (MAX_SEED + 1) for i in (attempt, attempt - 1))
    flagged = f"seed {first}" if attempt == 1 else f"seeds {first} to {last_flagged}"
    note = f"Clean mode: {flagged} wrote a joke flagged as offensive; this is seed {seed}."
    return dataclasses.replace(
        job, settings=dataclasses.replace(job.settings, seed=seed), notes=[*job.notes, note]
    )


def no_clean_joke(job: JokeRequest) -> gr.Error:
    last = (job.settings.seed + CLEAN_TRIES - 1) % (MAX_SEED + 1)
    return gr.Error(
        f"Could not find a clean joke: all {CLEAN_TRIES} jokes written (seeds "
        f"{job.settings.seed} to {last}) were flagged as offensive. Try again, change the "
        "opening words or the settings, or turn off clean mode.",
        title="No clean joke",
        print_exception=False,
    )


# ---------------------------------------------------------------- is the joke new?


@dataclass(frozen=True)
class Originality:
    """A finished joke against the training jokes: what the page and the API report."""

    verdict: str | None  # NEW or CLOSE; None when there was nothing to compare with
    similarity: float | None  # cosine similarity of TF-IDF vectors, 0 to 1
    joke: str | None  # the nearest training joke
    note: str | None  # why there is no verdict

    @classmethod
    def unknown(cls, note: str) -> Originality:
        return cls(None, None, None, note)

    def as_json(self) -> dict[str, Any]:
        similarity = None if self.similarity is None else round(self.similarity, 4)
        return dataclasses.asdict(self) | {"similarity": similarity}


def judge(nearest: Nearest) -> Originality:
    """The verdict on one joke from its nearest training joke (see data/originality.py)."""
    similarity = min(1.0, max(0.0, nearest.similarity))  # float32 sums can pass 1 slightly
    if similarity == 0:  # no word in common with any training joke: none is nearer than another
        return Originality(NEW, 0.0, None, None)
    return Originality(CLOSE if nearest.memorised else NEW, similarity, nearest.joke, None)


class OriginalityCheck:
    """Finds the training joke nearest to each finished joke.

    The index needs the training files, read again from the paths in the model's metadata, and
    some seconds (a minute on a busy 2-core machine for 70,000 jokes): it is built in a
    background thread, so the app serves jokes meanwhile. Where the files are not on the machine
    (a Hugging Face Space has only the model folder) the check says it is unavailable and why.
    Only one training joke per request ever leaves the server: the nearest one.
    """

    def __init__(self, metadata: dict[str, Any]):
        self._index: JokeIndex | None = None
        self._unavailable = ""
        self._built = threading.Event()
        thread = threading.Thread(target=self._build, args=(metadata,), daemon=True)
        thread.start()

    def _build(self, metadata: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            self._index = JokeIndex(model_data(metadata).train)
        except DataError as error:
            # The message says what is missing, then how to fix it when training: keep the first.
            self._unavailable = str(error).split("; ")[0]
        except Exception as error:  # an unreadable file must not stop the app: say why instead
            self._unavailable = f"the training jokes could not be indexed ({error})"
        finally:
            self._built.set()
        if self._index is None:
            line = self.check("").note
        else:
            line = f"{len(self._index):,} training jokes indexed in"
            line += f" {time.perf_counter() - started:.1f} s"
        print(f"Punchline: {line}", flush=True)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the index is built or known to be unavailable; False on timeout."""
        return self._built.wait(timeout)

    def check(self, text: str) -> Originality:
        """Is `text` new? Says so when the index is not built yet or cannot be built."""
        if not self._built.is_set():
            return Originality.unknown("Originality check: still indexing the training jokes.")
        if self._index is None:
            return Originality.unknown(f"Originality check unavailable: {self._unavailable}.")
        if not text.strip():
            return Originality.unknown("Originality check: the joke is empty.")
        return judge(self._index.nearest([text])[0])


# ---------------------------------------------------------------- what the API returns


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
    writer: JokeWriter, joke: Joke, originality: Originality, tries: int = 1
) -> dict[str, Any]:
    """The /generate answer: one JSON object (the fields are listed in the README)."""
    settings = joke.request.settings
    pieces = token_strings(writer.tokenizer, joke.token_ids)
    top = []
    for offset, (ids, probabilities) in enumerate(joke.candidates):
        position = joke.prompt_length + offset
        chosen = joke.token_ids[position]
        top.append(
            {
                "position": position,
                "sampled": {"token": pieces[position], "token_id": chosen},
                "sampled_rank": ids.index(chosen) if chosen in ids else None,
                "candidates": [
                    {"token": name, "token_id": i, "probability": round(p, 4)}
                    for name, i, p in zip(
                        token_strings(writer.tokenizer, ids), ids, probabilities, strict=True
                    )
                ],
            }
        )
    return {
        "text": joke.request.prompt + joke.written,
        "prompt": joke.request.prompt,
        "written": joke.written,
        "tokens": pieces,
        "token_ids": joke.token_ids,
        "prompt_length": joke.prompt_length,
        "attention": round_rows(joke.attention).tolist(),
        "top_candidates": top,
        "seed": settings.seed,
        "settings": dataclasses.asdict(settings),
        "ended": joke.ended,
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
    return joke_json(writer, joke, originality.check(joke_text(joke)), tries)


# ---------------------------------------------------------------- the page


def describe(joke: Joke) -> tuple[str, list[str]]:
    """The line under a joke (seed and settings) and its notes."""
    s = joke.request.settings
    count = len(joke.candidates)
    meta = (
        f"seed {s.seed} · temperature {s.temperature:g} · top-k {s.top_k} · top-p {s.top_p:g}"
        f" · {count} new token{'s' * (count != 1)}"
    )
    if joke.ended and not count:
        ending = "The model ended the joke before writing a word: try another seed."
    elif joke.ended:
        ending = "The model ended the joke itself."
    elif joke.request.capped:
        ending = (
            f"Stopped after {s.max_new_tokens} new tokens: all the room the model's context "
            "left after the opening words."
        )
    else:
        ending = f"Stopped at the length limit ({s.max_new_tokens} new tokens)."
    return meta, [*joke.request.notes, ending]


def reproduce(writer: JokeWriter, job: JokeRequest, address: str) -> tuple[str, str]:
    """A shell command and a gradio_client call that give the same joke again."""
    s = job.settings
    command = ["python", "-m", "model.generate", "--checkpoint", writer.folder, "-n", "1"]
    if job.prompt:
        command += ["--prompt", job.prompt]
    command += ["--seed", str(s.seed), "--temperature", f"{s.temperature!r}"]
    command += ["--top-k", str(s.top_k), "--top-p", f"{s.top_p!r}"]
    command += ["--max-new-tokens", str(s.max_new_tokens)]
    client = (
        "from gradio_client import Client\n\n"
        f"joke = Client({address!r}).predict(\n"
        f"    prompt={job.prompt!r},\n"
        f"    temperature={s.temperature!r}, top_k={s.top_k}, top_p={s.top_p!r},\n"
        f"    max_new_tokens={s.max_new_tokens}, seed={s.seed},\n"
        '    api_name="/generate",\n)\nprint(joke["text"])\n'
    )
    return shlex.join(command), client


def token_views(joke: Joke, index: int, layer: int, head: int) -> tuple[str, str, str]:
    """Candidates, the layers x heads grid and one head's matrix, for the token at `index`."""
    kind = "start" if index == 0 else "typed" if index < joke.prompt_length else "written"
    candidates = chosen = None
    if kind == "written":
        ids, probabilities = joke.candidates[index - joke.prompt_length]
        names = joke.candidate_labels[index - joke.prompt_length]
        candidates = list(zip(names, probabilities, strict=True))
        token = joke.token_ids[index]
        chosen = ids.index(token) if token in ids else None
    info = visuals.render_candidates(joke.labels[index], index, kind, candidates, chosen)
    rows = joke.attention[:, :, index, : index + 1]
    heads = visuals.render_heads_grid(rows, joke.labels, index)
    return info, heads, matrix_view(joke, index, layer, head)


def matrix_view(joke: Joke, index: int, layer: int, head: int) -> str:
    return visuals.render_matrix(joke.attention[layer, head], joke.labels, index, layer, head)


def how_it_works(writer: JokeWriter) -> str:
    c = writer.config
    parameters = count_parameters(writer.model)
    positions = {
        "learned": f"adds a learned vector for each of the {c.block_size} positions",
        "sinusoidal": "adds a fixed pattern of sine and cosine waves that spells out the position",
        "rope": "rotates every query and key by an angle that grows with the position (RoPE), "
        "so a score depends on how far apart two tokens are",
    }[c.positional]
    size = f"{parameters / 1e6:.1f} million" if parameters >= 10**6 else f"{parameters:,}"
    text = (ASSETS / "how_it_works.md").read_text()
    return text.format(
        vocab=f"{c.vocab_size:,}", d_model=c.d_model, positions=positions, heads=c.n_head,
        layers=c.n_layer, block=c.block_size, parameters=size,
    )  # fmt: skip


class Blocks(gr.Blocks):
    """gr.Blocks, with a clear error for two kinds of hand-made requests that Gradio refuses
    with a traceback in the log and an empty error for the caller: too few values for an
    endpoint, and a value shaped like a file reference (Gradio reads no such file: it refuses
    any that was not uploaded, and no input of this app is a file)."""

    def validate_inputs(self, block_fn: Any, inputs: list[Any]) -> None:
        needed = len(block_fn.inputs)
        if len(inputs) < needed:
            names = list(inspect.signature(block_fn.fn).parameters)
            listed = f" ({', '.join(names)})" if len(names) == needed else ""
            raise invalid(
                f"{block_fn.api_name or 'this event'} takes {needed} values{listed}; "
                f"got {len(inputs)}"
            )
        super().validate_inputs(block_fn, inputs)

    async def preprocess_data(
        self, block_fn: Any, inputs: list[Any], state: Any, explicit_call: bool = False
    ) -> list[Any]:
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except InvalidPathError:
            raise invalid(
                f"{block_fn.api_name or 'this event'} takes no files; a value shaped like a file "
                "reference was sent"
            ) from None


def unknown_keyword(request: Request, error: TypeError) -> JSONResponse:
    """/gradio_api/call/v2/<name> with a keyword the endpoint does not have: Gradio raises a
    TypeError with a clear message, then answers 500 and logs a traceback. Say it with a 422."""
    if "/call/v2/" not in request.url.path:
        raise error  # any other TypeError is a bug: Gradio's usual 500 and traceback
    return JSONResponse({"detail": str(error).split(" Please click")[0]}, status_code=422)


def build_demo(writer: JokeWriter, originality: OriginalityCheck) -> gr.Blocks:
    c = writer.config
    # No analytics: the page and the server talk to nobody but each other.
    with Blocks(title="Punchline: a tiny GPT that tells jokes", analytics_enabled=False) as demo:
        gr.HTML(
            '<header class="pl-header"><h1>Punchline</h1><p>A small GPT, written from scratch '
            "in JAX, tells a joke one token at a time. Then click any token to see what it was "
            "paying attention to.</p></header>"
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                prompt = gr.Textbox(
                    label="Opening words (optional)",
                    placeholder="Why did the chicken…",
                    max_length=MAX_PROMPT_CHARS,
                    lines=1,
                )
                tell = gr.Button("Tell me a joke", variant="primary", size="lg")
                joke_card = gr.HTML(
                    visuals.render_placeholder("Your joke will be written here."),
                    elem_id="joke",
                    apply_default_css=False,
                    js_on_load=None,
                )
                with gr.Accordion("Get this joke again", open=False):
                    command = gr.Code(label="Command line", language="shell", interactive=False)
                    client_code = gr.Code(
                        label="Python (gradio_client)", language="python", interactive=False
                    )
            with gr.Column(scale=2, min_width=260), gr.Group():
                temperature = gr.Slider(
                    0, 2, DEFAULTS.temperature, step=0.05, label="Temperature", info=HELP["t"]
                )
                top_k = gr.Slider(
                    0, c.vocab_size, min(DEFAULTS.top_k, c.vocab_size), step=1, label="Top-k",
                    info=HELP["k"],
                )  # fmt: skip
                top_p = gr.Slider(0.05, 1, DEFAULTS.top_p, step=0.05, label="Top-p", info=HELP["p"])
                max_new_tokens = gr.Slider(
                    1, c.block_size, min(DEFAULTS.max_new_tokens, c.block_size), step=1,
                    label="Maximum length", info=HELP["n"],
                )  # fmt: skip
                with gr.Row():
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
                    random_seed = gr.Checkbox(True, label="Random seed", info=HELP["seed"])
                clean = gr.Checkbox(True, label="Clean jokes only", info=HELP["clean"])
        gr.Markdown("### Tokens\nWhat the model read and wrote. Click one to look inside.")
        tokens = gr.HTML(
            visuals.render_placeholder("The tokens of your joke will appear here."),
            elem_id="tokens",
            apply_default_css=False,
            js_on_load=visuals.TOKEN_CLICK_JS,
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                token_info = gr.HTML(elem_id="token-info", apply_default_css=False, js_on_load=None)
            with gr.Column(scale=3, min_width=320):
                heads = gr.HTML(
                    elem_id="heads",
                    apply_default_css=False,
                    js_on_load=visuals.TOOLTIP_JS + visuals.HEAD_CLICK_JS,
                )
        gr.Markdown("### One head, every token")
        with gr.Row():
            layer = gr.Radio([(str(i + 1), i) for i in range(c.n_layer)], value=0, label="Layer")
            head = gr.Radio([(str(i + 1), i) for i in range(c.n_head)], value=0, label="Head")
        matrix = gr.HTML(elem_id="matrix", apply_default_css=False, js_on_load=visuals.TOOLTIP_JS)
        with gr.Accordion("How it works", open=False), gr.Row():
            with gr.Column(scale=3, min_width=300):
                gr.Markdown(how_it_works(writer))
            with gr.Column(scale=2, min_width=280):
                gr.HTML(
                    (ASSETS / "architecture.svg").read_text(),
                    apply_default_css=False,
                    js_on_load=None,
                    elem_classes="pl-architecture",
                )

        joke_state = gr.State(None)
        selected = gr.State(None)

        # ------------------------------------------------------------ events

        def tell_joke(
            prompt_text: str,
            t: float,
            k: float,
            p: float,
            n: float,
            seed_value: float,
            random_choice: bool,
            clean_only: bool,
            layer_index: int,
            head_index: int,
            request: gr.Request,
        ) -> Iterator[dict]:
            job = writer.request(
                prompt_text, t, k, p, n, -1 if random_choice else seed_value, clean_only
            )
            # Forget the previous joke first, so a click during writing cannot show stale data.
            waiting = (
                ["Clean mode: the joke appears once it has been checked."] if job.clean else []
            )
            yield {
                joke_card: visuals.render_joke(job.prompt, "", writing=True, notes=waiting),
                tokens: visuals.render_placeholder("Writing…"),
                joke_state: None,
                selected: None,
                token_info: "",
                heads: "",
                matrix: "",
            }
            if job.clean:
                # Never stream in clean mode: a flagged joke must not be seen, even in part.
                joke, _ = writer.write_checked(job)
                if joke is None:
                    yield {
                        joke_card: visuals.render_joke(
                            job.prompt, "", writing=False, notes=[no_clean_joke(job).message]
                        ),
                        tokens: visuals.render_placeholder("No clean joke this time."),
                    }
                    return
            else:
                steps: list[Step] = []
                for step in writer.steps(job):
                    steps.append(step)
                    if step.sampled:
                        text = decode(writer.tokenizer, [s.token for s in steps if s.sampled])
                        yield {joke_card: visuals.render_joke(job.prompt, text, writing=True)}
                joke = writer.finish(job, steps)
            meta, notes = describe(joke)
            found = originality.check(joke_text(joke))
            last = len(joke.token_ids) - 1  # show the last token's attention straight away
            info, grid, one_head = token_views(joke, last, layer_index, head_index)
            origin = request.headers.get("origin") or f"http://{SERVER_NAME}:{SERVER_PORT}"
            cli, python = reproduce(writer, joke.request, origin.rstrip("/") + "/")
            yield {
                joke_card: visuals.render_joke(
                    joke.request.prompt,
                    joke.written,
                    writing=False,
                    meta=meta,
                    notes=notes,
                    originality=visuals.render_originality(
                        found.verdict, found.similarity, found.joke, found.note
                    ),
                ),
                tokens: visuals.render_token_row(joke.labels, joke.prompt_length, last),
                joke_state: joke,
                selected: last,
                token_info: info,
                heads: grid,
                matrix: one_head,
                seed: joke.request.settings.seed,
                command: cli,
                client_code: python,
            }

        def select_token(joke: Joke | None, layer_index: int, head_index: int, evt: gr.SelectData):
            index = evt.index
            if joke is None or type(index) is not int or not 0 <= index < len(joke.token_ids):
                return gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return index, *token_views(joke, index, layer_index, head_index)

        def select_head(joke: Joke | None, index: int | None, evt: gr.SelectData):
            pair = evt.index
            valid = isinstance(pair, list) and len(pair) == 2 and all(type(i) is int for i in pair)
            if joke is None or index is None or not valid:
                return gr.skip(), gr.skip(), gr.skip()
            layer_index, head_index = pair
            if not (0 <= layer_index < c.n_layer and 0 <= head_index < c.n_head):
                return gr.skip(), gr.skip(), gr.skip()
            return layer_index, head_index, matrix_view(joke, index, layer_index, head_index)

        def change_head(joke: Joke | None, index: int | None, layer_index: int, head_index: int):
            if joke is None or index is None:
                return gr.skip()
            return matrix_view(joke, index, layer_index, head_index)

        # One joke at a time: XLA already spreads a single generation over both CPU cores, so
        # a second one in parallel would make both slower. Clicks have their own, larger limit
        # and never wait behind a joke being written.
        writing = {"concurrency_limit": 1, "concurrency_id": "model"}
        viewing = {"concurrency_limit": 4, "concurrency_id": "views", "api_visibility": "private"}
        viewing |= {"show_progress": "hidden", "trigger_mode": "always_last"}
        settings = [prompt, temperature, top_k, top_p, max_new_tokens, seed, random_seed, clean]
        views = [token_info, heads, matrix]
        gr.on(
            [tell.click, prompt.submit],
            tell_joke,
            inputs=[*settings, layer, head],
            outputs=[joke_card, tokens, joke_state, selected, *views, seed, command, client_code],
            show_progress="hidden",
            api_visibility="private",
            **writing,
        )
        tokens.select(select_token, [joke_state, layer, head], [selected, *views], **viewing)
        heads.select(select_head, [joke_state, selected], [layer, head, matrix], **viewing)
        layer_or_head = [layer.input, head.input]
        gr.on(layer_or_head, change_head, [joke_state, selected, layer, head], matrix, **viewing)
        # Typing a seed means "use this one".
        seed.input(lambda: False, None, random_seed, queue=False, api_visibility="private")

        def generate(
            prompt: str = "",
            temperature: float = DEFAULTS.temperature,
            top_k: int = min(DEFAULTS.top_k, c.vocab_size),
            top_p: float = DEFAULTS.top_p,
            max_new_tokens: int = min(DEFAULTS.max_new_tokens, c.block_size),
            seed: int = -1,
            clean: bool = True,
        ) -> dict:
            """Write one joke. Returns its text, tokens, attention (layers x heads x T x T) and
            the model's five most likely candidates at each written position. seed=-1: random.
            clean=True: a joke flagged as offensive is written again with the next seed (`tries`
            says how many were written; an error if none of 5 is clean). `nearest` compares the
            joke with the training jokes: {similarity, verdict: "new" | "close to a known joke" |
            null, joke: the nearest training joke, note: why there is no verdict}."""
            return generate_json(
                writer, originality, prompt, temperature, top_k, top_p, max_new_tokens, seed, clean
            )

        gr.api(generate, api_name="generate", **writing)
    return demo


def queued(demo: gr.Blocks, max_size: int = QUEUE_SIZE) -> gr.Blocks:
    """The app's queue: past `max_size` waiting requests, a new one is refused at once.

    Gradio then answers HTTP 503; the page shows "This application is currently busy. Please
    try again." and gradio_client raises QueueError("Queue is full! Please try again.").
    Every request goes through the queue: api_open=False closes Gradio's direct routes
    (/gradio_api/run/<name>), which would run jokes beside it, unlimited in number.
    """
    return demo.queue(default_concurrency_limit=1, max_size=max_size, api_open=False)


def use_compilation_cache(folder: Path = COMPILATION_CACHE) -> None:
    """Keep every compiled program in `folder`, unless JAX_COMPILATION_CACHE_DIR says otherwise."""
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        jax.config.update("jax_compilation_cache_dir", str(folder))
    # JAX keeps only programs that took a second to compile; the app's take less each.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def main() -> int:
    reuse_freed_memory()  # before JAX's first computation starts its threads
    started = time.perf_counter()
    use_compilation_cache()
    if LOG_COMPILES:
        jax.config.update("jax_log_compiles", True)  # one log line per compilation, on stderr
    try:
        writer = JokeWriter(CHECKPOINT)
    except CheckpointError as error:
        print(f"error: cannot load the model: {error}", file=sys.stderr)
        return 1
    originality = OriginalityCheck(writer.metadata)  # builds in the background from here on
    writer.warm_up()
    seconds = time.perf_counter() - started
    print(f"Punchline: model loaded and compiled in {seconds:.1f} s", flush=True)
    demo = build_demo(writer, originality)
    queued(demo).launch(
        server_name=SERVER_NAME,
        server_port=SERVER_PORT,
        # System fonts: the page loads nothing from other sites.
        theme=gr.themes.Soft(primary_hue="orange", font=["ui-sans-serif", "system-ui"]),
        css_paths=[ASSETS / "style.css"],
        app_kwargs={"exception_handlers": {TypeError: unknown_keyword}},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
