"""evaluate.py and the originality index: the scores on made-up texts, then on real tiny models.

A model that has memorised its few training jokes must score near 100% memorisation; a model
with random weights, near 0%.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from flax import nnx
from training_runs import JOKES, OTHER_JOKES, TINY, write_jokes

import evaluate
from data import DataError, model_data, split_jokes, train_tokenizer
from data.loaders import BUILT_IN_CORPUS
from data.originality import MEMORISED_SIMILARITY, JokeIndex
from model.checkpoint import save_model
from model.config import GPTConfig
from model.gpt import GPT
from training.cli import main as train_main

TRAIN_CONFIG = {"min_chars": 5, "max_chars": 800, "clean": False, "val_fraction": 0.05}


def test_distinct_n_counts_unique_word_ngrams_over_all_ngrams():
    texts = ["a b a b", "a b c"]
    # unigrams: a b a b a b c -> 3 unique of 7; bigrams: ab ba ab ab bc -> 3 unique of 5
    assert evaluate.distinct_n(texts, 1) == pytest.approx(3 / 7)
    assert evaluate.distinct_n(texts, 2) == pytest.approx(3 / 5)
    assert evaluate.distinct_n(["one"], 2) == 0.0


def test_duplicate_rate_counts_repeats_of_earlier_texts():
    assert evaluate.duplicate_rate(["x", "y", "x", "x"]) == 0.5
    assert evaluate.duplicate_rate(["x", "y", "z"]) == 0.0


def test_the_index_finds_a_copied_joke_and_calls_a_new_one_new():
    index = JokeIndex(JOKES + OTHER_JOKES)
    copied, reworded, unrelated, gibberish = index.nearest(
        [
            JOKES[1],
            "I told my cat a pun about lasers and it is still chasing the point!",
            "Two astronauts argue about soup on the moon.",
            "zzqx vvbn",
        ]
    )
    assert copied.joke == JOKES[1] and copied.similarity == pytest.approx(1.0, abs=1e-5)
    assert copied.memorised
    assert reworded.joke == JOKES[1] and 0.3 < reworded.similarity < 1.0
    assert unrelated.similarity < 0.3 and not unrelated.memorised
    assert gibberish.similarity == 0.0
    assert 0 < MEMORISED_SIMILARITY < 1
    with pytest.raises(DataError, match="no jokes to index"):
        JokeIndex([])


def test_model_data_reads_the_same_jokes_again_from_the_recorded_sources(tmp_path):
    data = write_jokes(tmp_path, JOKES + OTHER_JOKES)
    metadata = {"sources": [str(data)], "train_config": TRAIN_CONFIG}
    again = model_data(metadata)
    expected = split_jokes([str(data)], val_fraction=0.05)
    assert (again.train, again.val) == (expected.train, expected.val)
    assert model_data({"sources": [BUILT_IN_CORPUS], "train_config": TRAIN_CONFIG}).train

    # --clean with the sensitive-topic filter is read back with it; a model trained before
    # the filter existed (no clean_topics recorded) without it.
    topics = write_jokes(tmp_path, [*JOKES, "Why did the Nazi bake a cake? Nobody knows."], "t.txt")
    clean = {**TRAIN_CONFIG, "clean": True, "offensive_threshold": 1.0}
    before = model_data({"sources": [str(topics)], "train_config": clean})
    after = model_data({"sources": [str(topics)], "train_config": {**clean, "clean_topics": True}})
    assert len(before.train) + len(before.val) == len(after.train) + len(after.val) + 1

    data.unlink()
    with pytest.raises(DataError, match=re.escape(f"training data {data} is not on this")):
        model_data(metadata)
    assert model_data(metadata, [str(write_jokes(tmp_path, JOKES, "moved.txt"))]).train
    with pytest.raises(DataError, match="does not record its training data"):
        model_data({})


def _random_model_folder(tmp_path: Path, data: Path) -> Path:
    tokenizer = train_tokenizer(JOKES + OTHER_JOKES, vocab_size=320)
    config = GPTConfig(
        vocab_size=tokenizer.get_vocab_size(), block_size=48, n_layer=1, n_head=2, d_model=32
    )
    metadata = {"sources": [str(data)], "train_config": TRAIN_CONFIG}
    return save_model(GPT(config, rngs=nnx.Rngs(0)), tokenizer, tmp_path / "random", metadata)


def test_a_random_model_memorises_nothing_and_eval_json_has_every_figure(tmp_path, capsys):
    data = write_jokes(tmp_path, JOKES + OTHER_JOKES)
    folder = _random_model_folder(tmp_path, data)
    code = evaluate.main(
        ["--checkpoint", str(folder), "--samples", "8", "--cache-dir", str(tmp_path / "c")]
    )
    assert code == 0
    figures = json.loads((folder / evaluate.EVAL_FILE).read_text())
    for key in ("val_bpc", "val_loss", "memorization_rate", "distinct_2", "duplicate_rate"):
        assert key in figures
    for key in ("ended_rate", "offensive_rate", "mean_tokens", "distinct_1", "val_ppl"):
        assert key in figures
    assert figures["val_bpc_windows"] > 1.5  # the earlier figure, beside the joke-by-joke one
    assert figures["memorization_rate"] == 0.0
    # Random weights spread probability over the whole vocabulary: about log2(V) bits a token.
    assert figures["val_bpc"] > 1.5
    assert figures["samples"] == 8 and len(figures["closest_samples"]) == 5
    assert all("nearest" not in pair for pair in figures["closest_samples"])  # no corpus text
    out = capsys.readouterr().out
    assert "| validation bits per character, joke by joke |" in out and "nearest:" in out


def test_evaluate_names_missing_training_data_in_one_line(tmp_path, capsys):
    data = write_jokes(tmp_path, JOKES + OTHER_JOKES)
    folder = _random_model_folder(tmp_path, data)
    data.unlink()
    assert evaluate.main(["--checkpoint", str(folder), "--samples", "2"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "not on this machine" in error
    assert "\n" not in error


@pytest.mark.slow
def test_a_model_that_memorised_its_jokes_scores_near_full_memorisation(tmp_path):
    data = write_jokes(tmp_path, JOKES)
    out = tmp_path / "overfit"
    code = train_main(
        [*TINY, "--cache-dir", str(tmp_path / "cache"), "--data", str(data), "--out", str(out),
         "--steps", "300", "--learning-rate", "3e-3", "--warmup-steps", "20",
         "--weight-decay", "0", "--eval-every", "1000", "--val-fraction", "0.01"]
    )  # fmt: skip
    assert code == 0
    figures, pairs = evaluate.evaluate(out / "model", samples=20, cache_dir=tmp_path / "cache")
    assert figures["memorization_rate"] >= 0.9
    assert figures["ended_rate"] >= 0.9
    # 20 samples drawn from 5 memorised jokes must repeat.
    assert figures["duplicate_rate"] >= 0.5
    assert pairs[0]["similarity"] >= MEMORISED_SIMILARITY and pairs[0]["nearest"] in JOKES
