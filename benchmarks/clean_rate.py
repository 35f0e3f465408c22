"""How often the app's clean mode writes a joke again, and how often it finds no clean joke.

    python -m benchmarks.clean_rate                          # 1,000 jokes, checkpoints/punchline
    python -m benchmarks.clean_rate --jokes 200 --prompt "Why did the"

Each joke goes through the service's own JokeWriter.write_checked (serving/writer.py), the code
behind the page and the API: a joke flagged by data.clean_mode.is_unfit (offensive words, or a
sensitive topic) is written again with the next seed, up to CLEAN_TRIES jokes
(serving/limits.py). Each flagged joke's reasons are counted. The settings are the app's defaults
and the seeds are 0, 1000, 2000, ... (so that no two requests share a retry seed).
Prints a table and writes JSON (--json, default benchmarks/results/clean_rate.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from data.offensive import is_offensive
from data.sensitive import sensitive_topics
from serving.joke import Joke
from serving.limits import CLEAN_TRIES
from serving.writer import DEFAULTS, JokeWriter

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
SEED_STRIDE = 1000  # request i starts at seed i * SEED_STRIDE; retries take the next seeds


def measure(
    writer: JokeWriter, jokes: int, prompt: str, review: Path | None = None
) -> dict[str, Any]:
    """Ask for `jokes` jokes in clean mode; count the tries each took and why jokes were
    flagged. `review`: write every shown and every flagged joke there (JSON lines) for a
    person to read."""
    tries: Counter[int] = Counter()
    reasons: Counter[str] = Counter()  # "offensive words" or a sensitive topic's category
    gave_up: list[int] = []  # the first seed of each request that found no clean joke
    shown: list[str] = []
    kept_out: list[dict[str, Any]] = []

    def flagged(joke: Joke) -> None:
        why = ["offensive words"] * bool(is_offensive([joke.text])[0])
        why += sensitive_topics(joke.text)
        reasons.update(why)
        kept_out.append({"text": joke.text, "why": why})

    written = 0
    started = time.perf_counter()
    for index in range(jokes):
        seed = index * SEED_STRIDE
        job = writer.request(prompt, *_settings(), seed, clean=True)
        joke, count = writer.write_checked(job, flagged)
        written += count
        if joke is None:
            gave_up.append(seed)
        else:
            tries[count] += 1
            shown.append(joke.text)
    seconds = time.perf_counter() - started
    if review is not None:
        review.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"shown": text} for text in shown] + [{"flagged": row} for row in kept_out]
        review.write_text("".join(json.dumps(row) + "\n" for row in rows))
    resampled = jokes - tries[1]
    return {
        "jokes_requested": jokes,
        "jokes_written": written,
        "flagged": written - (jokes - len(gave_up)),
        "flagged_rate": (written - (jokes - len(gave_up))) / written,
        "resampled": resampled,
        "resample_rate": resampled / jokes,
        "gave_up": len(gave_up),
        "give_up_rate": len(gave_up) / jokes,
        "gave_up_first_seeds": gave_up,
        "flagged_because": dict(reasons.most_common()),
        "tries": {str(k): tries[k] for k in range(1, CLEAN_TRIES + 1)},
        "mean_tries": written / jokes,
        "seconds": seconds,
        "seconds_per_joke_written": seconds / written,
    }


def _settings() -> tuple[float, int, float, int]:
    return DEFAULTS.temperature, DEFAULTS.top_k, DEFAULTS.top_p, DEFAULTS.max_new_tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.clean_rate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "punchline")
    parser.add_argument("--jokes", type=int, default=1000, help="requests for a clean joke")
    parser.add_argument("--prompt", default="", help="opening words (default: none)")
    parser.add_argument("--json", type=Path, default=RESULTS / "clean_rate.json")
    parser.add_argument(
        "--review",
        type=Path,
        help="also write every shown and flagged joke to this file (JSON lines), for a person "
        "to read and count what the filter missed and what it flagged needlessly",
    )
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    writer = JokeWriter(args.checkpoint)
    writer.warm_up()
    figures = measure(writer, args.jokes, args.prompt, args.review)
    meta = writer.metadata
    record = {
        "command": shlex.join(["python", "-m", "benchmarks.clean_rate", *(argv or sys.argv[1:])]),
        "checkpoint": str(args.checkpoint),
        "model": {key: meta.get(key) for key in ("git_commit", "steps", "val_loss", "val_bpc")},
        "trained_on_clean_data": (meta.get("train_config") or {}).get("clean"),
        "settings": {k: v for k, v in dataclasses.asdict(DEFAULTS).items() if k != "seed"}
        | {"prompt": args.prompt, "first_seeds": f"0, {SEED_STRIDE}, ... (every {SEED_STRIDE})"},
        "clean_tries": CLEAN_TRIES,
        "load_average": [load_before, os.getloadavg()[0]],  # other work slows the timings
        "figures": figures,
    }
    print(f"clean mode over {args.jokes:,} requests ({args.checkpoint}, prompt {args.prompt!r})")
    rows = [
        ("jokes written", f"{figures['jokes_written']:,}"),
        ("flagged", f"{figures['flagged']:,} ({figures['flagged_rate']:.1%})"),
        ("requests resampled", f"{figures['resampled']:,} ({figures['resample_rate']:.1%})"),
        ("requests given up", f"{figures['gave_up']:,} ({figures['give_up_rate']:.2%})"),
        ("mean jokes per request", f"{figures['mean_tries']:.3f}"),
        ("tries needed (1..5)", " ".join(map(str, figures["tries"].values()))),
        ("seconds per joke written", f"{figures['seconds_per_joke_written']:.3f}"),
        ("flagged because", ", ".join(f"{k} {v}" for k, v in figures["flagged_because"].items())),
    ]
    for name, value in rows:
        print(f"  {name:<26} {value}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
