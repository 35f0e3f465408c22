"""Every route the app serves, sent what a hostile program sends.

The routes are listed from the FastAPI app that Gradio builds for the app's page (the same
code app.py runs; the list is printed). Each gets its path parameters filled with bogus,
long, encoded and traversal-shaped values, a 5 MB body, a body that is not JSON, JSON of the
wrong shape, bad session hashes and a small upload; the queue's routes get unknown
endpoints and fn_index values, and the data streams bogus sessions and event ids.

Every answer must be a 4xx or a clean one (a 200 where that is Gradio's protocol, such as an
error event on a data stream); never a 5xx, never a traceback in the server's log. Nothing
sent may be stored: the uploads carry a marker that no file in Gradio's temporary folder may
hold afterwards. The server must answer a normal /generate call at the end.

The number of cases is printed and written to test-artifacts/route-cases.json.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.app_server import AppServer
from serving.explainer import Explainer
from serving.originality import OriginalityCheck
from serving.writer import JokeWriter
from ui.gradio_internals import MAX_BODY_BYTES, NO_FILES, SERVES_NO_FILES, queued, served_routes
from ui.layout import create_demo

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT = ROOT / "test-artifacts" / "route-cases.json"
pytestmark = pytest.mark.slow  # uses the shared server

MARKER = f"punchline-route-test-{uuid.uuid4().hex}".encode()  # starts every byte we upload
BIG = MARKER + b"x" * (5_000_000 - len(MARKER))  # a 5 MB body
PATH_FILLS = ["bogus", "0", "x" * 3000, "..%2F..%2F..%2Fetc%2Fpasswd", "%00%FF%F0%9F%98%80"]
BAD_SESSIONS = ["", "x" * 5000, "../../etc/passwd", "a b", 5, ["list"], {"x": 1}]
JSON = {"content-type": "application/json"}


@dataclass
class Case:
    route: str  # "METHOD /path" as the app lists it
    name: str
    method: str
    path: str  # the filled path, without the leading slash
    request: dict[str, Any] = field(default_factory=dict)  # httpx keyword arguments
    status: int | None = None  # the status it must get, where one is required
    read: bool = True  # read the answer (an endless stream is only opened)


@pytest.fixture(scope="module")
def routes(writer: JokeWriter) -> list[tuple[str, str]]:
    """(method, path) of every route: from the app Gradio builds for the page as app.py
    makes it (Blocks.queue builds it; launch builds the same routes with the middleware)."""
    demo = create_demo(writer, OriginalityCheck({}), Explainer(writer), "http://127.0.0.1/")
    listed = served_routes(queued(demo).app)
    print(f"\n{len(listed)} routes:\n" + "\n".join(f"  {m} {p}" for m, p in listed))
    return listed


def fill(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, path).lstrip("/")


def chunked() -> Iterator[bytes]:
    """5 MB with no Content-Length: read until the cap."""
    yield MARKER
    for _ in range(50):
        yield b"x" * 100_000


def route_cases(method: str, path: str) -> Iterator[Case]:
    """What every route gets, whatever it is for."""
    route = f"{method} {path}"
    streams = ("/heartbeat/", "/dev/reload")  # endless event streams: opened, then closed
    endless = any(s in path for s in streams)
    for value in PATH_FILLS:
        query = {"session_hash": value, "upload_id": value, "event_id": value}
        yield Case(route, "path and query", method, fill(path, value), {"params": query},
                   read=not endless)  # fmt: skip
    target = fill(path, "bogus")
    uploads = path.endswith(("/upload", "/upload_progress"))  # refused whatever they are sent
    yield Case(route, "5 MB", method, target, {"content": BIG, "headers": JSON},
               status=403 if uploads else 413)  # fmt: skip
    yield Case(route, "upload", method, target, {"files": {"files": ("a.bin", MARKER)}}, 403)
    if method != "POST":
        return
    yield Case(route, "5 MB chunked", method, target, {"content": chunked(), "headers": JSON})
    for name, body in [
        ("not JSON", b"{not json"),
        ("not UTF-8", b'{"data": ["\xff\xfe"]}'),
        ("deep nesting", b"[" * 50_000 + b"]" * 50_000),
        ("wrong shape", b"[1, 2, 3]"),
        ("empty", b""),
        ("data not a list", b'{"data": 5, "fn_index": 0, "session_hash": "abc"}'),
    ]:
        yield Case(route, name, method, target, {"content": body, "headers": JSON})
    for session in BAD_SESSIONS:  # Guard checks those of Gradio's routes (/gradio_api/...)
        body = {"data": [], "fn_index": 0, "session_hash": session, "event_id": "bogus"}
        status = 403 if uploads else 422 if path.startswith("/gradio_api/") else None
        yield Case(route, "bad session hash", method, target, {"json": body}, status)


def protocol_cases() -> Iterator[Case]:
    """The queue's own messages, malformed: unknown endpoints and events, bogus streams."""
    join = "POST /gradio_api/queue/join"
    for fn_index in [999, -1, 2**40]:
        body = {"data": [], "fn_index": fn_index, "session_hash": "route-test"}
        yield Case(join, "unknown fn_index", "POST", "gradio_api/queue/join", {"json": body}, 404)
    for body, status in [
        ({"data": [], "fn_index": "x", "session_hash": "route-test"}, 422),
        ({"data": [], "fn_index": 0}, 400),  # no session hash
        ({"fn_index": 0, "session_hash": "route-test"}, 422),  # no data
        ({"data": [], "session_hash": "route-test"}, 400),  # no fn_index
        ({"data": [], "fn_index": 0, "session_hash": "route-test", "trigger_id": "x"}, 422),
    ]:
        yield Case(join, "malformed message", "POST", "gradio_api/queue/join", {"json": body},
                   status)  # fmt: skip
    for name in ["nope", "x" * 300, "%00", "generate%2F..%2Flens"]:
        for route in ["call", "call/v2", "run"]:
            body = {"data": []} if route != "call/v2" else {}
            yield Case(f"POST /gradio_api/{route}/{{api_name}}", "unknown endpoint", "POST",
                       f"gradio_api/{route}/{name}", {"json": body}, 404)  # fmt: skip
    for event_id in ["bogus", "0" * 32, uuid.uuid4().hex]:
        for route in ["call/generate", "call/v2/generate", "call/nope"]:
            yield Case("GET /gradio_api/call/{api_name}/{event_id}", "bogus event id", "GET",
                       f"gradio_api/{route}/{event_id}", status=200)  # fmt: skip
    for session, status in [("bogus", 200), (uuid.uuid4().hex, 200), ("x" * 3000, 422), ("", 422)]:
        yield Case("GET /gradio_api/queue/data", "bogus session", "GET", "gradio_api/queue/data",
                   {"params": {"session_hash": session}}, status)  # fmt: skip
    for body in [{"session_hash": "bogus", "fn_index": 999, "event_id": "bogus"}, {"x": 1}]:
        yield Case("POST /gradio_api/cancel", "bogus event", "POST", "gradio_api/cancel",
                   {"json": body})  # fmt: skip


