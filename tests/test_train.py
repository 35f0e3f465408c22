"""train.py end to end on tiny synthetic corpora: overfit, resume, export, fine-tune, errors."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import train
from data.tokenizer import decode, encode, end_of_joke_id
from model.checkpoint import load_model
from model.config import GPTConfig
from model.generate import Generator, SamplingSettings

JOKES = [
    "Why did the robot cross the road? To recharge on the other side.",
    "I told my cat a pun about lasers. It is still chasing the point.",
    "My calendar keeps laughing at me. Its days are numbered.",
    "The baker quit his job. He could not make enough dough.",
    "A penguin walks into a library and asks for a cool book.",
    "The snowman won the argument because he had the coldest take.",
]
OTHER_JOKES = [
    f"Knock knock. Who is there? {name}. {name} who? {name} forgot the punchline again."
    for name in ("Lettuce", "Olive", "Tank", "Boo", "Water", "Nobel", "Radio", "Alpaca")
]
# A model small enough to compile and train in seconds on two CPU cores.
TINY = [
    "--n-layer", "2", "--n-head", "2", "--d-model", "64", "--d-ff", "128",
    "--block-size", "48", "--vocab-size", "320", "--batch-size", "8",
    "--dropout", "0.0", "--samples", "0", "--min-chars", "5",
]  # fmt: skip


def write_jokes(folder: Path, jokes: list[str], name: str = "jokes.txt") -> Path:
    path = folder / name
    path.write_text("\n".join(jokes) + "\n")
    return path


def run(tmp_path: Path, *args: str) -> int:
    return train.main([*TINY, "--cache-dir", str(tmp_path / "cache"), *args])


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--data",
        "--preset",
        "--out",
        "--steps",
        "--resume",
        "--init-from",
        "--learning-rate",
        "--positional",
        "--clean",
        "--coordinator",
    ):
        assert flag in text


def test_every_setting_has_its_help_text_on_its_field(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(train.TrainConfig):
        assert f.metadata["help"], f.name
        assert " ".join(f.metadata["help"].split()) in text  # what --help prints, unwrapped


def test_help_shows_what_each_preset_sets(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = capsys.readouterr().out
    assert "(default: preset)" not in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if "--" in line[:4]}
    assert rows["--d-model"] == ["128", "256", "384"]  # tiny, small, base (model/config.py)
    assert rows["--steps"] == ["300", "3000", "10000"]
    assert rows["--learning-rate"] == ["0.002", "0.001", "0.0006"]
    assert rows["--positional"] == ["learned", "learned", "learned"]


@pytest.mark.slow
def test_a_tiny_model_overfits_a_handful_of_jokes_and_tells_them_back(tmp_path):
    data = write_jokes(tmp_path, JOKES)
    out = tmp_path / "overfit"
    code = run(
        tmp_path, "--data", str(data), "--out", str(out), "--steps", "400",
        "--learning-rate", "3e-3", "--warmup-steps", "20", "--weight-decay", "0",
        "--eval-every", "1000", "--val-fraction", "0.01",
    )  # fmt: skip
    assert code == 0
    losses = [r["train_loss"] for r in metrics(out)]
    assert losses[-1] < 0.1 < losses[0]
    model, tokenizer, meta = load_model(out / "model")
    assert meta["steps"] == 400 and meta["parameters"] > 0
    generator = Generator(model, end_of_joke_id(tokenizer))
    greedy = SamplingSettings(temperature=0.0, max_new_tokens=48)
    assert decode(tokenizer, generator.generate([], greedy).token_ids[1:]) in JOKES
    recalled = [  # the first three words are enough to recall each training joke
        joke
        for joke in JOKES
        if decode(
            tokenizer,
            generator.generate(encode(tokenizer, " ".join(joke.split()[:3])), greedy).token_ids[1:],
        )
        == joke
    ]
    assert len(recalled) >= len(JOKES) - meta["val_jokes"]
    assert (out / "loss.png").stat().st_size > 0


@pytest.mark.slow
def test_resume_after_an_interruption_reproduces_the_uninterrupted_run(tmp_path, monkeypatch):
    data = write_jokes(tmp_path, JOKES + OTHER_JOKES)
    common = ["--data", str(data), "--steps", "30", "--log-every", "1", "--eval-every", "15",
              "--checkpoint-every", "10", "--dropout", "0.1"]  # fmt: skip
    assert run(tmp_path, *common, "--out", str(tmp_path / "whole")) == 0

    real_batch = train.train_batch

    def interrupt_at_step_17(*args, **kwargs):
        if args[1] == 17:
            os.kill(os.getpid(), signal.SIGINT)  # like Ctrl-C: finish the step, save, stop
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(train, "train_batch", interrupt_at_step_17)
    assert run(tmp_path, *common, "--out", str(tmp_path / "split")) == 130
    assert [r["step"] for r in metrics(tmp_path / "split")][-1] == 18
    monkeypatch.setattr(train, "train_batch", real_batch)
    assert run(tmp_path, "--out", str(tmp_path / "split"), "--resume") == 0

    whole, split = metrics(tmp_path / "whole"), metrics(tmp_path / "split")
    assert [r["step"] for r in split] == list(range(1, 31))
    assert [r["train_loss"] for r in split] == [r["train_loss"] for r in whole]
    assert split[-1]["val_loss"] == whole[-1]["val_loss"]


def test_the_shipped_model_metadata_describes_it_truthfully():
    _, _, metadata = load_model(Path(__file__).resolve().parents[1] / "checkpoints" / "punchline")
    config = json.loads(
        (Path(__file__).resolve().parents[1] / "checkpoints/punchline/config.json").read_text()
    )
    recorded = metadata["train_config"]
    assert train.size_preset(GPTConfig.from_dict(config)) == recorded["preset"] == "small"
    for name in train.SIZE_FLAGS:
        assert recorded[name] == config[name]
    chain = metadata["lineage"]
    assert chain[0]["init_from"] is None  # trained from scratch first, then fine-tuned
    assert chain[-1]["steps"] == metadata["steps"] and len(chain) == 2
    assert sum(r["steps"] for r in chain) == 3500


def test_log_eval_and_checkpoint_schedules_are_independent(tmp_path):
    # Evaluation at step 7 must run although 7 is no logging step (5, 10, 12).
    data = write_jokes(tmp_path, JOKES + OTHER_JOKES)
    out = tmp_path / "schedules"
    assert run(tmp_path, "--data", str(data), "--out", str(out), "--steps", "12",
               "--log-every", "5", "--eval-every", "7", "--checkpoint-every", "3") == 0  # fmt: skip
    records = metrics(out)
    assert [r["step"] for r in records] == [5, 7, 10, 12]
    assert [r["step"] for r in records if "val_loss" in r] == [7, 12]
    kept = sorted(int(p.name) for p in (out / "state").iterdir() if p.name.isdigit())
    assert kept == [9, 12]  # the last two of the checkpoints at 3, 6, 9 and 12


@pytest.mark.slow
def test_fine_tuning_from_an_exported_model_learns_new_jokes(tmp_path, capsys):
    base_data = write_jokes(tmp_path, JOKES, "base.txt")
    assert run(tmp_path, "--data", str(base_data), "--out", str(tmp_path / "base"),
               "--steps", "40", "--eval-every", "40") == 0  # fmt: skip
    base, tokenizer, _ = load_model(tmp_path / "base" / "model")

    new_data = write_jokes(tmp_path, OTHER_JOKES, "new.txt")
    loss_before = _mean_loss(base, tokenizer, OTHER_JOKES)
    assert run(tmp_path, "--data", str(new_data), "--out", str(tmp_path / "tuned"),
               "--init-from", str(tmp_path / "base" / "model"), "--steps", "60",
               "--learning-rate", "3e-3", "--warmup-steps", "5",
               "--eval-every", "60") == 0  # fmt: skip
    tuned, tuned_tokenizer, tuned_metadata = load_model(tmp_path / "tuned" / "model")
    # The metadata tells the truth: sizes resolved, the preset named only if it fits (the
    # TINY flags make a custom model), and the whole chain of runs, oldest first.
    recorded = tuned_metadata["train_config"]
    assert recorded["preset"] == "custom" and recorded["d_model"] == 64
    assert recorded["n_layer"] == 2 and recorded["dropout"] == 0.0
    chain = tuned_metadata["lineage"]
    assert [r["init_from"] for r in chain] == [None, str(tmp_path / "base" / "model")]
    assert [r["steps"] for r in chain] == [40, 60]
    assert [r["out"] for r in chain] == [str(tmp_path / "base"), str(tmp_path / "tuned")]
    # The position table of the base model fixes its context: a longer one cannot work.
    longer = run(tmp_path, "--data", str(new_data), "--out", str(tmp_path / "longer"),
                 "--init-from", str(tmp_path / "base" / "model"), "--block-size", "96")  # fmt: skip
    assert longer == 1
    assert "--block-size cannot change when fine-tuning" in capsys.readouterr().err
    assert tuned_tokenizer.to_str() == tokenizer.to_str()  # fine-tuning keeps the tokenizer
    assert _mean_loss(tuned, tokenizer, OTHER_JOKES) < 0.5 * loss_before


def _mean_loss(model, tokenizer, jokes: list[str]) -> float:
    end = end_of_joke_id(tokenizer)
    losses = []
    for joke in jokes:
        ids = [end, *encode(tokenizer, joke), end][: model.config.block_size + 1]
        logits, _ = model(jnp.asarray([ids[:-1]]))
        targets = np.asarray(ids[1:])
        log_probs = np.asarray(logits[0]) - np.log(np.exp(np.asarray(logits[0])).sum(-1))[:, None]
        losses.append(-log_probs[np.arange(len(targets)), targets].mean())
    return float(np.mean(losses))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "no/such/jokes.csv"], "no/such/jokes.csv"),
        (["--d-model", "30", "--n-head", "4"], "not divisible by n_head"),
        (["--positional", "alibi"], "positional"),
        (["--init-from", "no/such/model"], "--init-from"),
        (["--resume"], "nothing to resume"),
    ],
)
def test_bad_input_gives_one_line_and_a_non_zero_exit(tmp_path, capsys, args, message):
    code = run(tmp_path, "--out", str(tmp_path / "run"), "--steps", "1", *args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert "Traceback" not in "\n".join(err)


def test_a_csv_without_the_text_column_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\n1,a joke that is long enough\n")
    assert run(tmp_path, "--data", str(bad), "--out", str(tmp_path / "run")) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--text-column" in err
