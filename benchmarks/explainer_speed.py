"""Speed of the explainer's analyses, the compilations they cause and the size of their answers.

    python -m benchmarks.explainer_speed            # 15 rounds: under a minute on 2 cores
    python -m benchmarks.explainer_speed --quick    # 4 rounds
    python -m benchmarks.explainer_speed --checkpoint FOLDER --json PATH

On a model folder (checkpoints/punchline: 4 layers x 4 heads, context 128), after
JokeWriter.warm_up() and Explainer.warm_up(), as the app runs them (serving/):

- one joke per length the writer's prefill compiles for (prefill_lengths: 16, 32, 64, 128
  on the shipped model; the analyses pad every joke to the context), a few tokens shorter,
  made long by its prompt (at most 16 written):
  median and p90 milliseconds of the single-step analyses at its last written token (the
  whole sequence is read): the logit lens, a knockout of 2 heads and the importance map, in
  mean mode where the folder ships mean head outputs (else zero), the information flow, and
  gradient x input without and with integrated gradients. Goal (GOAL_MS): the worst
  length's median at most 100 ms for the first three, 200 ms for the others, on 2 cores.
  Rewrite and branch from written token 0 write the continuation again: reported, not held
  to a goal;
- JAX compilations during every measured call (jax_log_compiles): after warm-up, none;
- for a joke that fills the context: the bytes of HTML the page receives when it is
  finished (every view of its last token), against the goal "one joke's full trace sent to
  the page is at most 1 MB"; and the bytes of the JSON answers (json.dumps) of /generate
  (serving.api.joke_json; `nearest` an originality check with no verdict; its attention is
  every layer's and head's full T x T matrix), /lens, /knockout, /importance and /branch
  (each writes the joke again first, as the endpoints do).

Times are wall-clock (time.perf_counter), host work included (labels, top-k, JSON aside).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jax
import numpy as np

from benchmarks.speed import machine
from model.generate import prefill_lengths
from model.host_memory import reuse_freed_memory
from model.knockout import MEAN, ZERO
from serving import api
from serving.explainer import FLOW_THRESHOLD, Explainer, written
from serving.joke import Joke
from serving.originality import Originality, OriginalityCheck
from serving.writer import JokeWriter

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "punchline"
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "explainer_speed.json"
# Median milliseconds each single-step analysis should answer in, on 2 cores: the lens,
# knockout and importance map of part 1 of the explainer, then part 2's (at most 200 ms).
GOAL_MS = {"lens": 100.0, "knockout": 100.0, "importance": 100.0, "flow": 200.0,
           "attribution": 200.0, "integrated": 200.0}  # fmt: skip
GOAL_BYTES = 1_000_000  # one joke's full trace sent to the page
SINGLE_STEP = tuple(GOAL_MS)
# Reported, not held to a goal: writing the rest of the joke again.
REPORTED = ("rewrite", "branch")
HEADS = [(0, 0), (1, 1)]
SAMPLING = (0.8, 50, 0.95)  # temperature, top_k, top_p: the app's defaults
# Long joke-like text: the prompt is its last words, as many tokens as a length needs. It
# ends at a full stop, or, where a model ends every joke there, mid-sentence.
FILLER = 6 * (
    "A man walks into a library and asks for books about paranoia. The librarian whispers: "
    "they're right behind you. Why did the scarecrow win an award? He was outstanding in his "
    "field. I told my wife her eyebrows were drawn too high. She looked surprised."
)
ENDINGS = ("", " Why did the")


@contextmanager
def counting_compilations() -> Iterator[list[str]]:
    """Yields the list of programs JAX compiles (by name) inside the block."""
    compiled: list[str] = []

    class Counter(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith("Finished XLA compilation of "):
                compiled.append(message.removeprefix("Finished XLA compilation of ").split()[0])

    handler, logger = Counter(), logging.getLogger("jax")
    before = jax.config.jax_log_compiles
    logger.addHandler(handler)
    jax.config.update("jax_log_compiles", True)
    try:
        yield compiled
    finally:
        jax.config.update("jax_log_compiles", before)
        logger.removeHandler(handler)


def joke_of_length(writer: JokeWriter, length: int, new_tokens: int) -> tuple[tuple, Joke]:
    """What a visitor sends (prompt, settings, seed, clean=False) for a joke of about `length`
    tokens with `new_tokens` written, and that joke: the first (ending, seed) whose joke runs
    its budget, else the longest."""
    best: tuple[tuple, Joke] | None = None
    for ending in ENDINGS:
        prompt = writer.fit(FILLER + ending, length - 1 - new_tokens)[0]
        for seed in range(20):
            sent = (prompt, *SAMPLING, new_tokens, seed, False)
            joke = writer.write(writer.request(*sent))
            if best is None or len(joke.generation.token_ids) > len(best[1].generation.token_ids):
                best = sent, joke
            if not joke.generation.ended:
                return best
    assert best is not None
    if not written(best[1]):
        raise RuntimeError(f"every joke of {length} tokens ended at once: change FILLER's end")
    return best


def other_token(writer: JokeWriter, joke: Joke) -> int:
    """A token to branch to at written token 0: a candidate the model did not write."""
    avoid = {written(joke)[0], writer.end_of_joke}
    return next(i for i in [*joke.generation.candidates[0][0], 0, 1, 2] if i not in avoid)


def summary(seconds: list[float]) -> dict[str, float]:
    ms = 1000 * np.asarray(seconds)
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90))}


def time_analyses(
    writer: JokeWriter, explainer: Explainer, joke: Joke, mode: str, rounds: int
) -> dict[str, dict[str, float]]:
    """Median and p90 milliseconds of each analysis of `joke`, in interleaved rounds."""
    g = joke.generation
    ids, prompt_length, last = g.token_ids, g.prompt_length, len(written(joke)) - 1
    other = other_token(writer, joke)
    calls: dict[str, Callable[[], Any]] = {
        "lens": lambda: explainer.lens(ids, prompt_length, last),
        "knockout": lambda: explainer.knockout(ids, prompt_length, last, HEADS, mode),
        "importance": lambda: explainer.importance(ids, prompt_length, last, mode),
        "flow": lambda: explainer.flow(ids, prompt_length, last, FLOW_THRESHOLD),
        "attribution": lambda: explainer.attribution(ids, prompt_length, last),
        "integrated": lambda: explainer.attribution(ids, prompt_length, last, integrated=True),
        "rewrite": lambda: explainer.rewrite(joke, 0, HEADS, mode),
        "branch": lambda: explainer.branch(joke, 0, other),
    }
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()  # every analysis returns numpy arrays or Python values: the work is done
            seconds[name].append(time.perf_counter() - start)
    return {name: summary(times) for name, times in seconds.items()}


def payload_bytes(writer: JokeWriter, explainer: Explainer, mode: str) -> dict[str, Any]:
    """Bytes of each JSON answer for a joke that fills the context."""
    block = writer.config.block_size
    sent, joke = joke_of_length(writer, block, min(32, block // 4))
    last = len(written(joke)) - 1
    nearest = Originality.unknown("Originality check: still indexing the training jokes.")
    generate = api.joke_json(writer.tokenizer, joke, nearest)
    answers = {
        "generate": generate,
        "lens": api.lens_json(writer, explainer, *sent, step=last),
        "knockout": api.knockout_json(
            writer, explainer, *sent, step=last, heads=[list(h) for h in HEADS], mode=mode
        ),
        "importance": api.importance_json(writer, explainer, *sent, step=last, mode=mode),
        "flow": api.flow_json(writer, explainer, *sent, step=last, threshold=FLOW_THRESHOLD),
        "attribution": api.attribution_json(writer, explainer, *sent, step=last, integrated=True),
        "branch": api.branch_json(
            writer, explainer, *sent, step=0, token_id=other_token(writer, joke)
        ),
    }
    sizes = {name: len(json.dumps(answer).encode()) for name, answer in answers.items()}
    return {
        "joke_tokens": len(joke.generation.token_ids),
        "bytes": sizes,
        "generate_attention_bytes": len(json.dumps(generate["attention"]).encode()),
        "generate_compact_bytes": len(json.dumps(generate, separators=(",", ":")).encode()),
        "page_bytes": page_bytes(writer, explainer, sent),
        "goal_bytes": GOAL_BYTES,
    }


def page_bytes(writer: JokeWriter, explainer: Explainer, sent: tuple) -> int:
    """Bytes of HTML the page receives when a joke that fills the context is finished: the
    last update of the "Tell me a joke" event (card, tokens, and every view of the last token:
    the card, the attention grid and matrix, the lens, the knockout grid). The visitor's Joke
    stays on the server (gr.State)."""
    from ui.layout import create_demo  # only here: the rest of the benchmark needs no Gradio

    demo = create_demo(writer, OriginalityCheck({}), explainer, "http://127.0.0.1:7860/")
    tell = next(fn.fn for fn in demo.fns.values() if fn.name == "tell_joke")
    prompt, t, k, p, n, seed, clean = sent
    request = SimpleNamespace(headers={})
    *_, last = tell(prompt, t, k, p, n, seed, False, clean, 0, 0, [], ZERO, request)
    return sum(len(value.encode()) for value in last.values() if isinstance(value, str))


def run(folder: Path, quick: bool) -> dict[str, Any]:
    """Every measurement on the model in `folder`; quick: 4 rounds instead of 15."""
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine(),
        "checkpoint": str(folder),
    }
    writer = JokeWriter(folder)
    explainer = Explainer(writer)
    start = time.perf_counter()
    writer.warm_up()
    explainer.warm_up()
    results["warm_up_s"] = time.perf_counter() - start
    mode = MEAN if MEAN in explainer.modes else ZERO
    block = writer.config.block_size
    results |= {"mode": mode, "heads": HEADS, "rounds": 4 if quick else 15, "lengths": {}}
    with counting_compilations() as compiled:
        for padded in (n for n in prefill_lengths(block) if n >= 16):
            target = padded - max(4, padded // 16)  # 12, 28, 60, 120 tokens for 16 ... 128
            _, joke = joke_of_length(writer, target, min(16, target // 3))
            timed = time_analyses(writer, explainer, joke, mode, results["rounds"])
            tokens = len(joke.generation.token_ids)
            results["lengths"][str(padded)] = {
                "tokens": tokens,
                "written": len(written(joke)),
            } | timed
            medians = ", ".join(f"{n} {timed[n]['median_ms']:.1f}" for n in SINGLE_STEP)
            print(f"{tokens} tokens (padded to {padded}): {medians} ms", flush=True)
        results["payload"] = payload_bytes(writer, explainer, mode)
    results["recompilations"] = len(compiled)
    results["recompiled"] = sorted(set(compiled))
    worst = {
        name: max(row[name]["median_ms"] for row in results["lengths"].values())
        for name in SINGLE_STEP + REPORTED
    }
    results |= {"worst_median_ms": worst, "goal_ms": GOAL_MS}
    results["missed_goal"] = [name for name in SINGLE_STEP if worst[name] > GOAL_MS[name]]
    results["within_goal"] = not results["missed_goal"]
    return results


def table(results: dict[str, Any]) -> str:
    """The figures as Markdown: one row per length, then the goals."""
    names = SINGLE_STEP + REPORTED
    lines = [
        "| tokens (padded) | " + " | ".join(f"{n} ms median / p90" for n in names) + " |",
        "| --- |" + " ---: |" * len(names),
    ]
    for padded, row in results["lengths"].items():
        cells = [f"{row[n]['median_ms']:.1f} / {row[n]['p90_ms']:.1f}" for n in names]
        lines.append(f"| {row['tokens']} ({padded}) | " + " | ".join(cells) + " |")
    worst = results["worst_median_ms"]
    verdict = "met" if results["within_goal"] else "MISSED by " + ", ".join(results["missed_goal"])
    single = ", ".join(f"{n} {worst[n]:.1f} (goal {GOAL_MS[n]:.0f})" for n in SINGLE_STEP)
    payload = results["payload"]
    sizes = ", ".join(f"{name} {size / 1000:,.1f} kB" for name, size in payload["bytes"].items())
    page_ok = "met" if payload["page_bytes"] <= GOAL_BYTES else "MISSED"
    return "\n".join(
        [
            *lines,
            "",
            f"worst median of the single-step analyses (ms): {single}: {verdict}",
            f"recompilations after warm-up: {results['recompilations']}"
            + (f" ({', '.join(results['recompiled'])})" if results["recompiled"] else ""),
            f"JSON answers for a {payload['joke_tokens']}-token joke: {sizes}"
            f" (attention {payload['generate_attention_bytes'] / 1000:,.1f} kB of /generate's)",
            f"HTML the page receives for that joke: {payload['page_bytes'] / 1000:,.1f} kB;"
            f" goal <= {GOAL_BYTES / 1e6:.0f} MB: {page_ok}",
            f"mode {results['mode']}, heads {results['heads']}, {results['rounds']} rounds,"
            f" load average {results['machine']['load_average_1min']:.2f}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    reuse_freed_memory()  # before JAX's first computation starts its threads
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.explainer_speed",
        description=__doc__.split("\n")[0],
        epilog="The module docstring (benchmarks/explainer_speed.py) says what is measured.",
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=SHIPPED, help="model folder (default: %(default)s)"
    )
    parser.add_argument("--quick", action="store_true", help="4 rounds instead of 15")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="where to write (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    results = run(args.checkpoint, args.quick)
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
