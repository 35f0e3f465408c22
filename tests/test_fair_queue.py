"""Fair queueing (ui/fair_queue.py): a client that asks for many jokes at once holds only a
few places in the queue; its extra requests are refused at once with a message, and other
visitors are still served.

The app is served in this process through its own launcher, with the model held still
until each test lets it go, so that "waiting" lasts exactly as long as the test says.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gradio_client import Client
from gradio_client.client import Job
from gradio_client.utils import Status

from benchmarks.app_server import free_port
from serving.explainer import Explainer
from serving.joke import Joke, JokeRequest
from serving.originality import OriginalityCheck
from serving.writer import JokeWriter
from ui.fair_queue import MAX_WAITING_PER_ADDRESS, MAX_WAITING_PER_SESSION
from ui.gradio_internals import launch
from ui.layout import STYLESHEETS, THEME, create_demo

pytestmark = pytest.mark.slow  # starts a server
WAITING = {Status.IN_QUEUE, Status.PROCESSING}


WRITTEN: list[int] = []  # the seeds of the jokes written, in order


@pytest.fixture(scope="module")
def held(writer: JokeWriter) -> Iterator[tuple[str, threading.Event]]:
    """The app's address, and a gate: the model writes nothing while it is clear."""
    gate = threading.Event()
    write = writer.write_checked

    def held_write(job: JokeRequest) -> tuple[Joke | None, int]:
        gate.wait(timeout=60)
        WRITTEN.append(job.settings.seed)
        return write(job)

    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writer, "write_checked", held_write)
        demo = create_demo(
            writer, OriginalityCheck({}), Explainer(writer), address=f"http://127.0.0.1:{port}/"
        )
        url = launch(demo, "127.0.0.1", port, theme=THEME, css_paths=STYLESHEETS, block=False)
        try:
            yield url, gate
        finally:
            gate.set()
            demo.close()


def wait_until_queued(jobs: list[Job]) -> None:
    deadline = time.monotonic() + 30
    while not all(job.status().code in WAITING for job in jobs):
        assert time.monotonic() < deadline, [job.status() for job in jobs]
        time.sleep(0.05)


def test_a_greedy_session_is_refused_at_once_and_another_is_served(held):
    url, gate = held
    gate.clear()
    try:
        greedy = Client(url, verbose=False)
        jobs = [
            greedy.submit(max_new_tokens=3, seed=i, clean=False, api_name="/generate")
            for i in range(MAX_WAITING_PER_SESSION)
        ]
        wait_until_queued(jobs)

        started = time.perf_counter()
        for seed in range(10, 15):  # the same session asks for more
            with pytest.raises(httpx.HTTPStatusError) as refused:
                greedy.submit(max_new_tokens=3, seed=seed, api_name="/generate").result(10)
            assert refused.value.response.status_code == 429
            assert refused.value.response.json()["detail"] == (
                f"You already have {MAX_WAITING_PER_SESSION} requests waiting: wait for them "
                "before asking for more."
            )
        assert time.perf_counter() - started < 5  # at once, while the model is still held

        other = Client(url, verbose=False).submit(
            max_new_tokens=3, seed=99, clean=False, api_name="/generate"
        )
        wait_until_queued([other])  # another visitor keeps their place
        WRITTEN.clear()
        gate.set()
        assert other.result(timeout=60)["seed"] == 99
        assert [job.result(timeout=60)["seed"] for job in jobs] == [0, 1, 2]
        # Clients take turns: the other's joke came right after the greedy one's first (the
        # greedy's three were sent from threads, in any order).
        assert WRITTEN[1] == 99 and sorted(WRITTEN) == [0, 1, 2, 99], WRITTEN
        # Its places are free again: the greedy session is served like anyone.
        assert greedy.predict(max_new_tokens=3, seed=7, api_name="/generate")["seed"] == 7
    finally:
        gate.set()


def call(url: str, seed: int, address: str | None = None) -> httpx.Response:
    """POST /gradio_api/call/generate with no session hash (a fresh one each time), from
    `address` as a proxy on this machine says (X-Forwarded-For; loopback when None)."""
    headers = {"X-Forwarded-For": address} if address else {}
    data = ["", 0.8, 50, 0.95, 3, seed, False]
    return httpx.post(f"{url}gradio_api/call/generate", json={"data": data}, headers=headers)


def answer(url: str, posted: httpx.Response) -> Any:
    text = httpx.get(f"{url}gradio_api/call/generate/{posted.json()['event_id']}", timeout=60)
    kind, data = text.text.split("\n")[:2]
    assert kind == "event: complete", text.text
    return json.loads(data.removeprefix("data: "))[0]


def test_an_address_is_capped_whatever_sessions_it_uses_and_loopback_is_not(held):
    url, gate = held
    gate.clear()
    try:
        visitor = "203.0.113.7"
        accepted = [call(url, seed, visitor) for seed in range(MAX_WAITING_PER_ADDRESS)]
        assert [posted.status_code for posted in accepted] == [200] * MAX_WAITING_PER_ADDRESS
        refused = call(url, 50, visitor)
        assert refused.status_code == 429
        assert refused.json()["detail"] == (
            f"Your address already has {MAX_WAITING_PER_ADDRESS} requests waiting: wait for "
            "them before asking for more."
        )
        # Another address, and this machine's own programs (loopback), keep being served.
        accepted += [call(url, 60, "198.51.100.2"), call(url, 61), call(url, 62)]
        assert [posted.status_code for posted in accepted[-3:]] == [200, 200, 200]
        gate.set()
        seeds = [answer(url, posted)["seed"] for posted in accepted]
        assert seeds == [*range(MAX_WAITING_PER_ADDRESS), 60, 61, 62]
        assert call(url, 70, visitor).status_code == 200  # its places are free again
    finally:
        gate.set()
