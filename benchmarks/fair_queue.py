"""Fair queueing under load: ten ordinary visitors, alone and beside one greedy script.

    python -m benchmarks.fair_queue                      # checkpoints/punchline, a few minutes
    python -m benchmarks.fair_queue --jokes 3 --rounds 1  # shorter

It starts `python app.py` (benchmarks/app_server.py) and runs, `rounds` times each, in turn:

- alone: ten ordinary clients, each asking for `jokes` jokes one after another (mixed prompts
  and settings, the same in every round);
- beside a greedy client: the same, while one script with one session (one
  gradio_client.Client) asks from 40 threads for the longest joke it can, for as long as
  the round lasts, asking again 0.2 s after each refusal.

Every client sends X-Forwarded-For with an address of its own, as visitors on different
machines behind a proxy do (the app trusts it from loopback: ui/fair_queue.py). An ordinary
client's wait is from sending a request to its answer, refusals and retries included. The
goal (ui/fair_queue.py): beside the greedy client, the ordinary clients' p95 wait stays within
twice what it is without it. Before fair queueing, such a script filled the queue and an
ordinary visitor got 2 jokes out of 10.

Prints a table and writes JSON (--json, default benchmarks/results/fair_queue.json); exits
with status 1 if the goal is missed or an ordinary request failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import statistics
import sys
import threading
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError

from benchmarks.app_server import AppServer, start_app
from benchmarks.server_probes import LONG_PROMPT, percentiles, random_request, wait_until_indexed

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
ORDINARY_CLIENTS = 10
GREEDY_THREADS = 40
RETRY_S = 0.2  # how soon a refused client asks again
REQUEST_TIMEOUT = 300.0


def refused(error: Exception) -> bool:
    """A refusal (the queue is full, or the client's share is), not a failure."""
    status = isinstance(error, httpx.HTTPStatusError) and error.response.status_code == 429
    return status or isinstance(error, QueueError)


def visitor(url: str, index: int, jokes: int, block_size: int) -> dict[str, Any]:
    """One ordinary client: `jokes` jokes one after another; each wait, and its refusals."""
    client = Client(url, verbose=False, headers={"X-Forwarded-For": f"198.51.100.{index + 1}"})
    rng = random.Random(index)
    waits: list[float] = []
    refusals, errors = 0, []
    for _ in range(jokes):
        request = random_request(rng, block_size)
        started = time.perf_counter()
        while True:
            try:
                client.predict(**request, api_name="/generate")
                break
            except AppError as error:  # "no clean joke" is an answer too
                if "Could not find a clean joke" in str(error):
                    break
                errors.append(str(error))
                break
            except Exception as error:  # a benchmark counts every failure rather than stopping
                if not refused(error):
                    errors.append(f"{type(error).__name__}: {error}")
                    break
                refusals += 1
                time.sleep(RETRY_S)
        waits.append(time.perf_counter() - started)
    client.close()
    return {"waits": waits, "refused": refusals, "errors": errors}


class Greedy:
    """One session asking from many threads at once, until stopped: each thread joins the
    queue (/gradio_api/queue/join, as the page and gradio_client do) and waits for its joke,
    or asks again RETRY_S after a refusal. Raw HTTP on kept-alive connections, with one data
    stream for the session, so that the script itself costs the shared CPU little."""

    def __init__(self, url: str, block_size: int, threads: int = GREEDY_THREADS) -> None:
        self.url, self.session = url, f"greedy{random.randrange(10**9)}"
        config = httpx.get(f"{url}config", timeout=30).json()
        fn_index = next(d["id"] for d in config["dependencies"] if d["api_name"] == "generate")
        data = [LONG_PROMPT, 1.0, 50, 0.95, block_size, -1, False]
        self.body = {"data": data, "fn_index": fn_index, "session_hash": self.session}
        self.headers = {"X-Forwarded-For": "203.0.113.9"}
        self.served = self.refused = self.failed = 0
        self.done: dict[str, threading.Event] = {}  # event id -> set once its joke is written
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.ask, daemon=True) for _ in range(threads)]
        self.threads.append(threading.Thread(target=self.read, daemon=True))

    def finished(self, event_id: str) -> threading.Event:
        with self.lock:
            event = self.done.setdefault(event_id, threading.Event())
            if self.stop.is_set():  # joined after __exit__: nobody reads its stream any more
                event.set()
            return event

    def ask(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as http:
            while not self.stop.is_set():
                posted = http.post("gradio_api/queue/join", json=self.body)
                if posted.status_code == 200:
                    self.finished(posted.json()["event_id"]).wait(REQUEST_TIMEOUT)
                    outcome = "served"
                else:
                    outcome = "refused" if posted.status_code in (429, 503) else "failed"
                with self.lock:
                    setattr(self, outcome, getattr(self, outcome) + 1)
                if outcome != "served":
                    self.stop.wait(RETRY_S)

    def read(self) -> None:
        """The session's data stream: which of its jokes are written."""
        params = {"session_hash": self.session}
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=None) as http:
            while not self.stop.is_set():
                try:
                    with http.stream("GET", "gradio_api/queue/data", params=params) as stream:
                        for line in stream.iter_lines():
                            message = json.loads(line[5:]) if line.startswith("data:") else {}
                            if message.get("msg") == "process_completed":
                                self.finished(message["event_id"]).set()
                            if self.stop.is_set():
                                return
                except httpx.HTTPError:  # the server stopped while the stream was open
                    return
                self.stop.wait(RETRY_S)  # the stream ends when nothing is pending

    def __enter__(self) -> Greedy:
        for thread in self.threads:
            thread.start()
        time.sleep(2.0)  # its requests fill its share before the visitors come
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        with self.lock:
            for event in self.done.values():
                event.set()
        for thread in self.threads[:-1]:
            thread.join(timeout=REQUEST_TIMEOUT)


