"""Everything tied to Gradio's internals, in one file (and ui/fair_queue.py, which counts
what waits in Gradio's queue). Written against Gradio 6.31.0 and FastAPI 0.165.

The app pins that version (requirements.txt). On an upgrade, read this file first: the
`Blocks` methods overridden here, the exceptions Gradio raises for requests it cannot serve,
the queue's settings and the routes `Guard` knows are where a new Gradio can behave
differently. tests/test_routes.py sends every route the app serves hostile requests.
"""

from __future__ import annotations

import errno
import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from gradio.exceptions import InvalidPathError
from gradio.route_utils import FnIndexInferError
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import RequestError
from serving.limits import QUEUE_SIZE
from serving.trace import MAX_TRACE_BYTES
from ui.fair_queue import share_fairly

# The largest request body the app reads. Its largest real request is a trace to replay (at
# most MAX_TRACE_BYTES, escaped as JSON inside the request: at most twice as long); the others
# are a few kB. A program sending a far too long prompt (tests/test_hostile_api.py sends up to
# 200,000 characters) is told what is wrong with it rather than refused unread.
MAX_BODY_BYTES = 2 * MAX_TRACE_BYTES + (64 << 10)
# What a session hash may be: Gradio's page makes 11 or so letters and digits, gradio_client
# a UUID. Each hash names a session state that Gradio keeps (up to 10,000 of them), so a
# hash of a megabyte would cost a megabyte each.
SESSION_HASH = re.compile(r"[A-Za-z0-9_-]{1,100}")
NO_FILES = "This app takes no files: uploads are refused."
SERVES_NO_FILES = "This app serves no files."
TOO_LARGE = f"The request body is over {MAX_BODY_BYTES:,} bytes, the most this app reads."
BAD_SESSION_HASH = "session_hash must be 1 to 100 letters, digits, '-' or '_'"
HEARTBEAT = re.compile(r"/gradio_api/heartbeat/(.*)")
EVENT_STREAM = re.compile(r"/gradio_api/call/(?:v2/)?[^/]+/(?P<event_id>[^/]+)/?")


def as_gradio_error(error: RequestError) -> gr.Error:
    """The one place a RequestError becomes Gradio's error: shown to the visitor or client as
    a titled message, with no traceback in the server's log."""
    return gr.Error(error.message, title=error.title, print_exception=False)


class Blocks(gr.Blocks):
    """gr.Blocks that shows the service's RequestError as a message, and gives a clear error
    for two kinds of hand-made requests that Gradio refuses with a traceback in the log and an
    empty error for the caller: too few values for an endpoint, and a value shaped like a file
    reference (Gradio reads no such file: it refuses any that was not uploaded, and no input of
    this app is a file)."""

    async def call_function(self, *args: Any, **kwargs: Any) -> Any:
        # Every handler runs (and every streamed step is drawn) inside this call.
        try:
            return await super().call_function(*args, **kwargs)
        except RequestError as error:
            raise as_gradio_error(error) from None

    def validate_inputs(self, block_fn: Any, inputs: list[Any]) -> None:
        needed = len(block_fn.inputs)
        if len(inputs) < needed:
            names = list(inspect.signature(block_fn.fn).parameters)
            listed = f" ({', '.join(names)})" if len(names) == needed else ""
            raise as_gradio_error(
                RequestError(
                    f"{block_fn.api_name or 'this event'} takes {needed} values{listed}; "
                    f"got {len(inputs)}"
                )
            )
        super().validate_inputs(block_fn, inputs)

    async def preprocess_data(
        self, block_fn: Any, inputs: list[Any], state: Any, explicit_call: bool = False
    ) -> list[Any]:
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except InvalidPathError:
            raise as_gradio_error(
                RequestError(
                    f"{block_fn.api_name or 'this event'} takes no files; a value shaped like a "
                    "file reference was sent"
                )
            ) from None


def unknown_keyword(request: Request, error: TypeError) -> JSONResponse:
    """/gradio_api/call/v2/<name> with a keyword the endpoint does not have: Gradio raises a
    TypeError with a clear message, then answers 500 and logs a traceback. Say it with a 422."""
    if "/call/v2/" not in request.url.path:
        raise error  # any other TypeError is a bug: Gradio's usual 500 and traceback
    return JSONResponse({"detail": str(error).split(" Please click")[0]}, status_code=422)


