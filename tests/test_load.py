"""The app under load: many programs at once, and more requests than its queue holds.

The first test is the short version of `python -m benchmarks.load` against the session's
server (conftest.py's `app_server`). The second serves the app in this process, through the
app's own launcher, with a queue of two and a model held still, so that "the queue is full"
happens exactly when the test says.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from gradio_client import Client
from gradio_client.utils import QueueError, Status
from tiny_app import CONFIG

from benchmarks.app_server import free_port
from benchmarks.load import run_load
from benchmarks.server_probes import COMPILED
from serving.explainer import Explainer
from serving.joke import Joke, JokeRequest
from serving.originality import OriginalityCheck
from ui.gradio_internals import launch
from ui.layout import STYLESHEETS, THEME, create_demo

pytestmark = pytest.mark.slow  # starts a server


def test_ten_clients_at_once_get_every_joke_without_a_recompilation(app_server):
    report = run_load(
        app_server, clients=10, jokes=3, block_size=CONFIG["block_size"], deadline_s=120,
        index_timeout=60,
    )  # fmt: skip
    figures = report.figures
    print(f"\n10 clients x 3 jokes: {figures}")
    assert report.passed, report.checks
    assert figures["jokes"] + figures["no_clean_joke"] == 30 and figures["errors"] == 0
    assert figures["busy"] == 0  # ten clients fit in the queue
    assert 0 < figures["p50_s"] <= figures["p95_s"] <= figures["p99_s"] < 30
    assert figures["jokes_per_s"] > 0 and figures["rss_peak_mb"] >= figures["rss_before_mb"] > 50
    # The count is real: the same log holds the compilations of the app's own warm-up.
    assert app_server.log.read_text().count(COMPILED) > 0
    assert figures["compilations_after_app_warm_up"] == 0


def test_a_request_beyond_the_queue_is_refused_at_once_and_the_others_are_served(
    writer, monkeypatch
):
    gate = threading.Event()
    write = writer.write_checked

    def held(job: JokeRequest) -> tuple[Joke | None, int]:
        gate.wait(timeout=60)  # the model is busy until the test says otherwise
        return write(job)

    monkeypatch.setattr(writer, "write_checked", held)
    port = free_port()
    demo = create_demo(
        writer, OriginalityCheck({}), Explainer(writer), address=f"http://127.0.0.1:{port}/"
    )
    url = launch(
        demo, "127.0.0.1", port, theme=THEME, css_paths=STYLESHEETS, max_size=2, block=False
    )
    try:
        client = Client(url, verbose=False)
        # One joke being written and two waiting: the queue of two is full.
        jobs = [client.submit(max_new_tokens=4, seed=i, api_name="/generate") for i in range(3)]
        deadline = time.monotonic() + 30
        while {job.status().code for job in jobs} != {Status.PROCESSING, Status.IN_QUEUE}:
            assert time.monotonic() < deadline, [job.status() for job in jobs]
            time.sleep(0.05)

        started = time.perf_counter()
        with pytest.raises(QueueError, match=r"Queue is full! Please try again\."):
            client.submit(max_new_tokens=4, seed=9, api_name="/generate").result(timeout=10)
        raw = httpx.post(f"{url}gradio_api/call/generate", json={"data": ["", 0.8]}, timeout=10)
        refused_in = time.perf_counter() - started
        assert raw.status_code == 503
        assert raw.json()["detail"] == "Queue is full. Max size is 2 and size is 2."
        assert refused_in < 2.0  # both refusals came at once, not after the jokes

        gate.set()
        answers = [job.result(timeout=60) for job in jobs]
        assert [answer["seed"] for answer in answers] == [0, 1, 2]
        assert client.predict(max_new_tokens=4, seed=5, api_name="/generate")["seed"] == 5
    finally:
        gate.set()
        demo.close()