def send(http: httpx.Client, case: Case) -> tuple[int, str]:
    """The status and (for a read answer) the text; a stream is read until it closes."""
    with http.stream(case.method, case.path, **case.request) as answer:
        text = answer.read().decode(errors="replace") if case.read else ""
        return answer.status_code, text


def check(case: Case, status: int, text: str) -> str | None:
    """What is wrong with the answer to `case`, or None."""
    if status >= 500 or (case.status is not None and status != case.status):
        return f"status {status}: {text[:200]}"
    if "Traceback" in text:
        return text[:200]
    if case.method == "HEAD" or not case.read:
        return None
    if case.name == "upload" and json.loads(text) != {"detail": NO_FILES}:
        return text[:200]
    if (
        case.name in ("bogus event id", "bogus session")
        and status == 200
        and not text.startswith(("event: error\n", 'data: {"msg": "unexpected_error"'))
    ):
        return text[:200]
    if case.status == 413 and f"{MAX_BODY_BYTES:,}" not in json.loads(text)["detail"]:
        return text[:200]
    return None


def temp_files() -> set[Path]:
    folder = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    return {path for path in folder.rglob("*") if path.is_file()} if folder.exists() else set()


def holds_marker(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return MARKER in file.read(len(BIG) + 1)
    except OSError:  # gone meanwhile
        return False


def test_every_route_answers_hostile_requests_cleanly(
    app_server: AppServer, client: Any, routes: list[tuple[str, str]]
) -> None:
    log_offset = len(app_server.log.read_text(errors="replace"))
    before = temp_files()
    cases = [case for method, path in routes for case in route_cases(method, path)]
    cases += list(protocol_cases())
    statuses: Counter[int] = Counter()
    failures = []
    with httpx.Client(base_url=app_server.url, timeout=30) as http:
        for case in cases:
            try:
                status, text = send(http, case)
            except httpx.TransportError as error:
                failures.append((case.route, case.name, case.path[:80], repr(error)))
                continue
            statuses[status] += 1
            problem = check(case, status, text)
            if problem is not None:
                failures.append((case.route, case.name, case.path[:80], status, problem))
    assert not failures, "\n".join(map(str, failures))

    by_route = Counter(case.route for case in cases)
    print(f"\nroute cases: {len(cases)} over {len(by_route)} routes; statuses {dict(statuses)}")
    ARTIFACT.parent.mkdir(exist_ok=True)
    record = {"routes": len(routes), "cases": len(cases), "statuses": statuses}
    ARTIFACT.write_text(json.dumps(record | {"by_route": by_route}, indent=2) + "\n")

    # Nothing we sent was stored (other programs may write to the same folder meanwhile).
    stored = [path for path in temp_files() - before if holds_marker(path)]
    assert not stored, stored
    # The server still serves, and logged no traceback.
    answer = client.predict(prompt="Still here?", max_new_tokens=4, seed=1, api_name="/generate")
    assert answer["text"].startswith("Still here?")
    log = app_server.log.read_text(errors="replace")[log_offset:]
    assert "Traceback" not in log, log[log.find("Traceback") :][:3000]


@pytest.mark.slow
def test_the_file_and_proxy_routes_fetch_nothing(app_server: AppServer):
    """/gradio_api/file=https://... made Gradio fetch any URL for whoever asked."""
    for target in ("gradio_api/file=https://example.com/a.png", "gradio_api/proxy=http://x/y",
                   "gradio_api/file=/etc/passwd"):  # fmt: skip
        answer = httpx.get(app_server.url + target, timeout=10)
        assert answer.status_code == 404 and answer.json() == {"detail": SERVES_NO_FILES}