class Guard:
    """ASGI middleware in front of Gradio's routes, for what no setting of Gradio does.

    - No visitor's bytes are stored. Gradio's /gradio_api/upload writes every file it is sent
      to its temporary folder, and a multipart body elsewhere (/gradio_api/process_recording,
      /gradio_api/component_server) is spooled to disk as it is parsed. launch's
      max_file_size does not prevent it: it stops a file only once that much of it is read,
      and an empty file is still written. No input of this app is a file, so a path ending in
      /upload (or /upload_progress, which waits 3 s for an upload) and any multipart body are
      refused (403) before the body is read.
    - A body over MAX_BODY_BYTES is refused (413 with a JSON detail): at once when its
      Content-Length says so, else as soon as that much is read. (FastAPI's own max_body_size
      would do the same, but answers in plain text over any answer given inside it.)
    - A session hash must look like one (SESSION_HASH), or 422: in a JSON body, in the query
      or in /gradio_api/heartbeat/<session_hash> (whose stream, on closing, makes a URL of it
      and raises on a null byte).
    - A data stream of a session or an event the queue does not hold
      (/gradio_api/queue/data?session_hash=..., /gradio_api/call/<name>/<event_id>): Gradio
      sends an error event, then raises inside the stream it has started, which logs a
      traceback; and the stream of an event whose answer was already read waits forever.
      Answered here at once with the same kind of error event.
    - /gradio_api/file= and /gradio_api/proxy= serve nothing (404): the page holds its images
      inline, and file=https://... made the server fetch any URL it was given.
    """

    def __init__(self, app: ASGIApp, blocks: gr.Blocks) -> None:
        self.app, self.blocks = app, blocks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self.refusal(request)
        receive = limited(receive)
        if refusal is None and request.method == "POST" and "/gradio_api/" in scope["path"]:
            try:
                body = await read_body(receive)
            except HTTPException as error:  # too large
                body, refusal = b"", JSONResponse({"detail": error.detail}, error.status_code)
            if body is None:  # the client went away
                return
            problem = session_hash_problem(body)
            if refusal is None and problem is not None:
                refusal = JSONResponse({"detail": problem}, status_code=422)
            receive = replay(body, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def refusal(self, request: Request) -> Response | None:
        """The answer to a request refused before its body is read, or None."""
        content_type = request.headers.get("content-type", "").lower()
        path = request.url.path.rstrip("/")
        if path.endswith(("/upload", "/upload_progress")) or content_type.startswith("multipart/"):
            return JSONResponse({"detail": NO_FILES}, status_code=403)
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            return JSONResponse({"detail": TOO_LARGE}, status_code=413)
        heartbeat = HEARTBEAT.fullmatch(path)
        sessions = [request.query_params.get("session_hash"), heartbeat and heartbeat[1]]
        if any(s is not None and not SESSION_HASH.fullmatch(s) for s in sessions):
            return JSONResponse({"detail": BAD_SESSION_HASH}, status_code=422)
        if "/file=" in path or "/proxy=" in path:  # file=http://... would fetch any URL
            return JSONResponse({"detail": SERVES_NO_FILES}, status_code=404)
        return self.unknown_stream(request) if request.method == "GET" else None

    def unknown_stream(self, request: Request) -> Response | None:
        """Gradio's error event for a data stream of nothing the queue holds, or None."""
        queue = self.blocks._queue
        path = request.url.path
        if path.rstrip("/") == "/gradio_api/queue/data":
            session = request.query_params.get("session_hash")
            if session is None or session in queue.pending_messages_per_session:
                return None  # a missing session_hash is FastAPI's 422
            message = {
                "msg": "unexpected_error",
                "event_id": None,
                "message": "This session has no request waiting.",
                "session_not_found": True,
                "success": False,
            }
            return Response(f"data: {json.dumps(message)}\n\n", media_type="text/event-stream")
        match = EVENT_STREAM.fullmatch(path)
        if match is None:
            return None
        event_id = match["event_id"]
        pending = queue.pending_event_ids_session.values()
        if event_id in queue.event_ids_to_events or any(event_id in ids for ids in pending):
            return None
        error = json.dumps(f"No request {event_id!r} is waiting: never made, or already read.")
        return Response(f"event: error\ndata: {error}\n\n", media_type="text/event-stream")


def limited(receive: Receive) -> Receive:
    """A `receive` that raises HTTPException(413) once the body passes MAX_BODY_BYTES: a route
    reading it answers the 413 as JSON (FastAPI's exception handling)."""
    read = 0

    async def receive_limited() -> Message:
        nonlocal read
        message = await receive()
        read += len(message.get("body", b""))
        if read > MAX_BODY_BYTES:
            raise HTTPException(413, detail=TOO_LARGE)
        return message

    return receive_limited


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the routes the body Guard already read, then passes on what
    the client sends next (its disconnection)."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def session_hash_problem(body: bytes) -> str | None:
    """What is wrong with a JSON body's session_hash, or None (a body that is not JSON is left
    to the route, which says so)."""
    try:
        sent = json.loads(body)
    except (ValueError, RecursionError):
        return None
    session_hash = sent.get("session_hash") if isinstance(sent, dict) else None
    if session_hash is None or (
        isinstance(session_hash, str) and SESSION_HASH.fullmatch(session_hash)
    ):
        return None
    return BAD_SESSION_HASH


def exception_handlers(demo: gr.Blocks) -> dict[type[Exception], Callable[..., JSONResponse]]:
    """Handlers for the exceptions Gradio raises on requests it cannot serve, then answers
    with a 500 and a traceback in the log. Each says what was wrong with a 4xx:

    - a TypeError: a keyword /gradio_api/call/v2/<name> does not take (unknown_keyword);
    - a FnIndexInferError or a KeyError: an endpoint or event the app does not have (an
      unknown name in /gradio_api/call/<name>, /call/v2/<name> or /run/<name>, an unknown
      fn_index in /gradio_api/queue/join or /run/<name>, an unknown component_id in
      /gradio_api/component_server): 404, naming the app's endpoints;
    - an OSError "file name too long" from the static files (/assets/<name>, /static/<name>): 404;
    - an httpx.InvalidURL from /gradio_api/proxy=<url> (a URL with a null byte): 400.

    Any other exception of those types is a bug: Gradio's usual 500 and traceback.
    """

    def endpoints() -> str:
        names = [f"/{fn.api_name}" for fn in demo.fns.values() if fn.api_visibility == "public"]
        return ", ".join(names)

    def unknown_name(request: Request, _: Exception) -> JSONResponse:
        name = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        detail = f"No endpoint /{name}; this app's endpoints are {endpoints()}."
        return JSONResponse({"detail": detail}, status_code=404)

    def unknown_key(request: Request, error: KeyError) -> JSONResponse:
        key, path = error.args[0] if error.args else None, request.url.path
        if "/call/v2/" in path and isinstance(key, str):
            return unknown_name(request, error)
        if isinstance(key, int) and re.search(r"/gradio_api/(queue/join|run/|api/)", path):
            detail = f"fn_index {key} is none of this app's events."
            return JSONResponse({"detail": detail}, status_code=404)
        if isinstance(key, int) and "/gradio_api/component_server" in path:
            detail = f"component_id {key} is none of this app's components."
            return JSONResponse({"detail": detail}, status_code=404)
        raise error

    def unreadable_name(_: Request, error: OSError) -> JSONResponse:
        if error.errno != errno.ENAMETOOLONG:
            raise error
        return JSONResponse({"detail": "No such file: its name is too long."}, status_code=404)

    def invalid_url(request: Request, error: httpx.InvalidURL) -> JSONResponse:
        if "/proxy=" not in request.url.path:
            raise error
        return JSONResponse({"detail": f"Not a URL: {error}"}, status_code=400)

    return {
        TypeError: unknown_keyword,
        FnIndexInferError: unknown_name,
        KeyError: unknown_key,
        OSError: unreadable_name,
        httpx.InvalidURL: invalid_url,
    }


def served_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) that `app` serves. FastAPI 0.165 keeps Gradio's router as a single
    entry of `app.routes`; iter_route_contexts opens it."""
    served = iter_route_contexts(app.routes)
    return sorted({(method, route.path) for route in served for method in route.methods or ()})


def queued(demo: gr.Blocks, max_size: int = QUEUE_SIZE) -> gr.Blocks:
    """The app's queue: past `max_size` waiting requests, a new one is refused at once, and
    one client may hold only a few of those places (ui/fair_queue.py).

    Gradio then answers HTTP 503; the page shows "This application is currently busy. Please
    try again." and gradio_client raises QueueError("Queue is full! Please try again.").
    Every request goes through the queue: api_open=False closes Gradio's direct routes
    (/gradio_api/run/<name>), which would run jokes beside it, unlimited in number.
    """
    demo.queue(default_concurrency_limit=1, max_size=max_size, api_open=False)
    share_fairly(demo._queue)
    return demo


def launch(
    demo: gr.Blocks,
    server_name: str,
    server_port: int,
    *,
    theme: gr.themes.Base,
    css_paths: list[Path],
    max_size: int = QUEUE_SIZE,
    block: bool = True,
) -> str:
    """Queue and serve the page; the one way the app is started (app.py and the tests).

    Returns the page's address; with block=False it returns as soon as the server answers.
    """
    app_kwargs = {
        "middleware": [Middleware(Guard, blocks=demo)],
        "exception_handlers": exception_handlers(demo),
    }
    _, url, _ = queued(demo, max_size).launch(
        server_name=server_name,
        server_port=server_port,
        theme=theme,
        css_paths=css_paths,
        app_kwargs=app_kwargs,
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return url
