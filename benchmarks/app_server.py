"""Start `python app.py` as a user does, on a free loopback port: the one launcher that the
tests and the benchmarks share.

The server's output (JAX's compilation log included, PUNCHLINE_LOG_COMPILES=1) goes to a
log file, so a caller can count compilations or look for tracebacks.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx

ROOT = Path(__file__).resolve().parents[1]
READY = "Punchline: model loaded and compiled"  # printed by app.py once the writer is compiled
# printed once the explainer's analyses, compiled in the background, are too: the end of warm-up
EXPLAINER_READY = "Punchline: explainer compiled"


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    url: str
    process: subprocess.Popen
    log: Path  # everything the server printed
    seconds_to_ready: float  # from the start of the process to the first page served
    seconds_to_explainer: float | None = None  # ... to the explainer compiled

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_app(
    checkpoint: Path,
    *,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    timeout: float = 600.0,
) -> AppServer:
    """Run `python app.py` on `checkpoint`; return once its page answers and its explainer,
    compiled in the background, is ready too: a warm server.

    `env` adds to (or overrides) the environment, e.g. JAX_COMPILATION_CACHE_DIR. Raises
    RuntimeError with the end of the server's output if it exits or does not answer in time.
    """
    port = free_port()
    log = log or Path(tempfile.mkdtemp(prefix="punchline-app-")) / "app.log"
    environment = {**os.environ, "PUNCHLINE_CHECKPOINT": str(checkpoint)}
    environment |= {"GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    environment |= {"GRADIO_ANALYTICS_ENABLED": "False", "PUNCHLINE_LOG_COMPILES": "1"}
    environment |= {"PYTHONUNBUFFERED": "1", **(env or {})}
    started = time.perf_counter()
    with log.open("w") as output:  # the server keeps its own copy of the file handle
        process = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    if not _wait_until(lambda: _answers(url), process, deadline):
        _fail(AppServer(url, process, log, time.perf_counter() - started))
    server = AppServer(url, process, log, time.perf_counter() - started)
    if not _wait_until(lambda: EXPLAINER_READY in _text(log), process, deadline):
        _fail(server)
    server.seconds_to_explainer = time.perf_counter() - started
    return server


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen, deadline: float) -> bool:
    """Poll `ready` until it holds (True), the process exits or the deadline passes (False)."""
    while time.monotonic() < deadline and process.poll() is None:
        if ready():
            return True
        time.sleep(0.1)
    return False


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _text(log: Path) -> str:
    return log.read_text(errors="replace")


def _fail(server: AppServer) -> NoReturn:
    server.stop()
    raise RuntimeError(f"app.py did not start; its output:\n{_text(server.log)[-3000:]}")
