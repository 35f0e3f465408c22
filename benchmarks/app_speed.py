"""The app's start, as benchmarks/speed.py reports it: seconds from `python app.py` to a page
that answers and to the explainer compiled in the background (with an empty compilation cache,
then a restart that finds it full), the warm-ups app.py reports, and one joke by API."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from gradio_client import Client

from benchmarks.app_server import start_app


def app_start(checkpoint: Path, env: dict[str, str], joke_tokens: int | None) -> dict[str, Any]:
    """One cold start of the app: seconds to an answering server, and optionally one joke."""
    server = start_app(checkpoint, env=env | {"PUNCHLINE_LOG_COMPILES": "0"}, timeout=300)
    try:
        result: dict[str, Any] = {"ready_s": server.seconds_to_ready}
        result["explainer_ready_s"] = server.seconds_to_explainer
        if joke_tokens:
            client = Client(server.url, verbose=False)
            start = time.perf_counter()
            answer = client.predict(
                prompt="", max_new_tokens=joke_tokens, seed=0, api_name="/generate"
            )
            result |= {"joke_s": time.perf_counter() - start, "tokens": len(answer["token_ids"])}
    finally:
        server.stop()
    log = server.log.read_text()
    # app.py prints how long loading and compiling the writer took, before the server starts,
    # and how long the explainer's background compilation took.
    result["warmup_s"] = _reported_seconds(log, "model loaded and compiled in")
    result["explainer_warmup_s"] = _reported_seconds(log, "explainer compiled in")
    return result


def _reported_seconds(log: str, words: str) -> float | None:
    """The seconds app.py printed after `words` ("... in 6.2 s"), None if it did not."""
    lines = [line for line in log.splitlines() if words in line]
    return float(lines[0].split(" in ")[-1].split()[0]) if lines else None


def benchmark_app(checkpoint: Path, joke_tokens: int) -> dict[str, Any]:
    """The app's first start (an empty compilation cache) with one joke by API, then a
    restart that finds every compiled program in the cache, as app.py keeps them."""
    with tempfile.TemporaryDirectory() as cache:
        env = {"JAX_COMPILATION_CACHE_DIR": cache}
        first = app_start(checkpoint, env, joke_tokens)
        cached = app_start(checkpoint, env, None)
    return {
        "app_ready_s": first["ready_s"],
        "app_warmup_s": first["warmup_s"],
        "app_explainer_ready_s": first["explainer_ready_s"],
        "app_explainer_warmup_s": first["explainer_warmup_s"],
        "app_joke_s": first["joke_s"],
        "app_joke_tokens": first["tokens"],
        "app_ready_cached_s": cached["ready_s"],
        "app_warmup_cached_s": cached["warmup_s"],
        "app_explainer_ready_cached_s": cached["explainer_ready_s"],
    }
