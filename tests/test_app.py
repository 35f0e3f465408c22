"""The web app: input checks and HTML drawing on their own, then the real server through its API.

The server tests start `python app.py` once, on a tiny random-weights model trained here in a
few seconds, and call it with gradio_client as a program would. tests/test_browser.py,
tests/test_load.py and tests/test_hostile_api.py reuse the same server (see `running_server`).
The model folder's metadata names a small file of made-up jokes as its training data, so the
server's originality check has an index to search.
"""

from __future__ import annotations

import atexit
import functools
import html
import json
import math
import os
import random
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import httpx
import numpy as np
import pytest
from flax import nnx
from gradio_client import Client

import app
import visuals
from data.corpus import model_data
from data.originality import MEMORISED_SIMILARITY, Nearest
from data.tokenizer import encode, train_tokenizer
from model.checkpoint import save_model
from model.config import GPTConfig
from model.generate import main as generate_main
from model.gpt import GPT

ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(block_size=64, n_layer=2, n_head=2, d_model=32, d_ff=64)
VOCAB_SIZE = 400


def joke_like_lines(count: int = 400) -> list[str]:
    """Made-up joke-shaped lines, enough for the tokenizer to learn some merges."""
    rng = random.Random(0)
    who = ["chicken", "duck", "robot", "ghost", "penguin", "pirate", "snail", "banana", "cat"]
    did = ["cross the road", "walk into a bar", "open a bakery", "call the doctor", "go to school"]
    why = ["it was bored", "the bar was closed", "nobody told it not to", "of the pun"]
    return [
        f"Why did the {rng.choice(who)} {rng.choice(did)}?\nBecause {rng.choice(why)}!"
        for _ in range(count)
    ]


# What train.py records about its data, as model_data reads it back (no cleaning by the
# offensive-language model: the made-up jokes are harmless and the index builds faster).
TRAIN_CONFIG = dict(min_chars=10, max_chars=800, clean=False, val_fraction=0.05, text_column=None)


@functools.cache
def model_folder() -> Path:
    """A complete model folder with random weights; built once per test session.

    Its metadata records the made-up jokes (written next to it) as the training data.
    """
    tokenizer = train_tokenizer(joke_like_lines(), vocab_size=VOCAB_SIZE)
    config = GPTConfig(vocab_size=tokenizer.get_vocab_size(), **CONFIG)
    model = GPT(config, rngs=nnx.Rngs(0))
    folder = Path(tempfile.mkdtemp(prefix="punchline-test-")) / "model"
    atexit.register(shutil.rmtree, folder.parent, ignore_errors=True)  # after the server stops
    jokes = folder.parent / "jokes.json"
    jokes.write_text(json.dumps([{"joke": joke} for joke in joke_like_lines()]))
    metadata = {"sources": [str(jokes)], "train_config": TRAIN_CONFIG}
    return save_model(model, tokenizer, folder, metadata=metadata)


