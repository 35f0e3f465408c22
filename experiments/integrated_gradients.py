"""How many points integrated gradients need, and where: measured on a model's validation jokes.

    python -m experiments.integrated_gradients checkpoints/punchline
    python -m experiments.integrated_gradients checkpoints/punchline --jokes 8 --json PATH

For each of `--jokes` validation jokes at each of three positions (a quarter, half and nearly
all of the context: the three lengths the explainer compiles), integrated gradients of the
token the joke wrote next (model/attribution.py) by each rule in RULES, against a reference of
REFERENCE_STEPS equally spaced points. Two errors per rule, median and 90th percentile over
the jokes:

- the completeness gap: |sum of the scores - the change they explain| / |the change|, the
  figure the explainer shows beside the scores;
- the scores' error: ||scores - reference scores|| / ||reference scores||.

And the cost of each rule in forward passes (a gradient counts as three: one forward, a
backward of about twice its work), the figure the explainer's time follows.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx
from tokenizers import Tokenizer

from data.tokenizer import encode, end_of_joke_id
from model.attribution import EVEN_SHARE, GRID, STEPS, integrated_gradients
from model.gpt import GPT
from training.folder_data import read_folder_and_data

REFERENCE_STEPS = 256
# (name, gradients, looks at f, share of the points spread evenly); 1.0: equally spaced.
RULES = (
    ("8 equally spaced", 8, 2, 1.0),
    ("16 equally spaced", 16, 2, 1.0),
    ("24 equally spaced", 24, 2, 1.0),
    (f"{STEPS} placed after {GRID} looks (the default)", STEPS, GRID, EVEN_SHARE),
    (f"6 placed after {GRID} looks", 6, GRID, EVEN_SHARE),
    (f"8 placed after {GRID} looks (until 2026-12-05)", 8, GRID, EVEN_SHARE),
    (f"12 placed after {GRID} looks", 12, GRID, EVEN_SHARE),
)
GRADIENT_COST = 3  # forward passes a gradient costs


def cases(
    tokenizer: Tokenizer, validation: Sequence[str], block: int, jokes: int
) -> list[tuple[list[int], int]]:
    """(tokens, position) pairs: `jokes` validation jokes long enough for each position."""
    start = end_of_joke_id(tokenizer)
    encoded = [[start, *encode(tokenizer, text)] for text in validation]
    found = []
    for position in (block // 4 - 4, block // 2 - 4, block - 18):
        long_enough = [ids for ids in encoded if len(ids) > position + 1][:jokes]
        found += [(ids[: position + 2], position) for ids in long_enough]
    return found


def measure(model: GPT, blank: int, found: Sequence[tuple[list[int], int]]) -> dict:
    """Each rule's errors over the (tokens, position) cases `found`, `blank` the baseline."""
    blank = jnp.int32(blank)
    run = nnx.jit(integrated_gradients, static_argnames=("steps", "grid", "even_share"))
    errors = {name: {"gap": [], "scores": []} for name, *_ in RULES}
    for tokens, position in found:
        t, at = jnp.asarray([tokens], jnp.int32), jnp.int32(position)
        chosen = jnp.int32(tokens[position + 1])
        exact = run(model, t, at, chosen, blank, steps=REFERENCE_STEPS, grid=2, even_share=1.0)
        reference = np.asarray(exact.attribution, np.float64)
        for name, steps, grid, even_share in RULES:
            got = run(model, t, at, chosen, blank, steps=steps, grid=grid, even_share=even_share)
            scores = np.asarray(got.attribution, np.float64)
            errors[name]["gap"].append(abs(float(got.gap)) / abs(float(got.change)))
            error = np.linalg.norm(scores - reference) / np.linalg.norm(reference)
            errors[name]["scores"].append(float(error))
    rows = []
    for name, steps, grid, _ in RULES:
        gap, scores = np.asarray(errors[name]["gap"]), np.asarray(errors[name]["scores"])
        rows.append({
            "rule": name, "forward_passes": GRADIENT_COST * steps + grid,
            "gap_median": float(np.median(gap)), "gap_p90": float(np.quantile(gap, 0.9)),
            "scores_median": float(np.median(scores)),
            "scores_p90": float(np.quantile(scores, 0.9)),
        })  # fmt: skip
    return {"cases": len(errors[RULES[0][0]]["gap"]), "reference_steps": REFERENCE_STEPS,
            "rows": rows}  # fmt: skip


def table(result: dict) -> str:
    lines = [
        "| rule | cost (forward passes) | completeness gap: median / p90 "
        "| scores' error: median / p90 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['rule']} | {row['forward_passes']} "
            f"| {row['gap_median']:.1%} / {row['gap_p90']:.1%} "
            f"| {row['scores_median']:.1%} / {row['scores_p90']:.1%} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    folder = read_folder_and_data(
        "python -m experiments.integrated_gradients",
        "Errors of integrated gradients by number and placement of points, on validation jokes.",
        argv,
        extra=[
            ("--jokes", {"type": int, "default": 8, "help": "jokes per position (default: 8)"}),
            ("--json", {"type": Path, "help": "also write the result here"}),
        ],
    )
    if folder is None:
        return 1
    block = folder.model.config.block_size
    found = cases(folder.tokenizer, folder.jokes.val, block, folder.args.jokes)
    if not found:
        print(f"error: no validation joke is longer than {block // 4 - 2} tokens", file=sys.stderr)
        return 1
    result = measure(folder.model, end_of_joke_id(folder.tokenizer), found)
    print(f"{result['cases']} cases, against {REFERENCE_STEPS} equally spaced points:\n")
    print(table(result))
    if folder.args.json:
        folder.args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