def run_round(server: AppServer, jokes: int, block_size: int, greedy: bool) -> dict[str, Any]:
    """The ten visitors at once, alone or beside a greedy client."""
    results: list[dict[str, Any]] = [{}] * ORDINARY_CLIENTS

    def one(index: int) -> None:
        results[index] = visitor(server.url, index, jokes, block_size)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(ORDINARY_CLIENTS)]
    started = time.perf_counter()
    with Greedy(server.url, block_size) if greedy else nullcontext() as greedy_client:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT * jokes)
    waits = [w for result in results for w in result.get("waits", [])]
    p50, p95, _ = percentiles(waits)
    figures = {
        "greedy": greedy,
        "ordinary_jokes": len(waits),
        "ordinary_p50_s": p50,
        "ordinary_p95_s": p95,
        "ordinary_refused": sum(result.get("refused", 0) for result in results),
        "ordinary_errors": [e for result in results for e in result.get("errors", [])][:5],
        "wall_s": time.perf_counter() - started,
    }
    if greedy_client is not None:
        figures |= {
            "greedy_served": greedy_client.served,
            "greedy_refused": greedy_client.refused,
            "greedy_failed": greedy_client.failed,
        }
    return figures


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    return f"{names[0] if names else platform.processor()}, {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fair_queue", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "punchline")
    parser.add_argument("--jokes", type=int, default=5, help="jokes per ordinary client")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each kind, in turn")
    parser.add_argument("--json", type=Path, default=RESULTS / "fair_queue.json")
    args = parser.parse_args(argv)
    block_size = json.loads((args.checkpoint / "config.json").read_text())["block_size"]
    load_before = os.getloadavg()[0]
    server = start_app(args.checkpoint)
    rounds = []
    try:
        wait_until_indexed(Client(server.url, verbose=False), timeout=300)
        for _ in range(args.rounds):
            for greedy in (False, True):
                rounds.append(run_round(server, args.jokes, block_size, greedy))
                print(json.dumps(rounds[-1]), flush=True)
    finally:
        server.stop()
    alone = [r for r in rounds if not r["greedy"]]
    beside = [r for r in rounds if r["greedy"]]
    p95_alone = statistics.median([r["ordinary_p95_s"] for r in alone])
    p95_beside = statistics.median([r["ordinary_p95_s"] for r in beside])
    ratio = p95_beside / p95_alone
    errors = sum(len(r["ordinary_errors"]) for r in rounds)
    passed = ratio <= 2.0 and errors == 0
    print("\n| round | jokes | p50 wait | p95 wait | ordinary refused | greedy served / refused |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rounds:
        kind = "beside the greedy client" if r["greedy"] else "alone"
        greedy_counts = f"{r['greedy_served']} / {r['greedy_refused']}" if r["greedy"] else "-"
        print(
            f"| {kind} | {r['ordinary_jokes']} | {r['ordinary_p50_s']:.2f} s | "
            f"{r['ordinary_p95_s']:.2f} s | {r['ordinary_refused']} | {greedy_counts} |"
        )
    print(f"\np95 beside / alone (medians over rounds): {ratio:.2f} (goal <= 2): "
          f"{'PASS' if passed else 'FAIL'}")  # fmt: skip
    record = {
        "command": shlex.join(["python", "-m", "benchmarks.fair_queue", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "checkpoint": str(args.checkpoint),
        "ordinary_clients": ORDINARY_CLIENTS,
        "jokes_per_client": args.jokes,
        "greedy_threads": GREEDY_THREADS,
        "load_average": [load_before, os.getloadavg()[0]],
        "median_p50_alone_s": statistics.median([r["ordinary_p50_s"] for r in alone]),
        "median_p50_beside_greedy_s": statistics.median([r["ordinary_p50_s"] for r in beside]),
        "median_p95_alone_s": p95_alone,
        "median_p95_beside_greedy_s": p95_beside,
        "p95_ratio": ratio,
        "goal": "p95 beside the greedy client <= 2 x p95 alone",
        "passed": passed,
        "rounds": rounds,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
