"""The HTML and text of each view, from a finished Joke: no model runs here.

A click on a token or a head is answered from the numbers the joke already holds
(`Joke.generation.attention`, its candidates), rendered by ui/rendering.py.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from data.tokenizer import decode
from model.gpt import count_parameters
from serving.explainer import surprisal_bits
from serving.joke import Joke
from serving.writer import JokeWriter
from ui import analysis_rendering, rendering

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def script(name: str) -> str:
    """JavaScript run when a gr.HTML component loads (`element` is the component)."""
    return (ASSETS / name).read_text()


def describe(joke: Joke) -> tuple[str, list[str]]:
    """The line under a joke (seed and settings) and its notes."""
    s = joke.request.settings
    count = len(joke.generation.candidates)
    meta = (
        f"seed {s.seed} · temperature {s.temperature:g} · top-k {s.top_k} · top-p {s.top_p:g}"
        f" · {count} new token{'s' * (count != 1)}"
    )
    if joke.generation.ended and not count:
        ending = "The model ended the joke before writing a word: try another seed."
    elif joke.generation.ended:
        ending = "The model ended the joke itself."
    elif joke.request.capped:
        ending = (
            f"Stopped after {s.max_new_tokens} new tokens: all the room the model's context "
            "left after the opening words."
        )
    else:
        ending = f"Stopped at the length limit ({s.max_new_tokens} new tokens)."
    return meta, [*joke.request.notes, ending]


def written_pieces(tokenizer: Tokenizer, joke: Joke) -> list[str]:
    """The model's words cut where each written token ends: what each token added to the
    text (a token that ends inside a character adds nothing until the character is whole)."""
    ids = joke.generation.token_ids[joke.generation.prompt_length :]
    texts = [decode(tokenizer, ids[:n]) for n in range(len(ids) + 1)]
    return [texts[n + 1][len(texts[n]) :] for n in range(len(ids))]


def token_views(
    joke: Joke, index: int, layer: int, head: int, badges: list[list[str]] | None = None
) -> tuple[str, str, str]:
    """The card, the layers x heads grid (with the heads' role badges, if the model ships
    its roles) and one head's matrix, for the token at `index`."""
    generation = joke.generation
    kind = "start" if index == 0 else "typed" if index < generation.prompt_length else "written"
    if kind == "written":
        step = index - generation.prompt_length
        ids, probabilities = generation.candidates[step]
        names = joke.candidate_labels[step]
        rows = list(zip(ids, names, probabilities, generation.sampling[step], strict=True))
        info = analysis_rendering.render_step_card(
            joke.labels[index],
            generation.token_ids[index],
            index,
            step,
            float(surprisal_bits(generation)[step]),
            rows,
            generation.chosen_probabilities[step],
            generation.forced[step],
        )
    else:
        info = rendering.render_read_token(joke.labels[index], index, kind)
    rows = generation.attention[:, :, index, : index + 1]  # (layers, heads, index + 1)
    heads = rendering.render_heads_grid(rows, joke.labels, index, badges)
    return info, heads, matrix_view(joke, index, layer, head)


def matrix_view(joke: Joke, index: int, layer: int, head: int) -> str:
    """One head's whole (T, T) attention matrix, the row of token `index` marked."""
    weights = joke.generation.attention[layer, head]
    return rendering.render_matrix(weights, joke.labels, index, layer, head)


def how_it_works(writer: JokeWriter) -> str:
    """The "How it works" text, filled in with this model's sizes."""
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