@functools.cache
def training_jokes() -> list[str]:
    """The jokes the test model folder says it was trained on (the originality index's)."""
    metadata = json.loads((model_folder() / "metadata.json").read_text())
    return model_data(metadata).train


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    checkpoint: Path,
    timeout: float = 120.0,
    log: Path | None = None,
    compilation_cache: Path | None = None,
) -> tuple[str, subprocess.Popen]:
    """Run `python app.py` on a free port; return its URL once it answers.

    The server logs every JAX compilation (PUNCHLINE_LOG_COMPILES) into `log`, with its output.
    Its compilation cache is `compilation_cache`, or none (each test server compiles afresh).
    """
    port = free_port()
    log = log or Path(tempfile.mkdtemp(prefix="punchline-app-")) / "app.log"
    env = {**os.environ, "PUNCHLINE_CHECKPOINT": str(checkpoint), "GRADIO_SERVER_PORT": str(port)}
    env |= {"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env |= {"PUNCHLINE_LOG_COMPILES": "1", "PYTHONUNBUFFERED": "1"}
    env["JAX_COMPILATION_CACHE_DIR"] = str(compilation_cache or "")
    with log.open("w") as output:  # the server keeps its own copy of the file handle
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    atexit.register(stop_server, process)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return url, process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(process)
    pytest.fail(f"app.py did not start; its output:\n{log.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen
    log: Path  # everything the server printed, JAX's compilation log included


@functools.cache
def shared_server() -> Server:
    """One server for every test module of the session (stopped when pytest exits)."""
    started = time.perf_counter()
    log = Path(tempfile.mkdtemp(prefix="punchline-app-")) / "app.log"
    url, process = start_server(model_folder(), log=log)
    print(f"\napp.py ready in {time.perf_counter() - started:.1f} s")
    return Server(url, process, log)


def running_server() -> str:
    return shared_server().url


@pytest.fixture(scope="module")
def client() -> Client:
    return Client(running_server(), verbose=False)


@functools.cache
def shared_writer() -> app.JokeWriter:
    """The test model, loaded once per session (each JokeWriter compiles its own decode step)."""
    return app.JokeWriter(model_folder())


@pytest.fixture(scope="module")
def writer() -> app.JokeWriter:
    return shared_writer()


def generate(client: Client, **kwargs) -> dict:
    return client.predict(api_name="/generate", **kwargs)


# ---------------------------------------------------------------- checks on their own

SIZES = dict(vocab_size=VOCAB_SIZE, block_size=64)
GOOD = dict(temperature=0.8, top_k=50, top_p=0.95, max_new_tokens=20, seed=7)


@pytest.mark.parametrize(
    "changes",
    [
        dict(temperature=0, top_k=0, top_p=1, max_new_tokens=1, seed=0),
        dict(temperature=2, top_k=VOCAB_SIZE, top_p=1e-6, max_new_tokens=64, seed=2**31 - 1),
        dict(top_k=5.0, max_new_tokens=10.0, seed=3.0),  # whole numbers sent as floats
    ],
)
def test_settings_at_the_edges_of_their_ranges_are_accepted(changes):
    settings = app.validate_settings(**(GOOD | changes), **SIZES)
    assert settings.seed == int((GOOD | changes)["seed"])
    assert isinstance(settings.top_k, int) and isinstance(settings.max_new_tokens, int)


BAD_INPUTS = [
    ("temperature", 2.5, "temperature must be a number from 0 to 2; got 2.5"),
    ("temperature", -0.1, "temperature must be a number from 0 to 2"),
    ("temperature", math.nan, "temperature must be a number from 0 to 2; got nan"),
    ("temperature", math.inf, "temperature must be a number from 0 to 2; got inf"),
    ("temperature", "hot", "temperature must be a number from 0 to 2; got 'hot'"),
    ("temperature", True, "temperature must be a number"),
    ("top_k", -1, f"top_k must be a whole number from 0 to {VOCAB_SIZE}"),
    ("top_k", VOCAB_SIZE + 1, f"top_k must be a whole number from 0 to {VOCAB_SIZE}"),
    ("top_k", 2.5, "top_k must be a whole number"),
    ("top_p", 0, "top_p must be a number greater than 0 and at most 1; got 0"),
    ("top_p", 1.01, "top_p must be a number greater than 0 and at most 1"),
    ("top_p", -math.inf, "top_p must be a number greater than 0 and at most 1"),
    ("max_new_tokens", 0, "max_new_tokens must be a whole number from 1 to 64; got 0"),
    ("max_new_tokens", 65, "max_new_tokens must be a whole number from 1 to 64"),
    ("max_new_tokens", None, "max_new_tokens must be a whole number from 1 to 64; got None"),
    ("seed", 1.5, "seed must be a whole number from 0 to 2147483647, or -1 for a random seed"),
    ("seed", -2, "seed must be a whole number from 0 to 2147483647, or -1"),
    ("seed", 2**31, "seed must be a whole number from 0 to 2147483647"),
    ("seed", "42", "seed must be a whole number"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD_INPUTS)
def test_each_bad_setting_is_named_with_its_range(name, value, message):
    with pytest.raises(gr.Error) as caught:
        app.validate_settings(**(GOOD | {name: value}), **SIZES)
    assert message in caught.value.message


def test_error_messages_never_echo_markup():
    with pytest.raises(gr.Error) as caught:
        app.validate_settings(**(GOOD | {"temperature": "<img src=x onerror=alert(1)>"}), **SIZES)
    assert "<img" not in caught.value.message and "&lt;img" in caught.value.message


def test_seed_minus_one_draws_a_random_seed_that_can_be_retyped():
    seeds = {app.validate_settings(**(GOOD | {"seed": -1}), **SIZES).seed for _ in range(20)}
    assert len(seeds) > 1 and all(0 <= s < app.RANDOM_SEEDS for s in seeds)


def test_prompts_are_cleaned_but_every_script_and_emoji_is_kept():
    assert app.clean_prompt(None) == ("", [])
    assert app.clean_prompt("   \n ") == ("", [])
    assert app.clean_prompt("Why did the 🐔 过马路 ") == ("Why did the 🐔 过马路", [])
    text, notes = app.clean_prompt("a\x00b\x07c\r\nd\te\ud800")
    assert text == "abc\nd\te" and notes == ["Removed 3 control character(s) from your words."]


def test_prompts_that_are_too_long_or_not_text_are_refused():
    with pytest.raises(gr.Error, match="prompt is 1,001 characters long; the limit is 1,000"):
        app.clean_prompt("x" * 1001)
    with pytest.raises(gr.Error, match="prompt must be text; got 42"):
        app.clean_prompt(42)


def test_rounded_attention_rows_still_sum_to_exactly_one():
    rng = np.random.default_rng(0)
    weights = rng.dirichlet(np.full(128, 0.3), size=(4, 4, 128)).astype(np.float32)
    rounded = app.round_rows(weights)
    np.testing.assert_allclose(rounded.sum(-1), 1.0, atol=1e-9)
    assert np.abs(rounded - weights).max() <= 1e-4 + 1e-7
    np.testing.assert_allclose(rounded * 1e4, np.round(rounded * 1e4), atol=1e-6)


def test_whitespace_and_control_characters_become_visible():
    assert visuals.visible_whitespace(" a\nb\tc\x00\x7f\x85é") == "·a↵b⇥c␀␡\\x85é"


def test_token_row_marks_each_kind_and_escapes_text():
    html = visuals.render_token_row(["⟨start⟩", "<b>", "·x"], prompt_length=2, selected=2)
    assert html.count("data-index=") == 3 and "&lt;b&gt;" in html and "<b>" not in html
    assert 'class="pl-chip pl-start"' in html and 'class="pl-chip pl-typed"' in html
    assert 'class="pl-chip pl-written selected" data-index="2"' in html


def test_heads_grid_has_one_strip_per_layer_and_head():
    rows = np.random.default_rng(0).dirichlet(np.ones(6), size=(3, 4))
    html = visuals.render_heads_grid(rows, [f"t{i}" for i in range(6)], position=5)
    assert html.count('class="pl-panel"') == 12 and html.count("data:image/png;base64,") == 12
    weights = re.findall(r'data-w="([^"]*)"', html)
    assert len(weights) == 12 and all(len(w.split(",")) == 6 for w in weights)
    assert "layer 3" in html and "head 4" in html and "attention weight" in html


def test_matrix_labels_never_overlap_at_the_longest_sequence():
    n, selected = 128, 77
    matrix = np.tril(np.random.default_rng(1).random((n, n)))
    matrix /= matrix.sum(-1, keepdims=True)
    labels = [f"·word{i}" for i in range(n)]
    html = visuals.render_matrix(matrix, labels, selected, layer=1, head=0)
    rows = sorted(float(y) for y in re.findall(r'<text[^>]* y="([\d.]+)"', html))
    assert min(np.diff(rows)) >= 11  # one label per font height (11 px) at most
    assert "·word77" in html and 'class="pl-sel"' in html and "layer 2, head 1" in html
    assert len(re.search(r'data-w="([^"]*)"', html)[1].split(";")) == n


def test_candidates_show_the_chosen_token_or_say_it_was_outside_the_top_five():
    top = [("·cat", 0.5), ("·dog", 0.2), ("·&", 0.1), ("·a", 0.05), ("·b", 0.01)]
    html = visuals.render_candidates("·dog", 4, "written", top, chosen=1)
    assert html.count("<li") == 5 and '<li class="chosen"><span class="pl-cand">·dog' in html
    assert "·&amp;" in html and "50.0%" in html
    outside = visuals.render_candidates("·zebra", 4, "written", top, chosen=None)
    assert "not among these five" in outside
    assert "You typed this token" in visuals.render_candidates("·cat", 2, "typed", None, None)


def test_colours_darken_as_attention_grows():
    rgb = visuals.colours(np.linspace(0, 1, 11)).astype(float)
    luminance = rgb @ [0.2126, 0.7152, 0.0722]
    assert np.all(np.diff(luminance) < 0)


# ---------------------------------------------------------------- the joke writer, in process


def test_collected_stream_equals_the_models_own_generate(writer):
    job = writer.request("Why did the duck", 0.9, 40, 0.9, 8, 11)
    joke = writer.write(job)
    reference = writer.generator.generate(job.prompt_ids, job.settings)
    assert joke.token_ids == reference.token_ids and joke.ended == reference.ended
    assert joke.prompt_length == reference.prompt_length
    np.testing.assert_array_equal(joke.attention, reference.attention)
    assert joke.candidates == reference.candidates


def test_long_opening_words_are_cut_by_words_and_leave_room_to_write(writer):
    words = " ".join(f"chicken{i}" for i in range(80))
    job = writer.request(words, 0.8, 50, 0.95, 64, 1)
    assert job.trimmed > 0 and "first" in job.notes[0] and "dropped" in job.notes[0]
    assert words.endswith(job.prompt) and job.prompt.startswith("chicken")
    assert encode(writer.tokenizer, job.prompt) == job.prompt_ids
    assert len(job.prompt_ids) + 1 + job.settings.max_new_tokens <= 64
    assert job.settings.max_new_tokens >= 64 // 4


def test_the_shown_command_writes_the_same_joke(writer, capsys):
    job = writer.request("Why did the robot\ncross", 1.1, 30, 0.9, 12, 1234)
    joke = writer.write(job)
    command, client_code = app.reproduce(writer, job, "http://127.0.0.1:7860/")
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "model.generate"] and "seed=1234" in client_code
    assert generate_main(argv[3:]) == 0
    assert capsys.readouterr().out == f"[seed 1234] {job.prompt}{joke.written}\n"


def metadata() -> dict:
    return json.loads((model_folder() / "metadata.json").read_text())


def test_the_verdict_turns_at_the_memorised_similarity():
    assert app.judge(Nearest("a known joke", MEMORISED_SIMILARITY)).verdict == app.CLOSE
    below = app.judge(Nearest("a known joke", MEMORISED_SIMILARITY - 1e-3))
    assert below == app.Originality(app.NEW, MEMORISED_SIMILARITY - 1e-3, "a known joke", None)
    # Sharing no word with any training joke: new, and no joke is "nearest".
    assert app.judge(Nearest("a known joke", 0.0)) == app.Originality(app.NEW, 0.0, None, None)


def test_a_training_joke_is_close_to_a_known_joke_and_a_made_up_one_is_new():
    check = app.OriginalityCheck(metadata())
    assert check.wait(timeout=60)
    known = training_jokes()[0]
    copied = check.check(known)
    assert copied.verdict == app.CLOSE and copied.joke == known
    assert copied.similarity == pytest.approx(1.0, abs=1e-5)
    made_up = check.check("Quantum accountants prefer pickled violins at midnight.")
    assert made_up.verdict == app.NEW and made_up.similarity < MEMORISED_SIMILARITY
    related = check.check("Why did the astronaut cross the galaxy? Because of the stars!")
    assert related.verdict == app.NEW and 0 < related.similarity < MEMORISED_SIMILARITY
    assert related.joke in training_jokes()
    assert check.check("  ").note == "Originality check: the joke is empty."


def test_without_the_training_data_the_check_says_why(tmp_path):
    unrecorded = app.OriginalityCheck({})  # e.g. a model folder exported by hand
    missing = app.OriginalityCheck(metadata() | {"sources": [str(tmp_path / "gone.json")]})
    assert unrecorded.wait(timeout=10) and missing.wait(timeout=10)
    assert unrecorded.check("a joke") == app.Originality.unknown(
        "Originality check unavailable: the model folder's metadata.json does not record its "
        "training data."
    )
    note = missing.check("a joke").note
    assert note.startswith("Originality check unavailable: the model's training data")
    assert "gone.json is not on this machine" in note
    html = visuals.render_originality(None, None, None, note)
    assert html.startswith('<p class="pl-origin pl-origin-note">Originality check unavailable')


def test_while_the_index_is_being_built_the_check_says_so(monkeypatch):
    gate = threading.Event()

    def slow_model_data(metadata: dict) -> object:
        gate.wait(timeout=10)
        return model_data(metadata)

    monkeypatch.setattr(app, "model_data", slow_model_data)
    check = app.OriginalityCheck(metadata())
    assert check.check("a joke").note == "Originality check: still indexing the training jokes."
    gate.set()
    assert check.wait(timeout=60) and check.check(training_jokes()[1]).verdict == app.CLOSE


def test_the_nearest_joke_is_shown_as_text_with_its_verdict():
    html = visuals.render_originality(app.CLOSE, 0.93, "<b>A</b> joke\x07", None)
    assert "<strong>Close to a known joke</strong>" in html and "similarity 0.93" in html
    assert "&lt;b&gt;A&lt;/b&gt; joke␇" in html and "pl-origin-close" in html
    assert "pl-origin-new" in visuals.render_originality(app.NEW, 0.2, "x", None)


# ---------------------------------------------------------------- clean mode, in process


class FakeClassifier:
    """Stands in for data.offensive.is_offensive: flags the first `flagged` texts it sees."""

    def __init__(self, flagged: int):
        self.flagged = flagged
        self.texts: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.texts.extend(texts)
        return np.array([len(self.texts) <= self.flagged] * len(texts))


def test_a_flagged_joke_is_written_again_with_the_next_seed(writer, monkeypatch):
    classifier = FakeClassifier(flagged=2)
    monkeypatch.setattr(app, "is_offensive", classifier)
    job = writer.request("", 0.8, 50, 0.95, 12, 10, clean=True)
    joke, tries = writer.write_checked(job)
    assert tries == 3 and joke.request.settings.seed == 12
    assert joke.request.notes[-1] == (
        "Clean mode: seeds 10 to 11 wrote a joke flagged as offensive; this is seed 12."
    )
    # The flagged jokes were those of seeds 10 and 11, and the shown one is seed 12's joke.
    for seed, text in zip([10, 11, 12], classifier.texts, strict=True):
        assert text == writer.write(writer.request("", 0.8, 50, 0.95, 12, seed)).written
    assert writer.write_checked(writer.request("", 0.8, 50, 0.95, 12, 10))[1] == 1  # clean off


def test_when_every_try_is_flagged_the_visitor_is_told(writer, monkeypatch):
    monkeypatch.setattr(app, "is_offensive", FakeClassifier(flagged=10**6))
    job = writer.request("", 0.8, 50, 0.95, 12, app.MAX_SEED - 1, clean=True)
    assert writer.write_checked(job) == (None, app.CLEAN_TRIES)
    with pytest.raises(gr.Error) as caught:
        app.generate_json(
            writer, app.OriginalityCheck({}), "", 0.8, 50, 0.95, 12, job.settings.seed, True
        )
    assert caught.value.message == (
        f"Could not find a clean joke: all {app.CLEAN_TRIES} jokes written (seeds "
        f"{app.MAX_SEED - 1} to 2) were flagged as offensive. Try again, change the opening "
        "words or the settings, or turn off clean mode."
    )


def page_updates(writer: app.JokeWriter, clean: bool) -> list[str]:
    """The joke card after each update of the page's "Tell me a joke" event, seed 21."""
    demo = app.build_demo(writer, app.OriginalityCheck({}))
    tell = next(fn.fn for fn in demo.fns.values() if fn.name == "tell_joke")
    request = SimpleNamespace(headers={})
    updates = tell("", 0.8, 50, 0.95, 12, 21, False, clean, 0, 0, request)
    return [value for update in updates for key, value in update.items() if key.elem_id == "joke"]


def test_clean_mode_never_shows_a_flagged_joke_even_in_part(writer, monkeypatch):
    classifier = FakeClassifier(flagged=1)
    monkeypatch.setattr(app, "is_offensive", classifier)
    cards = page_updates(writer, clean=True)
    flagged, shown = (html.escape(visuals.printable(text)) for text in classifier.texts)
    assert len(flagged) >= 3 and flagged != shown  # seed 21's joke was flagged, seed 22's shown
    # "Writing…", then the checked joke: never the flagged one, nor any part of it being written.
    assert len(cards) == 2 and "appears once it has been checked" in cards[0]
    assert flagged not in "".join(cards) and shown in cards[1] and "this is seed 22" in cards[1]
    streamed = page_updates(writer, clean=False)  # without clean mode: token by token
    assert len(streamed) > 3 and flagged in streamed[-1]  # seed 21's joke, shown as written


# ---------------------------------------------------------------- the running server


@pytest.mark.slow
def test_a_joke_comes_back_with_attention_and_candidates(client):
    started = time.perf_counter()
    result = generate(client, prompt="Why did the chicken", seed=3, max_new_tokens=30)
    print(f"one joke through the API: {time.perf_counter() - started:.2f} s")
    tokens, ids = result["tokens"], result["token_ids"]
    attention = np.array(result["attention"])
    steps = len(tokens)
    assert result["text"].startswith("Why did the chicken") and result["seed"] == 3
    assert attention.shape == (CONFIG["n_layer"], CONFIG["n_head"], steps, steps)
    assert len(ids) == steps and tokens[0] == "<|endofjoke|>"
    assert np.all(
        attention[..., np.triu_indices(steps, k=1)[0], np.triu_indices(steps, k=1)[1]] == 0
    )
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-3)
    written = result["top_candidates"]
    assert len(written) == steps - result["prompt_length"] and len(written) <= 30
    for entry in written:
        probabilities = [c["probability"] for c in entry["candidates"]]
        assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
        assert entry["sampled"]["token_id"] == ids[entry["position"]]
        rank = entry["sampled_rank"]
        assert rank is None or entry["candidates"][rank]["token_id"] == ids[entry["position"]]
    assert isinstance(result["ended"], bool) and result["trimmed"] == 0
    assert result["clean"] is True and result["tries"] >= 1  # clean mode is the default
    assert set(result["nearest"]) == {"similarity", "verdict", "joke", "note"}


@pytest.mark.slow
def test_the_same_seed_gives_the_same_joke_and_another_seed_another(client):
    first = generate(client, prompt="Knock knock", seed=99, max_new_tokens=20)
    again = generate(client, prompt="Knock knock", seed=99, max_new_tokens=20)
    other = generate(client, prompt="Knock knock", seed=100, max_new_tokens=20)
    assert first["token_ids"] == again["token_ids"] and first["attention"] == again["attention"]
    assert other["token_ids"] != first["token_ids"]


@pytest.mark.slow
def test_a_random_seed_is_reported_so_the_joke_can_be_repeated(client):
    result = generate(client, max_new_tokens=10)  # seed defaults to -1: random
    again = generate(client, seed=result["seed"], max_new_tokens=10)
    assert 0 <= result["seed"] < app.RANDOM_SEEDS and again["text"] == result["text"]


SERVER_BAD_INPUTS = [
    (dict(temperature=3), "temperature must be a number from 0 to 2; got 3"),
    (dict(top_k=-1), "top_k must be a whole number from 0 to {vocab} (0 keeps every token)"),
    (dict(top_p=0), "top_p must be a number greater than 0 and at most 1; got 0"),
    (dict(max_new_tokens=1000), "max_new_tokens must be a whole number from 1 to 64; got 1000"),
    (dict(seed=2.5), "seed must be a whole number from 0 to 2147483647, or -1 for a random"),
    (dict(temperature="warm"), "temperature must be a number from 0 to 2; got 'warm'"),
    (dict(prompt="ha" * 501), "prompt is 1,002 characters long; the limit is 1,000"),
    (dict(prompt=["a list"]), "prompt must be text"),
    (dict(clean="no"), "clean must be true or false; got 'no'"),
    (dict(prompt="You are a stupid fucking idiot."), "Your opening words were flagged as offens"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("inputs", "message"), SERVER_BAD_INPUTS)
def test_bad_inputs_are_refused_with_a_clear_message(client, inputs, message):
    vocab = json.loads((model_folder() / "config.json").read_text())["vocab_size"]
    with pytest.raises(Exception, match=re.escape(message.format(vocab=vocab))):
        generate(client, **inputs)


@pytest.mark.slow
def test_nan_and_infinity_sent_as_raw_json_are_refused():
    # gradio_client cannot even send NaN (it is not JSON); a hand-made request can.
    url = running_server() + "gradio_api/call/generate"
    body = '{"data": ["", 0.8, 50, Infinity, 10, NaN, true]}'
    event = httpx.post(url, content=body, headers={"content-type": "application/json"}).json()
    answer = httpx.get(f"{url}/{event['event_id']}", timeout=30).text
    assert "top_p must be a number greater than 0 and at most 1; got inf" in answer


@pytest.mark.slow
@pytest.mark.parametrize(
    "prompt", ["", "   ", "🐔🥚 😂", "为什么鸡要过马路", "tab\there\nnew line", "bell\x07nul\x00"]
)
def test_any_text_gives_a_joke(client, prompt):
    result = generate(client, prompt=prompt, seed=1, max_new_tokens=8)
    assert result["text"].startswith(result["prompt"]) and len(result["tokens"]) > 1
    assert "\x00" not in result["prompt"] and "\x07" not in result["prompt"]


@pytest.mark.slow
def test_very_long_opening_words_are_trimmed_with_a_note(client):
    result = generate(client, prompt="Why did the chicken cross the road? " * 27, seed=2)
    assert result["trimmed"] > 0 and any("dropped" in note for note in result["notes"])
    assert len(result["tokens"]) <= 64 and len(result["top_candidates"]) >= 1


@pytest.mark.slow
def test_the_api_reports_the_nearest_training_joke(client):
    known = training_jokes()[2]
    deadline = time.monotonic() + 60
    while True:  # the server builds its index in the background after it starts
        result = generate(client, prompt=known, seed=4, max_new_tokens=1)
        if result["nearest"]["note"] is None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    # The server's verdict is the one the same index gives in process, for the text it returned.
    check = app.OriginalityCheck(metadata())
    assert check.wait(timeout=60)
    expected = check.check(result["text"])
    assert result["text"].startswith(known) and result["nearest"]["joke"] == known
    assert result["nearest"]["similarity"] == pytest.approx(expected.similarity, abs=1e-4)
    assert result["nearest"]["verdict"] == expected.verdict
    made_up = generate(client, prompt="Quantum accountants prefer", seed=4, max_new_tokens=1)
    assert made_up["nearest"]["verdict"] == app.NEW


@pytest.mark.slow
def test_offensive_opening_words_are_written_on_when_clean_mode_is_off(client):
    result = generate(client, prompt="You are a stupid fucking idiot.", clean=False, seed=1)
    assert result["clean"] is False and result["tries"] == 1
    assert result["text"].startswith("You are a stupid fucking idiot.")


@pytest.mark.slow
def test_the_server_still_answers_after_all_that(client):
    assert generate(client, prompt="Still there?", seed=5, max_new_tokens=5)["text"]


@pytest.mark.slow
def test_a_damaged_model_folder_stops_the_app_with_one_line(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for path in model_folder().iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "model.safetensors").write_bytes(b"not weights")
    env = {**os.environ, "PUNCHLINE_CHECKPOINT": str(folder)}
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(folder / "model.safetensors") in lines[0]


@pytest.mark.slow
def test_the_app_writes_its_compiled_programs_to_its_cache_unless_told_otherwise(tmp_path):
    script = (
        "import sys, app\n"
        "app.use_compilation_cache(app.Path(sys.argv[1]))\n"
        "app.JokeWriter(sys.argv[2]).warm_up()\n"
    )
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    run = [sys.executable, "-c", script, str(cache), str(model_folder())]
    done = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert any(cache.iterdir()), "no compiled program was written to the cache"
    # JAX_COMPILATION_CACHE_DIR, when set, wins over the app's folder ("" switches it off).
    off = tmp_path / "off"
    env["JAX_COMPILATION_CACHE_DIR"] = ""
    run = [sys.executable, "-c", script, str(off), str(model_folder())]
    done = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not off.exists()


def test_the_ui_and_the_readme_say_how_top_p_counts_after_top_k():
    # Top-p is not renormalised after top-k (tests/test_sampling.py shows it does not): the
    # visitor's hint and the API docs must say so.
    assert "whole vocabulary" in app.HELP["p"] and "not renormalised" in app.HELP["p"]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "top-p counts probability over the whole vocabulary, not\nrenormalised" in readme
