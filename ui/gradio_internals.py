"""Everything tied to Gradio's internals, in one file. Written against Gradio 6.31.0.

The app pins that version (requirements.txt). On an upgrade, read this file first: the
`Blocks` methods overridden here, the TypeError that Gradio raises for an unknown keyword,
and the queue's settings are where a new Gradio can behave differently.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import Request
from fastapi.responses import JSONResponse
from gradio.exceptions import InvalidPathError

from serving.errors import RequestError
from serving.limits import QUEUE_SIZE


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


def queued(demo: gr.Blocks, max_size: int = QUEUE_SIZE) -> gr.Blocks:
    """The app's queue: past `max_size` waiting requests, a new one is refused at once.

    Gradio then answers HTTP 503; the page shows "This application is currently busy. Please
    try again." and gradio_client raises QueueError("Queue is full! Please try again.").
    Every request goes through the queue: api_open=False closes Gradio's direct routes
    (/gradio_api/run/<name>), which would run jokes beside it, unlimited in number.
    """
    return demo.queue(default_concurrency_limit=1, max_size=max_size, api_open=False)


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
    _, url, _ = queued(demo, max_size).launch(
        server_name=server_name,
        server_port=server_port,
        theme=theme,
        css_paths=css_paths,
        app_kwargs={"exception_handlers": {TypeError: unknown_keyword}},
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return url
