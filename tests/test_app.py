"""The running app: `python app.py` on the tiny model, called with gradio_client as a program
would (the server is conftest.py's `app_server`, shared with tests/test_browser.py,
tests/test_load.py and tests/test_hostile_api.py). The model folder's metadata names a small
file of made-up jokes as its training data, so the server's originality check has an index.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client
from tiny_app import CONFIG

from serving.limits import RANDOM_SEEDS
from serving.originality import NEW, OriginalityCheck

ROOT = Path(__file__).resolve().parents[1]


def generate(client: Client, **kwargs) -> dict:
    return client.predict(api_name="/generate", **kwargs)


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
    assert 0 <= result["seed"] < RANDOM_SEEDS and again["text"] == result["text"]


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
def test_bad_inputs_are_refused_with_a_clear_message(client, model_folder, inputs, message):
    vocab = json.loads((model_folder / "config.json").read_text())["vocab_size"]
    with pytest.raises(Exception, match=re.escape(message.format(vocab=vocab))):
        generate(client, **inputs)


@pytest.mark.slow
def test_nan_and_infinity_sent_as_raw_json_are_refused(app_server):
    # gradio_client cannot even send NaN (it is not JSON); a hand-made request can.
    url = app_server.url + "gradio_api/call/generate"
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
def test_the_api_reports_the_nearest_training_joke(client, model_folder, training_jokes):
    known = training_jokes[2]
    deadline = time.monotonic() + 60
    while True:  # the server builds its index in the background after it starts
        result = generate(client, prompt=known, seed=4, max_new_tokens=1)
        if result["nearest"]["note"] is None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    # The server's verdict is the one the same index gives in process, for the text it returned.
    check = OriginalityCheck(json.loads((model_folder / "metadata.json").read_text()))
    assert check.wait(timeout=60)
    expected = check.check(result["text"])
    assert result["text"].startswith(known) and result["nearest"]["joke"] == known
    assert result["nearest"]["similarity"] == pytest.approx(expected.similarity, abs=1e-4)
    assert result["nearest"]["verdict"] == expected.verdict
    made_up = generate(client, prompt="Quantum accountants prefer", seed=4, max_new_tokens=1)
    assert made_up["nearest"]["verdict"] == NEW


@pytest.mark.slow
def test_offensive_opening_words_are_written_on_when_clean_mode_is_off(client):
    result = generate(client, prompt="You are a stupid fucking idiot.", clean=False, seed=1)
    assert result["clean"] is False and result["tries"] == 1
    assert result["text"].startswith("You are a stupid fucking idiot.")


@pytest.mark.slow
def test_the_server_still_answers_after_all_that(client):
    assert generate(client, prompt="Still there?", seed=5, max_new_tokens=5)["text"]


@pytest.mark.slow
def test_a_damaged_model_folder_stops_the_app_with_one_line(model_folder, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for path in model_folder.iterdir():
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
def test_the_app_writes_its_compiled_programs_to_its_cache_unless_told_otherwise(
    model_folder, tmp_path
):
    script = (
        "import sys, pathlib\n"
        "from serving.compilation_cache import use_compilation_cache\n"
        "from serving.writer import JokeWriter\n"
        "use_compilation_cache(pathlib.Path(sys.argv[1]))\n"
        "JokeWriter(sys.argv[2]).warm_up()\n"
    )
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    run = [sys.executable, "-c", script, str(cache), str(model_folder)]
    done = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert any(cache.iterdir()), "no compiled program was written to the cache"
    # JAX_COMPILATION_CACHE_DIR, when set, wins over the app's folder ("" switches it off).
    off = tmp_path / "off"
    env["JAX_COMPILATION_CACHE_DIR"] = ""
    run = [sys.executable, "-c", script, str(off), str(model_folder)]
    done = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not off.exists()
