"""How good is a trained model? Score a model folder on held-out jokes and on jokes it writes.

    python evaluate.py --checkpoint checkpoints/punchline     # writes eval.json beside it

1. Validation: loss, perplexity and bits per character over the whole validation split (the
   jokes the model never trained on), re-read from the data files in `metadata.json`, joke by
   joke (each from its own start, as the app writes), and over windows of the stream (the
   figure of earlier releases, `val_*_windows`).
2. Samples: `--samples` jokes (default 200) with seeds 0, 1, ... and the app's default
   sampling settings, scored for
   - memorisation: the share whose nearest training joke is at least 0.8 similar (TF-IDF cosine);
   - diversity: distinct-1 and distinct-2 (unique words and word pairs over all words and pairs)
     and the share of samples that repeat an earlier sample exactly;
   - shape: the share that end with the end-of-joke token before the length limit, and the
     mean number of tokens written;
   - offensive share, by the classifier that `train.py --clean` filters the data with.

The figures go to `eval.json` in the model folder and to a markdown table on the screen. The
nearest training jokes are only printed: the corpora's licences forbid storing their text.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer
from tqdm import tqdm

from data import DataError, is_offensive, tokenize_to_cache
from data.corpus import DEFAULT_CACHE_DIR, model_data
from data.originality import MEMORISED_SIMILARITY, JokeIndex
from data.tokenizer import decode, end_of_joke_id
from model.checkpoint import CheckpointError, load_model
from model.generate import Generator, SamplingSettings
from model.gpt import GPT
from model.host_memory import reuse_freed_memory
from training.evaluation import model_validation_figures

EVAL_FILE = "eval.json"
DEFAULT_SAMPLES = 200
EVAL_BATCH_SIZE = 32
# How many of the closest sample/training-joke pairs to print.
SHOWN_PAIRS = 5


def write_samples(
    model: GPT, tokenizer: Tokenizer, count: int, first_seed: int = 0
) -> tuple[list[str], list[int], list[bool]]:
    """`count` jokes from an empty prompt with the default settings: texts, lengths, ended."""
    generator = Generator(model, end_of_joke_id(tokenizer))
    texts, lengths, ended = [], [], []
    for seed in tqdm(range(first_seed, first_seed + count), desc="samples", unit=" joke"):
        result = generator.generate([], SamplingSettings(seed=seed))
        written = result.token_ids[result.prompt_length :]
        texts.append(decode(tokenizer, written))
        lengths.append(len(written))
        ended.append(result.ended)
    return texts, lengths, ended


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique word n-grams over all word n-grams in the texts (1.0: no n-gram repeats)."""
    ngrams = [
        tuple(words[i : i + n])
        for words in (text.split() for text in texts)
        for i in range(len(words) - n + 1)
    ]
    return len(set(ngrams)) / len(ngrams) if ngrams else 0.0


def duplicate_rate(texts: Sequence[str]) -> float:
    """The share of texts that repeat an earlier text exactly."""
    return 1 - len(set(texts)) / len(texts) if texts else 0.0


