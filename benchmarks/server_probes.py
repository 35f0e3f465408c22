"""Measuring a running app from outside: its memory, its compilations, and requests with
their outcomes (served, refused as busy, failed), as benchmarks/load.py and tests use them."""

from __future__ import annotations

import math
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gradio_client import Client
from gradio_client.client import Job
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError, StatusUpdate

from benchmarks.app_server import EXPLAINER_READY, READY, AppServer

ROOT = Path(__file__).resolve().parents[1]
COMPILED = "Finished XLA compilation of"  # one line per compilation with jax_log_compiles on
REQUEST_TIMEOUT = 300.0  # seconds one request may take, waiting in a full queue included
PROMPTS = [
    "",
    "Why did the chicken",
    "Knock knock.",
    "A man walks into a bar",
    "What do you call a",
    "My doctor told me",
    "🐔 过马路 😂",
    "I told my computer a joke about UDP, " * 12,  # long: trimmed to fit the context
]
# Fills any context (the app trims it from the left), so that a joke takes as long as any can.
LONG_PROMPT = "Why did the chicken cross the road? To get to the other side. " * 15  # 930 chars


# ---------------------------------------------------------------- the server's state


def memory_mb(pid: int) -> dict[str, float]:
    """The process's resident memory now (VmRSS) and at its peak so far (VmHWM), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
    return {"rss_mb": int(fields["VmRSS"]) / 1024, "hwm_mb": int(fields["VmHWM"]) / 1024}


class MemoryWatch:
    """Samples the server's resident memory in the background; `peak_mb` is the highest seen."""

    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.every = pid, every
        self.peak_mb = memory_mb(pid)["rss_mb"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak_mb = max(self.peak_mb, memory_mb(self.pid)["rss_mb"])

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, memory_mb(self.pid)["rss_mb"])


def compilations(server: AppServer) -> int | None:
    """JAX compilations the server logged after its own warm-up (None before it was ready):
    after both the writer and, in the background, the explainer were compiled."""
    text = server.log.read_text(errors="replace")
    if READY not in text or EXPLAINER_READY not in text:
        return None
    return text[max(text.find(READY), text.find(EXPLAINER_READY)) :].count(COMPILED)


# ---------------------------------------------------------------- requests


@dataclass
class Outcome:
    kind: str  # "joke", "no clean joke" (an answer too), "busy" (refused: queue full), "error"
    seconds: float  # from sending the request to its answer
    detail: str = ""
    waited: float = 0.0  # from the first try, when earlier tries were refused as busy


def random_request(rng: random.Random, block_size: int) -> dict[str, Any]:
    """Mixed prompts and settings, as different visitors and programs send them."""
    return {
        "prompt": rng.choice(PROMPTS),
        "temperature": rng.choice([0.0, 0.7, 0.8, 1.0, 1.3]),
        "top_k": rng.choice([0, 20, 50]),
        "top_p": rng.choice([0.8, 0.95, 1.0]),
        "max_new_tokens": rng.choice([16, 48, 96, block_size]) if block_size > 96 else block_size,
        "seed": rng.randrange(1_000_000),
        "clean": rng.random() < 0.8,
    }


def follow(job: Job, timeout: float) -> list[StatusUpdate]:
    """Watch a job's status updates (its place in the queue, then processing) until it is done,
    as a streaming client shows them.

    Not `for output in job`: gradio_client's iterator waits, in a loop that never sleeps more
    than a millisecond, for a FINISHED status that a job refused as busy never gets.
    """
    updates: list[StatusUpdate] = []
    deadline = time.monotonic() + timeout
    while not job.done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer in {timeout:.0f} s")
        update = job.status()
        if not updates or update.code != updates[-1].code or update.rank != updates[-1].rank:
            updates.append(update)
        time.sleep(0.05)
    return updates


def ask(client: Client, request: dict[str, Any], stream: bool) -> Outcome:
    """One request, sent with submit; `stream` follows the job's status updates meanwhile."""
    started = time.perf_counter()
    try:
        job = client.submit(**request, api_name="/generate")
        if stream:
            follow(job, REQUEST_TIMEOUT)
        answer = job.result(timeout=REQUEST_TIMEOUT)
    except QueueError as error:
        return Outcome("busy", time.perf_counter() - started, str(error))
    except AppError as error:
        kind = "no clean joke" if "Could not find a clean joke" in str(error) else "error"
        return Outcome(kind, time.perf_counter() - started, str(error))
    except Exception as error:  # a benchmark counts every failure rather than stopping
        return Outcome("error", time.perf_counter() - started, f"{type(error).__name__}: {error}")
    seconds = time.perf_counter() - started
    if not (isinstance(answer, dict) and isinstance(answer.get("text"), str)):
        return Outcome("error", seconds, f"not a joke: {str(answer)[:200]}")
    return Outcome("joke", seconds)


def ask_until_served(
    client: Client, request: dict[str, Any], stream: bool, deadline: float
) -> list[Outcome]:
    """Ask; when told the app is busy, wait a moment and ask again, as its message says to.

    Gives up at `deadline` (time.monotonic()). The last outcome records the whole wait.
    """
    first = time.monotonic()
    outcomes = [ask(client, request, stream)]
    while outcomes[-1].kind == "busy" and time.monotonic() < deadline:
        time.sleep(random.uniform(0.5, 2.0))
        outcomes.append(ask(client, request, stream))
    outcomes[-1].waited = time.monotonic() - first
    return outcomes


def wait_until_indexed(client: Client, timeout: float) -> float:
    """Seconds until the server's originality index is ready (or known to be unavailable).

    It is built in the background at start and takes memory and CPU meanwhile: measuring
    before it is done would charge it to the jokes.
    """
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        answer = client.predict(max_new_tokens=1, clean=False, api_name="/generate")
        if "still indexing" not in (answer["nearest"]["note"] or ""):
            break
        time.sleep(1.0)
    return time.perf_counter() - started


def percentiles(values: list[float]) -> list[float]:
    return [float(v) for v in np.percentile(values, [50, 95, 99])] if values else [math.nan] * 3


def summary(outcomes: list[Outcome], seconds: float) -> dict[str, Any]:
    """Counts by kind, latency percentiles of the answered requests, answers per second."""
    answered = [o.seconds for o in outcomes if o.kind in ("joke", "no clean joke")]
    latency = percentiles(answered)
    errors = [o.detail for o in outcomes if o.kind == "error"]
    return {
        "requests": len(outcomes),
        "jokes": sum(o.kind == "joke" for o in outcomes),
        "no_clean_joke": sum(o.kind == "no clean joke" for o in outcomes),
        "busy": sum(o.kind == "busy" for o in outcomes),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "p50_s": latency[0],
        "p95_s": latency[1],
        "p99_s": latency[2],
        "wall_s": seconds,
        "jokes_per_s": len(answered) / seconds if seconds else float("nan"),
    }
