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
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
READY = "Punchline: model loaded and compiled"  # printed by app.py once its warm-up is done


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
    """Run `python app.py` on `checkpoint`; return once its page answers.

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
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return AppServer(url, process, log, time.perf_counter() - started)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server = AppServer(url, process, log, time.perf_counter() - started)
    server.stop()
    raise RuntimeError(f"app.py did not start; its output:\n{log.read_text()[-3000:]}")
