"""The commands and the link that write a joke again: every joke is a pure function of its
request.

A link is the page's address with the request in its query, e.g.
`/?prompt=Why+did+the&seed=7&temperature=0.8&top_k=50&top_p=0.95&max_new_tokens=60&clean=1`:
the page fills in the settings from it and writes the joke (ui/events.py). read_link turns
the query back into what JokeWriter.request checks; nothing of it is stored.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from serving.errors import RequestError
from serving.joke import JokeRequest

# The link's query parameters and how each is read: the request's own names and types.
LINK_NUMBERS = {"temperature": float, "top_k": int, "top_p": float, "max_new_tokens": int,
                "seed": int}  # fmt: skip
LINK_SWITCHES = {"1": True, "true": True, "0": False, "false": False}


def reproduce(folder: str, job: JokeRequest, address: str) -> tuple[str, str]:
    """A shell command and a gradio_client call that give the same joke again."""
    s = job.settings
    command = ["python", "-m", "model.generate", "--checkpoint", folder, "-n", "1"]
    if job.prompt:
        command += ["--prompt", job.prompt]
    command += ["--seed", str(s.seed), "--temperature", f"{s.temperature!r}"]
    command += ["--top-k", str(s.top_k), "--top-p", f"{s.top_p!r}"]
    command += ["--max-new-tokens", str(s.max_new_tokens)]
    client = (
        "from gradio_client import Client\n\n"
        f"joke = Client({address!r}).predict(\n"
        f"    prompt={job.prompt!r},\n"
        f"    temperature={s.temperature!r}, top_k={s.top_k}, top_p={s.top_p!r},\n"
        f"    max_new_tokens={s.max_new_tokens}, seed={s.seed},\n"
        '    api_name="/generate",\n)\nprint(joke["text"])\n'
    )
    return shlex.join(command), client


def share_link(job: JokeRequest, address: str) -> str:
    """The page's address with this request in its query: opening it writes the same joke."""
    s = job.settings
    query = {
        "prompt": job.prompt, "seed": s.seed, "temperature": repr(s.temperature),
        "top_k": s.top_k, "top_p": repr(s.top_p), "max_new_tokens": s.max_new_tokens,
        "clean": int(job.clean),
    }  # fmt: skip
    return f"{address}?{urlencode(query)}"


def read_link(query: Mapping[str, str]) -> dict[str, Any] | None:
    """The request a link's query names, as keyword arguments of JokeWriter.request (which
    checks their ranges); None when the query names none (the page opened without a joke).
    Other parameters are ignored; a value of the wrong type raises RequestError naming it."""
    if not any(name in query for name in ("prompt", "clean", *LINK_NUMBERS)):
        return None
    request: dict[str, Any] = {"prompt": query.get("prompt", "")}
    for name, kind in LINK_NUMBERS.items():
        if name in query:
            try:
                request[name] = kind(query[name])
            except ValueError:
                what = "a whole number" if kind is int else "a number"
                raise RequestError(
                    f"The link's {name} should be {what}; got {query[name][:40]!r}. "
                    "Copy the link again from the joke's page.",
                    title="Invalid link",
                ) from None
    clean = query.get("clean", "1").lower()
    if clean not in LINK_SWITCHES:
        raise RequestError(
            f"The link's clean should be 1 or 0; got {clean[:40]!r}. Copy the link again.",
            title="Invalid link",
        )
    request["clean"] = LINK_SWITCHES[clean]
    return request
