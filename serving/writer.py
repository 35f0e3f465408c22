"""JokeWriter: the model, loaded and compiled once, writing jokes for every visitor.

A request goes: `request()` checks what was sent and fits the prompt into the context;
`steps()` streams the model's tokens (the page shows them as they come); `finish()` collects
them into a Joke. `write_checked()` does all of it, and in clean mode writes a flagged joke
again with the next seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from data.clean_mode import is_unfit
from data.tokenizer import END_OF_JOKE, decode, encode, end_of_joke_id, token_strings
from model.checkpoint import CheckpointError, load_model
from model.generate import (
    Generation,
    Generator,
    SamplingSettings,
    Step,
    prefill_lengths,
    prompt_room,
)
from model.knockout import HeadKnockout
from serving.errors import RequestError
from serving.joke import Joke, JokeRequest
from serving.labels import END_LABEL, START_LABEL, visible_whitespace
from serving.limits import CLEAN_TRIES, MAX_SEED
from serving.validation import clean_prompt, validate_clean, validate_settings

DEFAULTS = SamplingSettings()


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
        # The page's and the API's defaults: DEFAULTS within this model's vocabulary and context.
        self.defaults = dataclasses.replace(
            DEFAULTS,
            top_k=min(DEFAULTS.top_k, self.config.vocab_size),
            max_new_tokens=min(DEFAULTS.max_new_tokens, self.config.block_size),
        )

    def warm_up(self) -> None:
        """Compile before the first visitor arrives.

        One joke per length the prompt's prefill is compiled for (model/generate.py), each
        with a prompt that fills that length and one new token: every compiled program has
        run once, the longest prompt reaching all but the last position of the context.
        """
        block = self.config.block_size
        filler = encode(self.tokenizer, "Knock knock. Who's there? ")
        for length in prefill_lengths(block):
            prompt = (filler * block)[: min(length, block - 1) - 1]  # the start token is one
            self.generator.generate(prompt, dataclasses.replace(DEFAULTS, max_new_tokens=1))
        is_unfit(["Knock knock."])  # reads the classifier's weights and the lexicon once, now

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
        """Validate everything a visitor or program sent; raises RequestError with the reason."""
        clean = validate_clean(clean)
        text, notes = clean_prompt(prompt)
        # Every joke would start with flagged words: refuse now rather than write five in vain.
        if clean and text and is_unfit([text])[0]:
            raise RequestError(
                "Your opening words were flagged as offensive or as a sensitive topic and clean "
                "mode is on: change them, or turn off clean mode (clean=False in the API).",
                title="Offensive opening words",
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

    def steps(
        self,
        job: JokeRequest,
        knockout: HeadKnockout | None = None,
        forced: Sequence[int] = (),
        weights: list[Any] | None = None,
    ) -> Iterator[Step]:
        """The joke's steps as they are written; with heads off, forced first tokens or other
        weights, see Generator.stream."""
        return self.generator.stream(job.prompt_ids, job.settings, knockout, forced, weights)

    def finish(self, job: JokeRequest, steps: list[Step]) -> Joke:
        """Collect the streamed steps into a Joke (the same numbers Generator.generate gives)."""
        generation = Generation.from_steps(
            steps, job.prompt_ids, job.settings, self.config.block_size
        )
        written = generation.token_ids[generation.prompt_length :]
        return Joke(
            request=job,
            generation=generation,
            labels=self.labels(generation.token_ids, start=True),
            candidate_labels=[self.labels(ids, start=False) for ids, _ in generation.candidates],
            written=decode(self.tokenizer, written),
        )

    def labels(self, token_ids: list[int], start: bool) -> list[str]:
        """Display text of tokens. The end-of-joke token also opens every joke: in a joke it
        reads ⟨start⟩; among the candidates it means the model wanted to stop, ⟨end⟩."""
        special = START_LABEL if start else END_LABEL
        pieces = token_strings(self.tokenizer, token_ids)
        return [
            special if token_id == self.end_of_joke else visible_whitespace(piece) or "∅"
            for token_id, piece in zip(token_ids, pieces, strict=True)
        ]

    def write(
        self,
        job: JokeRequest,
        knockout: HeadKnockout | None = None,
        forced: Sequence[int] = (),
        weights: list[Any] | None = None,
    ) -> Joke:
        return self.finish(job, list(self.steps(job, knockout, forced, weights)))

    def write_checked(
        self, job: JokeRequest, flagged: Callable[[Joke], None] | None = None
    ) -> tuple[Joke | None, int]:
        """Write the joke; in clean mode, until one is not flagged (offensive words or a
        sensitive topic: data/clean_mode.py).

        A flagged joke is written again with the next seed, CLEAN_TRIES jokes at most; each
        flagged one is handed to `flagged` if given (benchmarks/clean_rate.py counts them), and
        never shown. Returns the joke (None when every try was flagged) and how many jokes were
        written. The joke's request holds the seed that wrote it, so it can be written again.
        """
        if not job.clean:
            return self.write(job), 1
        for attempt in range(CLEAN_TRIES):
            tried = retry(job, attempt)
            joke = self.write(tried)
            if not is_unfit([joke.text])[0]:
                return joke, attempt + 1
            if flagged is not None:
                flagged(joke)
        return None, CLEAN_TRIES


def retry(job: JokeRequest, attempt: int) -> JokeRequest:
    """The request for clean mode's attempt number `attempt` (0: the request itself)."""
    if attempt == 0:
        return job
    first = job.settings.seed
    seed, last_flagged = ((first + i) % (MAX_SEED + 1) for i in (attempt, attempt - 1))
    flagged = f"seed {first}" if attempt == 1 else f"seeds {first} to {last_flagged}"
    note = (
        f"Clean mode: {flagged} wrote a joke flagged as offensive or sensitive; "
        f"this is seed {seed}."
    )
    return dataclasses.replace(
        job, settings=dataclasses.replace(job.settings, seed=seed), notes=[*job.notes, note]
    )


def no_clean_joke(job: JokeRequest) -> RequestError:
    """The error for a clean-mode request whose every try was flagged."""
    last = (job.settings.seed + CLEAN_TRIES - 1) % (MAX_SEED + 1)
    return RequestError(
        f"Could not find a clean joke: all {CLEAN_TRIES} jokes written (seeds "
        f"{job.settings.seed} to {last}) were flagged as offensive or sensitive. Try again, "
        "change the opening words or the settings, or turn off clean mode.",
        title="No clean joke",
    )
