"""Load, overload and soak benchmarks of the web app, driven through its API as programs use it.

    python -m benchmarks.load                     # 50 clients x 10 jokes, checkpoints/punchline
    python -m benchmarks.load --mode overload     # more requests at once than the queue holds
    python -m benchmarks.load --mode soak         # 1,000 jokes in a row: memory, recompilations
    python -m benchmarks.load --mode all --quick  # every mode, short (a minute or two)

It starts `python app.py` as a user does (PUNCHLINE_CHECKPOINT, GRADIO_SERVER_PORT on a free
port of 127.0.0.1, PUNCHLINE_LOG_COMPILES=1 so that the server logs each JAX compilation) and
talks to it with gradio_client over loopback only; tests/test_load.py passes a running server
instead. Every wait is bounded, so a stuck server fails the run rather than hanging it. The
server's memory is read from /proc/<pid>/status: VmRSS now, VmHWM the peak since it started.

It prints a table and writes JSON (--json, default benchmarks/results/load-<mode>.json), and
exits with status 1 when a check fails (an error, a compilation after the app's warm-up,
memory growing by 10% or more in the soak, a refusal that waited in the queue or did not say
to try again).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from gradio_client import Client
from gradio_client.client import Job
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError, StatusUpdate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
APP_READY = "Punchline: model loaded and compiled"  # printed by app.py once its warm-up is done
COMPILED = "Finished XLA compilation of"  # one line per compilation with jax_log_compiles on
# app.QUEUE_SIZE; not imported, because importing app.py would load JAX and Gradio in here too.
QUEUE_SIZE = 32
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


# ---------------------------------------------------------------- the server


@dataclass
class Server:
    url: str
    pid: int
    log: Path | None  # the server's output, JAX's compilation log included, when we have it
    process: subprocess.Popen | None = None  # set when this module started it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(checkpoint: Path, timeout: float = 600.0) -> Server:
    """Run `python app.py` on a free loopback port, as users do; return once it answers."""
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="punchline-load-")) / "app.log"
    env = {**os.environ, "PUNCHLINE_CHECKPOINT": str(checkpoint), "GRADIO_SERVER_PORT": str(port)}
    env |= {"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env |= {"PUNCHLINE_LOG_COMPILES": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    server = Server(f"http://127.0.0.1:{port}/", process.pid, log, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(server.url, timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_app(server)
    raise RuntimeError(f"app.py did not start; its output:\n{log.read_text()[-3000:]}")


def stop_app(server: Server) -> None:
    if server.process is not None and server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()


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


def compilations(server: Server) -> int | None:
    """JAX compilations the server logged after its own warm-up (None without a log)."""
    if server.log is None:
        return None
    text = server.log.read_text(errors="replace")
    ready = text.find(APP_READY)
    return None if ready < 0 else text[ready:].count(COMPILED)


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


# ---------------------------------------------------------------- the three modes


@dataclass
class Report:
    mode: str
    figures: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(self.checks.values())


def warm_up(server: Server, block_size: int, index_timeout: float) -> tuple[Client, float]:
    """A client, once the server's index is built and a few jokes have gone through; and the
    seconds spent waiting for the index."""
    client = Client(server.url, verbose=False)
    waited = wait_until_indexed(client, index_timeout)
    rng = random.Random(0)
    for _ in range(3):
        client.predict(**random_request(rng, block_size), api_name="/generate")
    return client, waited


def run_load(
    server: Server, clients: int = 50, jokes: int = 10, block_size: int = 128,
    deadline_s: float = 1800.0, index_timeout: float = 300.0,
) -> Report:  # fmt: skip
    """`clients` programs at once, each asking for `jokes` jokes one after another.

    A third of them follow their jobs' status updates (the streaming way). More clients than
    the queue holds get "busy" answers; such a client waits a moment and asks again, until
    `deadline_s` has passed.
    """
    _, index_wait = warm_up(server, block_size, index_timeout)
    compiled_before = compilations(server)
    before = memory_mb(server.pid)
    connected = [Client(server.url, verbose=False) for _ in range(clients)]
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline = time.monotonic() + deadline_s

    def visitor(index: int) -> None:
        rng = random.Random(1000 + index)
        stream = index % 3 == 0
        start.wait()
        for _ in range(jokes):
            request = random_request(rng, block_size)
            result = ask_until_served(connected[index], request, stream, deadline)
            with lock:
                outcomes.extend(result)

    threads = [threading.Thread(target=visitor, args=(i,), daemon=True) for i in range(clients)]
    with MemoryWatch(server.pid) as watch:
        for thread in threads:
            thread.start()
        start.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()) + REQUEST_TIMEOUT)
        seconds = time.perf_counter() - started
    stuck = sum(thread.is_alive() for thread in threads)
    after = memory_mb(server.pid)
    compiled = _difference(compilations(server), compiled_before)
    with lock:  # a stuck client could still be adding
        outcomes = list(outcomes)
    waits = percentiles([o.waited for o in outcomes if o.kind in ("joke", "no clean joke")])
    figures = summary(outcomes, seconds) | {
        "clients": clients,
        "jokes_per_client": jokes,
        "p50_with_busy_retries_s": waits[0],
        "p95_with_busy_retries_s": waits[1],
        "p99_with_busy_retries_s": waits[2],
        "clients_unfinished_at_deadline": stuck,
        "index_wait_s": index_wait,
        "rss_before_mb": before["rss_mb"],
        "rss_after_mb": after["rss_mb"],
        "rss_peak_mb": watch.peak_mb,
        "hwm_mb": after["hwm_mb"],
        "compilations_during_run": compiled,
        "compilations_after_app_warm_up": compilations(server),
    }
    served = figures["jokes"] + figures["no_clean_joke"]
    checks = {
        "no errors": figures["errors"] == 0,
        "every joke answered": served == clients * jokes and stuck == 0,
        "no compilation after the app's warm-up": not figures["compilations_after_app_warm_up"],
    }
    return Report("load", figures, checks)


def run_overload(
    server: Server, extra: int = 16, rounds: int = 5, block_size: int = 128,
    index_timeout: float = 300.0,
) -> Report:  # fmt: skip
    """More requests at once than the queue holds: the surplus must be refused at once.

    Each round sends QUEUE_SIZE + 1 + `extra` long jokes at the same moment (one is written,
    QUEUE_SIZE wait, the rest are refused), and once the first refusal is in, hand-made HTTP
    requests until one is refused. Every refusal must come before the round's jokes are all
    written (it did not wait in the queue) and say to try again; every accepted joke must be
    answered, and the server must answer normally afterwards.
    """
    warm, _ = warm_up(server, block_size, index_timeout)
    before = memory_mb(server.pid)
    count = QUEUE_SIZE + 1 + extra
    long_joke = {"prompt": LONG_PROMPT, "max_new_tokens": block_size, "clean": False}
    connected = [Client(server.url, verbose=False) for _ in range(count)]
    outcomes: list[Outcome] = []
    raw_answers: list[dict[str, Any]] = []
    after_rounds: list[float] = []  # resident memory after each round: flat if bounded
    with MemoryWatch(server.pid) as watch:
        started = time.perf_counter()
        for round_ in range(rounds):
            batch: list[Outcome | None] = [None] * count
            go = threading.Barrier(count)

            def one(index: int, batch: list[Outcome | None] = batch, go=go, round_=round_) -> None:
                go.wait()
                request = long_joke | {"seed": 100 * round_ + index, "temperature": 1.0}
                batch[index] = ask(connected[index], request, stream=False)

            threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
            for thread in threads:
                thread.start()
            raw_answers.append(_raw_while_full(server.url, batch, long_joke, block_size))
            for thread in threads:
                thread.join(timeout=REQUEST_TIMEOUT)
            outcomes += [o or Outcome("error", REQUEST_TIMEOUT, "no answer") for o in batch]
            after_rounds.append(memory_mb(server.pid)["rss_mb"])
        seconds = time.perf_counter() - started
    still = ask(warm, {"prompt": "Still there?", "max_new_tokens": 8, "seed": 1}, stream=False)
    after = memory_mb(server.pid)
    busy = [o for o in outcomes if o.kind == "busy"]
    answered = [o.seconds for o in outcomes if o.kind == "joke"]
    figures = summary(outcomes, seconds) | {
        "rounds": rounds,
        "requests_per_round": count,
        "queue_size": QUEUE_SIZE,
        "refusal_max_s": max((o.seconds for o in busy), default=math.nan),
        "slowest_answer_s": max(answered, default=math.nan),
        "refusal_messages": sorted({o.detail for o in busy}),
        "raw_http_while_full": raw_answers,
        "answered_afterwards": still.kind == "joke",
        "rss_before_mb": before["rss_mb"],
        "rss_after_mb": after["rss_mb"],
        "rss_after_each_round_mb": after_rounds,
        "rss_peak_mb": watch.peak_mb,
        "hwm_mb": after["hwm_mb"],
    }
    checks = {
        "no errors": figures["errors"] == 0,
        "the surplus is refused": figures["busy"] >= rounds,
        # Refused without waiting in the queue: before the jokes of the round were all written.
        "refused before the queue drained": figures["refusal_max_s"] < figures["slowest_answer_s"],
        "raw HTTP refused before the queue drained": all(
            a.get("seconds", math.inf) < figures["slowest_answer_s"] for a in raw_answers
        ),
        "refusal says busy, try again": all("try again" in o.detail.lower() for o in busy),
        "raw HTTP gets 503": all(a["status"] == 503 for a in raw_answers),
        "raw HTTP says the queue is full": all(
            "Queue is full" in str(a["body"]) for a in raw_answers
        ),
        "answers afterwards": figures["answered_afterwards"],
        # Memory grows while full queues come and go, then levels off (8 rounds with the shipped
        # model: 926, 986, 1003, 1008, 1019, 1014, 1017, 1014 MiB): the last round within 5%
        # of the middle one.
        "memory levels off": after_rounds[-1] < 1.05 * after_rounds[len(after_rounds) // 2],
    }
    return Report("overload", figures, checks)


def run_soak(
    server: Server, jokes: int = 1000, block_size: int = 128, index_timeout: float = 300.0,
    deadline_s: float = 3600.0,
) -> Report:  # fmt: skip
    """`jokes` jokes in a row through the API: memory after the first tenth and at the end."""
    client, index_wait = warm_up(server, block_size, index_timeout)
    compiled_before = compilations(server)
    rng = random.Random(7)
    outcomes: list[Outcome] = []
    early: dict[str, float] = {}
    started = time.perf_counter()
    for index in range(jokes):
        if time.perf_counter() - started > deadline_s:
            break
        outcomes.append(ask(client, random_request(rng, block_size), stream=index % 3 == 0))
        if index + 1 == max(1, jokes // 10):
            early = memory_mb(server.pid)
    seconds = time.perf_counter() - started
    late = memory_mb(server.pid)
    early = early or late  # stopped by the deadline before the first tenth
    growth = late["rss_mb"] / early["rss_mb"] - 1
    compiled = _difference(compilations(server), compiled_before)
    figures = summary(outcomes, seconds) | {
        "index_wait_s": index_wait,
        "rss_after_first_tenth_mb": early["rss_mb"],
        "first_tenth": max(1, jokes // 10),
        "rss_at_end_mb": late["rss_mb"],
        "rss_growth": growth,
        "hwm_mb": late["hwm_mb"],
        "compilations_during_run": compiled,
        "compilations_after_app_warm_up": compilations(server),
    }
    checks = {
        "no errors": figures["errors"] == 0,
        "every joke answered": len(outcomes) == jokes,
        "memory within 10%": abs(growth) < 0.10,
        "no compilation after the app's warm-up": not figures["compilations_after_app_warm_up"],
    }
    return Report("soak", figures, checks)


def _difference(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


def _raw_while_full(
    url: str, batch: list[Outcome | None], request: dict[str, Any], block_size: int
) -> dict[str, Any]:
    """Once the burst has been refused, POST /gradio_api/call/generate by hand (a program
    without gradio_client), again until refused: a joke ending in between frees one place,
    which the first such request may take. Returns the last answer and how many got in."""
    deadline = time.monotonic() + 30
    while not any(o is not None and o.kind == "busy" for o in batch):
        if time.monotonic() > deadline:
            return {"status": None, "body": "the burst was never refused", "accepted": 0}
        time.sleep(0.01)
    data = [request["prompt"], 1.0, 50, 0.95, block_size, 1, False]
    accepted = 0
    while True:
        started = time.perf_counter()
        response = httpx.post(f"{url}gradio_api/call/generate", json={"data": data}, timeout=30)
        seconds = time.perf_counter() - started
        if response.status_code != 200 or accepted == 4:
            break
        accepted += 1
    try:
        body = response.json()
    except ValueError:
        body = response.text[:200]
    return {"status": response.status_code, "seconds": seconds, "body": body, "accepted": accepted}


# ---------------------------------------------------------------- the command line


def print_report(report: Report) -> None:
    print(f"\n{report.mode}")
    width = max(len(name) for name in report.figures)
    for name, value in report.figures.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else json.dumps(value, default=str)
        print(f"  {name:<{width}}  {shown}")
    for name, ok in report.checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--mode", choices=["load", "overload", "soak", "all"], default="load")
    parser.add_argument(
        "--quick", action="store_true", help="10 clients x 3 jokes, 2 overload rounds, 100 jokes"
    )
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "punchline")
    parser.add_argument("--clients", type=int, help="concurrent clients (default 50, quick 10)")
    parser.add_argument("--jokes", type=int, help="jokes per client (default 10, quick 3)")
    parser.add_argument("--soak-jokes", type=int, help="jokes in a row (default 1000, quick 100)")
    parser.add_argument("--json", type=Path, help="where to write the figures")
    args = parser.parse_args(argv)
    quick = args.quick
    clients = args.clients or (10 if quick else 50)
    jokes = args.jokes or (3 if quick else 10)
    soak_jokes = args.soak_jokes or (100 if quick else 1000)
    block = json.loads((args.checkpoint / "config.json").read_text())["block_size"]
    runs: dict[str, Callable[[Server], Report]] = {
        "load": lambda server: run_load(server, clients, jokes, block),
        "overload": lambda server: run_overload(
            server, 8 if quick else 16, 2 if quick else 5, block
        ),
        "soak": lambda server: run_soak(server, soak_jokes, block),
    }
    modes = list(runs) if args.mode == "all" else [args.mode]
    load_before = os.getloadavg()
    started = time.perf_counter()
    server = start_app(args.checkpoint)
    print(f"app.py answered after {time.perf_counter() - started:.1f} s (pid {server.pid})")
    reports = []
    try:
        for mode in modes:
            reports.append(runs[mode](server))
            print_report(reports[-1])
    finally:
        stop_app(server)
    path = args.json or RESULTS / f"load-{args.mode}{'-quick' * quick}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": shlex.join(["python", "-m", "benchmarks.load", *(argv or sys.argv[1:])]),
        "checkpoint": str(args.checkpoint),
        "cpu_count": os.cpu_count(),
        # Other work on the machine slows the server: the 1-minute load average, before and after.
        "load_average": [load_before[0], os.getloadavg()[0]],
        "server_log": str(server.log),
        "reports": [asdict(report) | {"passed": report.passed} for report in reports],
    }
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
    return 0 if all(report.passed for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
