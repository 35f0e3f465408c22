"""serving/writer.py and serving/api.py: jokes written in process, clean mode's retries."""

from __future__ import annotations

import shlex
from urllib.parse import parse_qsl

import numpy as np
import pytest
from tiny_app import FakeClassifier

import serving.writer
from data.tokenizer import encode
from model.generate import main as generate_main
from serving.api import generate_json, round_rows
from serving.errors import RequestError
from serving.limits import CLEAN_TRIES, MAX_SEED
from serving.originality import OriginalityCheck
from serving.reproduce import read_link, reproduce, share_link


def test_collected_stream_equals_the_models_own_generate(writer):
    job = writer.request("Why did the duck", 0.9, 40, 0.9, 8, 11)
    joke = writer.write(job)
    reference = writer.generator.generate(job.prompt_ids, job.settings)
    generation = joke.generation
    assert generation.token_ids == reference.token_ids and generation.ended == reference.ended
    assert generation.prompt_length == reference.prompt_length
    np.testing.assert_array_equal(generation.attention, reference.attention)
    assert generation.candidates == reference.candidates


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
    command, client_code = reproduce(writer.folder, job, "http://127.0.0.1:7860/")
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "model.generate"] and "seed=1234" in client_code
    assert generate_main(argv[3:]) == 0
    assert capsys.readouterr().out == f"[seed 1234] {job.prompt}{joke.written}\n"


def test_a_jokes_link_names_its_request_and_reads_back_to_the_same_joke(writer):
    job = writer.request("Why did the robot & the cat", 1.1, 30, 0.9, 12, 1234, clean=False)
    link = share_link(job, "http://127.0.0.1:7860/")
    address, query = link.split("?")
    assert address == "http://127.0.0.1:7860/"
    again = writer.request(**read_link(dict(parse_qsl(query))))
    assert again == job
    assert writer.write(again).written == writer.write(job).written


def test_a_link_without_a_request_is_none_and_a_bad_value_is_named():
    assert read_link({}) is None and read_link({"__theme": "dark"}) is None
    assert read_link({"prompt": "Hi"}) == {"prompt": "Hi", "clean": True}
    for query, named in (({"seed": "7.5"}, "seed should be a whole number"),
                         ({"top_p": "lots"}, "top_p should be a number"),
                         ({"clean": "maybe"}, "clean should be 1 or 0")):  # fmt: skip
        with pytest.raises(RequestError, match=named):
            read_link(query)


def test_rounded_attention_rows_still_sum_to_exactly_one():
    rng = np.random.default_rng(0)
    weights = rng.dirichlet(np.full(128, 0.3), size=(4, 4, 128)).astype(np.float32)
    rounded = round_rows(weights)
    np.testing.assert_allclose(rounded.sum(-1), 1.0, atol=1e-9)
    assert np.abs(rounded - weights).max() <= 1e-4 + 1e-7
    np.testing.assert_allclose(rounded * 1e4, np.round(rounded * 1e4), atol=1e-6)


# ---------------------------------------------------------------- clean mode


def test_a_flagged_joke_is_written_again_with_the_next_seed(writer, monkeypatch):
    classifier = FakeClassifier(flagged=2)
    monkeypatch.setattr(serving.writer, "is_unfit", classifier)
    job = writer.request("", 0.8, 50, 0.95, 12, 10, clean=True)
    joke, tries = writer.write_checked(job)
    assert tries == 3 and joke.request.settings.seed == 12
    assert joke.request.notes[-1] == (
        "Clean mode: seeds 10 to 11 wrote a joke flagged as offensive or sensitive; "
        "this is seed 12."
    )
    # The flagged jokes were those of seeds 10 and 11, and the shown one is seed 12's joke.
    for seed, text in zip([10, 11, 12], classifier.texts, strict=True):
        assert text == writer.write(writer.request("", 0.8, 50, 0.95, 12, seed)).written
    assert writer.write_checked(writer.request("", 0.8, 50, 0.95, 12, 10))[1] == 1  # clean off


def test_when_every_try_is_flagged_the_visitor_is_told(writer, monkeypatch):
    monkeypatch.setattr(serving.writer, "is_unfit", FakeClassifier(flagged=10**6))
    job = writer.request("", 0.8, 50, 0.95, 12, MAX_SEED - 1, clean=True)
    assert writer.write_checked(job) == (None, CLEAN_TRIES)
    with pytest.raises(RequestError) as caught:
        generate_json(writer, OriginalityCheck({}), "", 0.8, 50, 0.95, 12, job.settings.seed, True)
    assert caught.value.message == (
        f"Could not find a clean joke: all {CLEAN_TRIES} jokes written (seeds "
        f"{MAX_SEED - 1} to 2) were flagged as offensive or sensitive. Try again, change the "
        "opening words or the settings, or turn off clean mode."
    )
