"""What the training tests share: tiny joke corpora, a model small enough for two CPU cores,
and `run`, which is `python train.py` in this process (training.cli.main)."""

from __future__ import annotations

import json
from pathlib import Path

from training.cli import main

JOKES = [
    "Why did the robot cross the road? To recharge on the other side.",
    "I told my cat a pun about lasers. It is still chasing the point.",
    "My calendar keeps laughing at me. Its days are numbered.",
    "The baker quit his job. He could not make enough dough.",
    "A penguin walks into a library and asks for a cool book.",
    "The snowman won the argument because he had the coldest take.",
]
OTHER_JOKES = [
    f"Knock knock. Who is there? {name}. {name} who? {name} forgot the punchline again."
    for name in ("Lettuce", "Olive", "Tank", "Boo", "Water", "Nobel", "Radio", "Alpaca")
]
# A model small enough to compile and train in seconds on two CPU cores.
TINY = [
    "--n-layer", "2", "--n-head", "2", "--d-model", "64", "--d-ff", "128",
    "--block-size", "48", "--vocab-size", "320", "--batch-size", "8",
    "--dropout", "0.0", "--samples", "0", "--min-chars", "5",
]  # fmt: skip


def write_jokes(folder: Path, jokes: list[str], name: str = "jokes.txt") -> Path:
    path = folder / name
    path.write_text("\n".join(jokes) + "\n")
    return path


def run(tmp_path: Path, *args: str) -> int:
    """`python train.py` with the TINY model and a data cache in tmp_path: its exit code."""
    return main([*TINY, "--cache-dir", str(tmp_path / "cache"), *args])


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