def sample_figures(
    texts: list[str], lengths: list[int], ended: list[bool], index: JokeIndex
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The sample scores, and the closest (sample, training joke) pairs, closest first."""
    nearest = index.nearest(texts)
    figures = {
        "memorization_rate": float(np.mean([match.memorised for match in nearest])),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "duplicate_rate": duplicate_rate(texts),
        "ended_rate": float(np.mean(ended)),
        "offensive_rate": float(np.mean(is_offensive(texts))),
        "mean_tokens": float(np.mean(lengths)),
    }
    order = np.argsort([-match.similarity for match in nearest])[:SHOWN_PAIRS]
    pairs = [
        {"seed": int(i), "sample": texts[i], "nearest": nearest[i].joke, "similarity": s}
        for i in order
        for s in [round(nearest[i].similarity, 3)]
    ]
    return figures, pairs


def evaluate(
    folder: Path,
    samples: int = DEFAULT_SAMPLES,
    data: Sequence[str] | None = None,
    cache_dir: Path = DEFAULT_CACHE_DIR,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every figure of `eval.json` for a model folder, and the closest pairs to show."""
    model, tokenizer, metadata = load_model(folder)
    jokes = model_data(metadata, data)
    started = time.perf_counter()
    val = tokenize_to_cache(jokes.val, tokenizer, cache_dir, "val")
    # Every validation token (no cap, no dropout), with training's own evaluation loop.
    figures: dict[str, Any] = model_validation_figures(model, val, EVAL_BATCH_SIZE, progress=True)
    texts, lengths, ended = write_samples(model, tokenizer, samples)
    sample_scores, pairs = sample_figures(texts, lengths, ended, JokeIndex(jokes.train))
    figures |= sample_scores
    figures = {name: round(value, 4) for name, value in figures.items()}
    defaults = SamplingSettings()
    figures |= {
        "samples": samples,
        "sampling": {k: getattr(defaults, k) for k in ("temperature", "top_k", "top_p")},
        "max_new_tokens": defaults.max_new_tokens,
        "memorised_similarity": MEMORISED_SIMILARITY,
        "val_jokes": len(jokes.val),
        "train_jokes": len(jokes.train),
        "eval_seconds": round(time.perf_counter() - started, 1),
        # The samples with their similarity, without the training jokes (licences).
        "closest_samples": [{k: p[k] for k in ("seed", "sample", "similarity")} for p in pairs],
    }
    return figures, pairs


def markdown_table(figures: dict[str, Any]) -> str:
    rows = [
        ("validation bits per character, joke by joke", f"{figures['val_bpc']:.3f}"),
        ("validation loss (nats/token)", f"{figures['val_loss']:.3f}"),
        ("validation perplexity", f"{figures['val_ppl']:.1f}"),
        ("bits per character over windows (earlier releases)", f"{figures['val_bpc_windows']:.3f}"),
        (
            f"memorised (nearest training joke >= {MEMORISED_SIMILARITY} similar)",
            _percent(figures, "memorization_rate"),
        ),
        ("distinct-1 / distinct-2", f"{figures['distinct_1']:.3f} / {figures['distinct_2']:.3f}"),
        ("exact duplicate samples", _percent(figures, "duplicate_rate")),
        ("ended with end-of-joke", _percent(figures, "ended_rate")),
        ("mean tokens per joke", f"{figures['mean_tokens']:.1f}"),
        ("offensive (classifier)", _percent(figures, "offensive_rate")),
    ]
    lines = ["| figure | value |", "| --- | ---: |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _percent(figures: dict[str, Any], key: str) -> str:
    return f"{100 * figures[key]:.1f}%"


def main(argv: list[str] | None = None) -> int:
    reuse_freed_memory()  # before JAX's first computation starts its threads
    parser = argparse.ArgumentParser(
        prog="python evaluate.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", default="checkpoints/punchline", help="model folder")
    parser.add_argument(
        "--samples", type=int, default=DEFAULT_SAMPLES, help="jokes to write and score"
    )
    parser.add_argument(
        "--data",
        nargs="+",
        help="data files to read instead of the ones in metadata.json (same cleaning and split)",
    )
    parser.add_argument(
        "--cache-dir", default=str(DEFAULT_CACHE_DIR), help="token cache, as for train.py"
    )
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error(f"--samples must be at least 1; got {args.samples}")
    folder = Path(args.checkpoint)
    try:
        figures, pairs = evaluate(folder, args.samples, args.data, Path(args.cache_dir))
    except (CheckpointError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    (folder / EVAL_FILE).write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    print(f"\n{markdown_table(figures)}\n\nClosest samples to a training joke:")
    for pair in pairs:
        print(f"- {pair['similarity']:.2f}  sample:  {pair['sample']!r}")
        print(f"        nearest: {pair['nearest']!r}")
    print(f"\nwrote {folder / EVAL_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
