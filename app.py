"""Punchline's web app: ask for a joke, watch it being written, then see where the model looked.

    python app.py                                   # http://127.0.0.1:7860
    PUNCHLINE_CHECKPOINT=path/to/model GRADIO_SERVER_PORT=7861 python app.py

The model folder is loaded and compiled once, before the server starts; every click on a
token is answered from the attention kept in the visitor's gr.State, never by running the
model again. The HTML of the heatmaps comes from visuals.py. Programs can call the
`/generate` endpoint (see README) with gradio_client.
"""

from __future__ import annotations

import dataclasses
import html
import math
import os
import secrets
import shlex
import sys
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

import visuals
from data.tokenizer import END_OF_JOKE, decode, encode, end_of_joke_id, token_strings
from model.checkpoint import CheckpointError, load_model
from model.generate import Generator, SamplingSettings, Step, attention_matrix
from model.gpt import count_parameters

ASSETS = Path(__file__).resolve().parent / "assets"
CHECKPOINT = os.environ.get("PUNCHLINE_CHECKPOINT", "checkpoints/punchline")
SERVER_NAME = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
SERVER_PORT = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
MAX_PROMPT_CHARS = 1_000
MAX_SEED = 2**31 - 1
RANDOM_SEEDS = 1_000_000  # random seeds stay below this, so they are easy to retype
DEFAULTS = SamplingSettings()
HELP = {  # the hint under each control
    "t": "Low: safe and repetitive. High: surprising, then nonsense.",
    "k": "Only the k most likely tokens may be drawn (0: all).",
    "p": "Only the most likely tokens that together reach p.",
    "n": "New tokens at most.",
    "seed": "Picks one and shows it here.",
}


# ---------------------------------------------------------------- checking what visitors send


def invalid(message: str) -> gr.Error:
    """A gr.Error for bad input: shown to the visitor or client, no traceback in the log."""
    return gr.Error(message, title="Invalid input", print_exception=False)


def _shown(value: Any) -> str:
    # Error messages are rendered as HTML in the browser: never echo markup back.
    text = repr(value)
    return html.escape(text if len(text) <= 40 else text[:39] + "…", quote=False)


def _checked(name: str, value: Any, allowed: str, ok: Any, whole: bool = False) -> float:
    """`value` if it is a finite number (whole if asked) for which ok(value) holds."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and (not whole or value == int(value)) and ok(value)):
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
        self.model, self.tokenizer, _ = load_model(folder)
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
        self, prompt: Any, temperature: Any, top_k: Any, top_p: Any, max_new_tokens: Any, seed: Any
    ) -> JokeRequest:
        """Validate everything a visitor or program sent; raises gr.Error with the reason."""
        text, notes = clean_prompt(prompt)
        block = self.config.block_size
        settings = validate_settings(
            temperature, top_k, top_p, max_new_tokens, seed,
            vocab_size=self.config.vocab_size, block_size=block,
        )  # fmt: skip
        # Long opening words leave room for at least a quarter of the context of new words.
        limit = block - 1 - min(settings.max_new_tokens, block // 4)
        text, ids, trimmed = self.fit(text, limit)
        if trimmed:
            notes.append(
                f"Your opening words were longer than the model can read ({block} tokens in "
                f"all): the first {trimmed} tokens were dropped to leave room for the joke."
            )
        room = block - 1 - len(ids)  # the start token takes one place
        capped = settings.max_new_tokens > room
        settings = dataclasses.replace(settings, max_new_tokens=min(room, settings.max_new_tokens))
        return JokeRequest(text, ids, settings, trimmed, capped, notes)

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


def joke_json(writer: JokeWriter, joke: Joke) -> dict[str, Any]:
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
    }


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


def build_demo(writer: JokeWriter) -> gr.Blocks:
    c = writer.config
    # No analytics: the page and the server talk to nobody but each other.
    with gr.Blocks(title="Punchline: a tiny GPT that tells jokes", analytics_enabled=False) as demo:
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
            layer_index: int,
            head_index: int,
            request: gr.Request,
        ) -> Iterator[dict]:
            job = writer.request(prompt_text, t, k, p, n, -1 if random_choice else seed_value)
            # Forget the previous joke first, so a click during writing cannot show stale data.
            yield {
                joke_card: visuals.render_joke(job.prompt, "", writing=True),
                tokens: visuals.render_placeholder("Writing…"),
                joke_state: None,
                selected: None,
                token_info: "",
                heads: "",
                matrix: "",
            }
            steps: list[Step] = []
            for step in writer.steps(job):
                steps.append(step)
                if step.sampled:
                    text = decode(writer.tokenizer, [s.token for s in steps if s.sampled])
                    yield {joke_card: visuals.render_joke(job.prompt, text, writing=True)}
            joke = writer.finish(job, steps)
            meta, notes = describe(joke)
            last = len(joke.token_ids) - 1  # show the last token's attention straight away
            info, grid, one_head = token_views(joke, last, layer_index, head_index)
            origin = request.headers.get("origin") or f"http://{SERVER_NAME}:{SERVER_PORT}"
            cli, python = reproduce(writer, job, origin.rstrip("/") + "/")
            yield {
                joke_card: visuals.render_joke(
                    job.prompt, joke.written, writing=False, meta=meta, notes=notes
                ),
                tokens: visuals.render_token_row(joke.labels, joke.prompt_length, last),
                joke_state: joke,
                selected: last,
                token_info: info,
                heads: grid,
                matrix: one_head,
                seed: job.settings.seed,
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
        settings = [prompt, temperature, top_k, top_p, max_new_tokens, seed, random_seed]
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
        ) -> dict:
            """Write one joke. Returns its text, tokens, attention (layers x heads x T x T) and
            the model's five most likely candidates at each written position. seed=-1: random."""
            job = writer.request(prompt, temperature, top_k, top_p, max_new_tokens, seed)
            return joke_json(writer, writer.write(job))

        gr.api(generate, api_name="generate", **writing)
    return demo


def main() -> int:
    started = time.perf_counter()
    try:
        writer = JokeWriter(CHECKPOINT)
    except CheckpointError as error:
        print(f"error: cannot load the model: {error}", file=sys.stderr)
        return 1
    writer.warm_up()
    print(f"Punchline: model loaded and compiled in {time.perf_counter() - started:.1f} s")
    demo = build_demo(writer)
    demo.queue(default_concurrency_limit=1, max_size=32).launch(
        server_name=SERVER_NAME,
        server_port=SERVER_PORT,
        # System fonts: the page loads nothing from other sites.
        theme=gr.themes.Soft(primary_hue="orange", font=["ui-sans-serif", "system-ui"]),
        css_paths=[ASSETS / "style.css"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
