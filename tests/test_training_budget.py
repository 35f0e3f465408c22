"""training/budget.py: --time-budget's durations, the step count it chooses from its own timings,
and a budgeted run that keeps its step count when resumed."""

from __future__ import annotations

import json
import os
import signal

import pytest
from training_runs import JOKES, OTHER_JOKES, metrics, run, write_jokes

import training.budget
import training.run
from model.checkpoint import load_model
from training.budget import STEP_MARGIN, Timings, parse_duration, steps_within
from training.config import TrainError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("1.5h", 5400), ("1h30m", 5400), (" 2M ", 120)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "30x", "m", "-5m", "1.2.3h", "half an hour", "0s", ""])
def test_a_bad_duration_names_the_flag_and_the_fix(text):
    with pytest.raises(TrainError) as error:
        parse_duration(text)
    message = str(error.value)
    assert message.startswith("--time-budget") and "e.g. 90s, 30m" in message
    assert "\n" not in message


def test_no_budget_is_no_duration():
    assert parse_duration(None) is None


def test_the_steps_fill_what_the_budget_leaves():
    timings = Timings(compile_s=5.0, step_s=0.1, eval_s=1.0)
    # 100 s - 10 spent - 5 to compile again - 1 for the final evaluation = 84 s, at 0.1 s a
    # step with its margin (0.103 s) plus an evaluation (1 s) every 10 steps: 0.203 s a step.
    assert STEP_MARGIN == 1.03
    assert steps_within(100.0, 10.0, timings, eval_every=10) == 413
    assert steps_within(10.0, 12.0, timings, eval_every=10) == 1  # spent already: one step


@pytest.mark.slow
def test_a_budgeted_run_trains_the_steps_its_own_timings_fit(tmp_path, capsys):
    """The run times its step and evaluation, then trains what fits (steps_within of what it
    measured), exactly that many steps. How close a run ends to its budget is a measurement,
    not a test: `python -m benchmarks.time_to_quality` reports it."""
    data = write_jokes(tmp_path, JOKES + OTHER_JOKES)
    out = tmp_path / "budgeted"
    assert run(tmp_path, "--data", str(data), "--out", str(out), "--time-budget", "8s",
               "--schedule", "wsd", "--eval-every", "100") == 0  # fmt: skip
    record = json.loads((out / "budget.json").read_text())
    timings = Timings(record["compile_s"], record["step_s"], record["eval_s"])
    fitted = steps_within(record["budget_s"], record["spent_s"], timings, eval_every=100)
    assert record["steps"] == fitted
    assert f"training for {record['steps']} steps" in capsys.readouterr().out
    assert metrics(out)[-1]["step"] == record["steps"]
    _, _, metadata = load_model(out / "model")
    assert metadata["steps"] == metadata["train_config"]["steps"] == record["steps"]


@pytest.mark.slow
def test_resuming_a_budgeted_run_keeps_its_step_count(tmp_path, monkeypatch):
    data = write_jokes(tmp_path, JOKES + OTHER_JOKES)
    out = tmp_path / "budgeted"
    # A made-up 5 s a step: a one-minute budget holds 11 steps, however fast this machine is.
    monkeypatch.setattr(training.budget, "measure", lambda run: Timings(0.0, 5.0, 0.0))
    real_batch = training.run.train_batch

    def interrupt_at_step_6(*args, **kwargs):
        if args[1] == 6:
            os.kill(os.getpid(), signal.SIGINT)  # like Ctrl-C: finish the step, save, stop
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(training.run, "train_batch", interrupt_at_step_6)
    assert run(tmp_path, "--data", str(data), "--out", str(out), "--time-budget", "1m",
               "--log-every", "1", "--checkpoint-every", "3") == 130  # fmt: skip
    assert json.loads((out / "budget.json").read_text())["steps"] == 11
    assert metrics(out)[-1]["step"] == 7

    def no_timing(run):
        raise AssertionError("a resumed budgeted run must keep its step count, not time again")

    monkeypatch.setattr(training.budget, "measure", no_timing)
    monkeypatch.setattr(training.run, "train_batch", real_batch)
    assert run(tmp_path, "--out", str(out), "--resume") == 0
    assert [r["step"] for r in metrics(out)] == list(range(1, 12))
    _, _, metadata = load_model(out / "model")
    assert metadata["steps"] == metadata["train_config"]["steps"] == 11
