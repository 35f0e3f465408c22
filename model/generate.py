"""Writing jokes: an incremental decoder with a key/value cache, and a command line.

Usage:
    python -m model.generate --checkpoint checkpoints/punchline -n 5
    python -m model.generate --checkpoint checkpoints/punchline --prompt "Why did the" --seed 3

Generation keeps every earlier token's keys and values in a cache instead of recomputing
them, and crosses the jit boundary through exactly two compiled functions (`jax.jit`):

- the prefill (`GPT.prefill`): ONE call for the start token and the whole prompt,
  padded to one of a few fixed lengths (`prefill_lengths`); it fills the cache and
  returns the prompt's attention and the next-token scores at the last prompt position;
- the decode step (`GPT.decode_step`): one call per new token, reading and extending
  the cache.

Both have fixed shapes: the cache always has `block_size` slots, the prefill compiles
once per padded length (a handful at most), and the prompt's length, the position and
the seed are array inputs, so no new prompt, length or setting triggers a recompilation.
Each returns the next-token scores and the random noise for its position; the host then
filters and picks the token (`model/sampling.py`), so the sampling settings never reach
the compiled code at all.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import jax
import numpy as np
from flax import nnx

from model.gpt import GPT
from model.knockout import HeadKnockout, no_knockout
from model.sampling import ranked, sample_token, sampling_probabilities, softmax

CANDIDATES = 5  # how many of the model's most likely next tokens each step reports


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    max_new_tokens: int = 96
    seed: int = 0


@dataclass
class Step:
    """What happened at one position of the sequence.

    `token` is the token fed at `position`; `attention` is its attention over all
    earlier positions, (layers, heads, position + 1). For generated tokens `sampled` is
    True, `candidates`/`probabilities` are the model's top choices for this position
    (computed at the previous step), `sampling` their probabilities after temperature,
    top-k and top-p, and `chosen_probability` the model's probability of `token` (which
    may be outside the candidates). `forced`: the token was imposed, not drawn (a branch).
    """

    position: int
    token: int
    attention: np.ndarray
    sampled: bool
    candidates: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    sampling: np.ndarray | None = None
    chosen_probability: float | None = None
    forced: bool = False


@dataclass
class Generation:
    """One finished joke: the one result type of generation (the app's Joke builds on it)."""

    token_ids: list[int]  # the whole sequence: start token, prompt, generated tokens
    prompt_length: int  # start token + prompt tokens
    attention: np.ndarray  # (layers, heads, T, T) over the whole sequence
    candidates: list[tuple[list[int], list[float]]]  # per generated token: top ids, probs
    sampling: list[list[float]]  # per generated token: the candidates' sampling probabilities
    chosen_probabilities: list[float]  # per generated token: the model's p of the written one
    forced: list[bool]  # per generated token: imposed by a branch rather than drawn
    ended: bool  # True if the model chose to end the joke (end-of-joke token)
    trimmed: int  # prompt tokens dropped from the left to fit the context

    @classmethod
    def from_steps(
        cls, steps: list[Step], prompt_ids: list[int], settings: SamplingSettings, block_size: int
    ) -> Generation:
        """Collect the steps `Generator.stream` yielded for `prompt_ids` into one result."""
        prefix_length = sum(not s.sampled for s in steps)  # start token + the prompt it kept
        generated = steps[prefix_length:]
        # The joke ended itself when it stopped before its budget of new tokens ran out.
        budget = min(settings.max_new_tokens, block_size - prefix_length)
        return cls(
            token_ids=[s.token for s in steps],
            prompt_length=prefix_length,
            attention=attention_matrix(steps),
            candidates=[(s.candidates.tolist(), s.probabilities.tolist()) for s in generated],
            sampling=[s.sampling.tolist() for s in generated],
            chosen_probabilities=[float(s.chosen_probability) for s in generated],
            forced=[s.forced for s in generated],
            ended=len(generated) < budget,
            trimmed=len(prompt_ids) + 1 - prefix_length,
        )


def prompt_room(block_size: int, max_new_tokens: int) -> int:
    """How many prompt tokens the model reads at most.

    The start token takes one place of the context, and a long prompt leaves room for at
    least a quarter of the context (or for `max_new_tokens`, if fewer) of new tokens.
    """
    return block_size - 1 - min(max_new_tokens, block_size // 4)


def fit_prompt(prompt_ids: list[int], block_size: int, max_new_tokens: int) -> list[int]:
    """The prompt's last tokens that fit beside the start token and the writing (see above)."""
    return prompt_ids[max(0, len(prompt_ids) - prompt_room(block_size, max_new_tokens)) :]


def prefill_lengths(block_size: int) -> tuple[int, ...]:
    """The few lengths the prefill is compiled for; a prefix is padded to the next one.

    1 is the start token alone (an empty prompt, the most common request), then powers of
    two from 16 up to block_size: each compiles once (about 1 s on a CPU), and a prefix
    is never padded to more than twice its length, except to 16 (short prompts are cheap).
    Padding everything to block_size would compile once but make the empty prompt's first
    token about 9 ms slower on the shipped model, on a CPU.
    """
    lengths, n = [1], 16
    while n < block_size:
        lengths.append(n)
        n *= 2
    return (*lengths, block_size)


def attention_matrix(steps: list[Step]) -> np.ndarray:
    """Stack the rows of streamed steps into (layers, heads, T, T), zero above the diagonal."""
    length = len(steps)
    layers, heads = steps[0].attention.shape[:2]
    attention = np.zeros((layers, heads, length, length), dtype=np.float32)
    for s in steps:
        attention[:, :, s.position, : s.position + 1] = s.attention
    return attention


class Generator:
    """Holds a model and its two compiled functions; one instance serves every request."""

    def __init__(self, model: GPT, end_of_joke: int):
        self.config = model.config
        self.end_of_joke = end_of_joke
        graphdef, self.params = nnx.split(model)
        structure = jax.tree.structure(self.params)

        def noise_at(key, position, logits):
            # The joke's key, folded with the position: each position draws its own noise.
            return jax.random.gumbel(jax.random.fold_in(key, position), logits.shape)

        # Both take a knockout (model/knockout.py): with every head on, the default, it
        # selects each head's own output, so jokes are bit for bit those of a model without.
        def prefill(weights, tokens, length, key, knockout):
            decoder = nnx.merge(graphdef, jax.tree.unflatten(structure, weights))
            logits, attention, cache = decoder.prefill(tokens, length, knockout)
            return logits, noise_at(key, length - 1, logits), attention, cache

        def step(weights, token, position, cache, key, knockout):
            decoder = nnx.merge(graphdef, jax.tree.unflatten(structure, weights))
            logits, attention, cache = decoder.decode_step(token, position, cache, knockout)
            return logits, noise_at(key, position, logits), attention, cache

        self._prefill = jax.jit(prefill)
        # The cache is donated: XLA updates it in place instead of copying it each step.
        self._step = jax.jit(step, donate_argnums=3)
        self.all_heads = no_knockout(self.config)

    def parameter_list(self, model: GPT) -> list[jax.Array]:
        """The parameters of `model` (shaped like this generator's) as the compiled functions
        take them."""
        return jax.tree.leaves(nnx.split(model)[1])

    def prefill_length(self, prefix_length: int) -> int:
        """The fixed length a prefix is padded to for the prefill (see `prefill_lengths`)."""
        return next(n for n in prefill_lengths(self.config.block_size) if n >= prefix_length)

    def stream(
        self,
        prompt_ids: list[int],
        settings: SamplingSettings,
        knockout: HeadKnockout | None = None,
        forced: Sequence[int] = (),
        weights: list[jax.Array] | None = None,
    ) -> Iterator[Step]:
        """Yield a Step for the start token, each prompt token, then each new token.

        knockout: heads switched off while writing (None: all on). forced: the first new
        tokens, imposed instead of drawn (a branch replays a joke up to its fork, then takes
        another token); the tokens after them are drawn with the joke's own noise, so a
        branch of a joke that forces the joke's own tokens writes the joke itself.
        weights: other parameters of the same shapes to write with (a training snapshot's),
        as `parameter_list` orders them; None: the model's own. Nothing is compiled again.
        """
        knockout = self.all_heads if knockout is None else knockout
        block = self.config.block_size
        # The end-of-joke token also opens every joke: the model learned to start after it.
        # It is always kept; a long prompt loses its first tokens instead.
        prefix = [self.end_of_joke, *fit_prompt(prompt_ids, block, settings.max_new_tokens)]
        budget = max(0, min(settings.max_new_tokens, block - len(prefix)))
        key = jax.random.key(settings.seed)
        # The parameters as a plain list of arrays: a jit call reads that list 4x faster than
        # the nested nnx.State (about 0.1 ms saved per token).
        weights = jax.tree.leaves(self.params) if weights is None else weights
        # The whole prefix in one call, padded to a fixed length (see GPT.prefill for why the
        # padding changes nothing). NumPy inputs travel with the call: no separate transfer.
        tokens = np.full((1, self.prefill_length(len(prefix))), self.end_of_joke, np.int32)
        tokens[0, : len(prefix)] = prefix
        logits, noise, attention, cache = self._prefill(
            weights, tokens, np.int32(len(prefix)), key, knockout
        )
        # Index on the host (np.asarray first): indexing a jax.Array would run one more op.
        rows = np.asarray(attention)[0]  # (layers, heads, T, T)
        for position, token in enumerate(prefix):
            yield Step(position, token, rows[:, :, position, : position + 1], sampled=False)
        for position in range(len(prefix), len(prefix) + budget):
            # `logits` and `noise` are the previous position's: they choose this token.
            scores = np.asarray(logits)[0]  # (V,)
            t, k, p = settings.temperature, settings.top_k, settings.top_p
            index = position - len(prefix)
            is_forced = index < len(forced)
            if is_forced:
                chosen = int(forced[index])
            else:
                chosen = sample_token(scores, np.asarray(noise)[0], t, k, p)
            if chosen == self.end_of_joke:
                return
            token = np.array([chosen], dtype=np.int32)
            logits, noise, attention, cache = self._step(
                weights, token, np.int32(position), cache, key, knockout
            )
            # The step runs asynchronously: describe this token's choice meanwhile.
            model_probabilities = softmax(scores)  # (V,)
            candidates = ranked(scores, CANDIDATES)  # the model's most likely, best first
            yield Step(
                position=position,
                token=chosen,
                attention=np.asarray(attention)[0, :, :, : position + 1],
                sampled=True,
                candidates=candidates,
                probabilities=model_probabilities[candidates],
                sampling=sampling_probabilities(scores, t, k, p)[candidates],
                chosen_probability=float(model_probabilities[chosen]),
                forced=is_forced,
            )

    def generate(
        self,
        prompt_ids: list[int],
        settings: SamplingSettings,
        knockout: HeadKnockout | None = None,
        forced: Sequence[int] = (),
    ) -> Generation:
        """Run `stream` to the end and collect the whole sequence and its attention."""
        steps = list(self.stream(prompt_ids, settings, knockout, forced))
        return Generation.from_steps(steps, prompt_ids, settings, self.config.block_size)


def main(argv: list[str] | None = None) -> int:
    from data.tokenizer import decode, encode, end_of_joke_id
    from model.checkpoint import CheckpointError, load_model

    parser = argparse.ArgumentParser(
        prog="python -m model.generate",
        description="Print jokes sampled from a trained Punchline model folder.",
    )
    parser.add_argument("--checkpoint", default="checkpoints/punchline", help="model folder")
    parser.add_argument("-n", "--num", type=int, default=5, help="how many jokes to print")
    parser.add_argument("--prompt", default="", help="opening words to continue")
    defaults = SamplingSettings()
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--top-k", type=int, default=defaults.top_k, help="0 keeps all")
    parser.add_argument("--top-p", type=float, default=defaults.top_p, help="1.0 keeps all")
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the first joke")
    args = parser.parse_args(argv)
    try:
        model, tokenizer, _ = load_model(args.checkpoint)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    generator = Generator(model, end_of_joke_id(tokenizer))
    prompt_ids = encode(tokenizer, args.prompt)
    for i in range(args.num):
        settings = SamplingSettings(
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed + i,
        )
        result = generator.generate(prompt_ids, settings)
        text = decode(tokenizer, result.token_ids[1:])
        print(f"[seed {settings.seed}] {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
