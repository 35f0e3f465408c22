"""Fixtures shared by the tests.

- The data tests: made-up jokes and a small tokenizer trained on them.
- How the tests share the two workers (pytest-xdist): see pytest_collection_modifyitems.
- The app tests: a tiny random-weights model folder (tests/tiny_app.py), the JokeWriter that
  serves it in this process, and one `python app.py` on it for the whole session, started by
  the launcher the benchmarks use (benchmarks/app_server.py) and called with gradio_client.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client
from tiny_app import build_model_folder
from tokenizers import Tokenizer

from benchmarks.app_server import AppServer, start_app
from data.corpus import model_data
from data.tokenizer import train_tokenizer
from serving.explainer import Explainer
from serving.writer import JokeWriter

N_SYNTHETIC_JOKES = 300
APP_SERVER_GROUP = "app-server"


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep what tests share on one of the two workers (pyproject.toml: --dist loadgroup).

    A module's tests run on one worker, so that its module fixtures are built once. Every
    module with a test on the app server runs on the same worker, so that one `python app.py`
    serves them all (each worker would otherwise start and compile its own).
    """
    on_server = {
        item.module.__name__
        for item in items
        if "app_server" in item.fixturenames or item.get_closest_marker("app_server")
    }
    for item in items:
        module = item.module.__name__
        group = APP_SERVER_GROUP if module in on_server else module
        item.add_marker(pytest.mark.xdist_group(group))


SMALL_VOCAB_SIZE = 400


@pytest.fixture(scope="session")
def synthetic_jokes() -> list[str]:
    """Distinct jokes from one template: enough text to train a small tokenizer quickly."""
    animals = ["cat", "dog", "owl", "yak", "emu", "eel", "bee"]
    places = ["road", "river", "café", "library", "moon"]
    combinations = itertools.cycle(itertools.product(animals, places))
    return [
        f"Why did the {animal} cross the {place}? To visit joke number {index}!"
        for index, (animal, place) in enumerate(itertools.islice(combinations, N_SYNTHETIC_JOKES))
    ]


@pytest.fixture(scope="session")
def joke_tokenizer(synthetic_jokes: list[str]) -> Tokenizer:
    return train_tokenizer(synthetic_jokes, vocab_size=SMALL_VOCAB_SIZE)


# ---------------------------------------------------------------- the app's tiny model


@pytest.fixture(scope="session")
def model_folder() -> Path:
    """The tiny model folder; its metadata names made-up jokes as its training data."""
    return build_model_folder()


@pytest.fixture(scope="session")
def training_jokes(model_folder: Path) -> list[str]:
    """The jokes the model folder says it was trained on (the originality index's)."""
    return model_data(json.loads((model_folder / "metadata.json").read_text())).train


@pytest.fixture(scope="session")
def writer(model_folder: Path) -> JokeWriter:
    """The tiny model, loaded once per session (each JokeWriter compiles its own steps)."""
    return JokeWriter(model_folder)


@pytest.fixture(scope="module")
def explainer(writer: JokeWriter) -> Explainer:
    """The tiny model's explainer; per module, as the tests of one module share a worker."""
    return Explainer(writer)


@pytest.fixture(scope="session")
def app_server(model_folder: Path) -> Iterator[AppServer]:
    """`python app.py` on the tiny model, started once and shared by every test module."""
    log = Path(tempfile.mkdtemp(prefix="punchline-app-")) / "app.log"
    # No compilation cache: the test server compiles afresh, as a first start does.
    server = start_app(model_folder, env={"JAX_COMPILATION_CACHE_DIR": ""}, log=log, timeout=120)
    print(f"\napp.py ready in {server.seconds_to_ready:.1f} s")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(app_server: AppServer) -> Client:
    return Client(app_server.url, verbose=False)
