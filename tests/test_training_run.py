"""training/run.py end to end on tiny synthetic corpora: overfit, resume, schedules, errors."""

from __future__ import annotations

import os
import signal

import pytest
from training_runs import JOKES, OTHER_JOKES, metrics, run, write_jokes

import training.run
from data.tokenizer import decode, encode, end_of_joke_id
from model.checkpoint import load_model
from model.generate import Generator, SamplingSettings


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

    real_batch = training.run.train_batch

    def interrupt_at_step_17(*args, **kwargs):
        if args[1] == 17:
            os.kill(os.getpid(), signal.SIGINT)  # like Ctrl-C: finish the step, save, stop
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(training.run, "train_batch", interrupt_at_step_17)
    assert run(tmp_path, *common, "--out", str(tmp_path / "split")) == 130
    assert [r["step"] for r in metrics(tmp_path / "split")][-1] == 18
    monkeypatch.setattr(training.run, "train_batch", real_batch)
    assert run(tmp_path, "--out", str(tmp_path / "split"), "--resume") == 0

    whole, split = metrics(tmp_path / "whole"), metrics(tmp_path / "split")
    assert [r["step"] for r in split] == list(range(1, 31))
    assert [r["train_loss"] for r in split] == [r["train_loss"] for r in whole]
    assert split[-1]["val_loss"] == whole[-1]["val_loss"]


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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "no/such/jokes.csv"], "no/such/jokes.csv"),
        (["--d-model", "30", "--n-head", "4"], "not divisible by n_head"),
        (["--positional", "alibi"], "positional"),
        (["--init-from", "no/such/model"], "--init-from"),
        (["--resume"], "nothing to resume"),
        (["--time-budget", "soon"], "--time-budget 'soon' is not a duration"),
        (["--cooldown-fraction", "2"], "--cooldown-fraction"),
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


def test_windows_rows_train_on_windows_of_the_stream(tmp_path, monkeypatch):
    drawn = []

    def windows(*args, **kwargs):
        drawn.append(args[1])  # the step
        return real(*args, **kwargs)

    real = training.run.train_windows
    monkeypatch.setattr(training.run, "train_windows", windows)
    data = write_jokes(tmp_path, JOKES * 4)
    out = tmp_path / "windows"
    code = run(
        tmp_path, "--data", str(data), "--out", str(out), "--steps", "40", "--rows", "windows",
        "--learning-rate", "3e-3", "--warmup-steps", "5", "--eval-every", "1000",
    )  # fmt: skip
    assert code == 0
    assert drawn[:3] == [0, 1, 2] and len(set(drawn)) == 40
    losses = [r["train_loss"] for r in metrics(out)]
    assert losses[-1] < losses[0]
    assert '"rows": "windows"' in (out / "train_config.json").read_text()
