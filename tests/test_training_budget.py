"""training/budget.py: --time-budget's durations, the step count it plans from its own pace, a
compiled step that takes the count as an input, and a budgeted run that keeps its count when
resumed."""

from __future__ import annotations

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from training_runs import JOKES, OTHER_JOKES, metrics, run, write_jokes

import training.budget
import training.run
from data.packing import Batch
from model.checkpoint import load_model
from model.config import GPTConfig
from model.gpt import GPT
from training.budget import STEP_MARGIN, StepPlan, parse_duration, steps_within
from training.config import TrainConfig, TrainError
from training.optimizer import make_optimizer
from training.steps import make_train_step


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
    # At step 50, 10 s spent of 100: 100 - 10 - 2.5 for the final evaluation = 87.5 s, at
    # 0.25 s a step planned 5% slower plus an evaluation (2.5 s) every 10 steps: 0.5125 s a
    # step, 170 steps more.
    assert STEP_MARGIN == 1.05
    assert steps_within(100.0, 10.0, 50, step_s=0.25, eval_s=2.5, eval_every=10) == 220
    assert steps_within(10.0, 12.0, 50, step_s=0.25, eval_s=2.5, eval_every=10) == 51  # spent


def test_the_plan_follows_the_pace_until_the_cooldown_needs_it():
    config = TrainConfig(schedule="wsd", warmup_steps=10, cooldown_fraction=0.2, log_every=10)
    plan = StepPlan(budget_s=400.0, config=config, steps=config.steps)
    plan.start(1, 4.0)  # the first step compiled for 4 s
    # 8 steps in 1 s: 395 s left at 0.125 s a step (planned 5% slower), 3,009 steps more.
    assert plan.plan(9, train_s=5.0, spent_s=5.0) == 3018
    assert plan.step_s == 0.125 and not plan.fixed
    # Slower since (0.25 s a step), and 6 s went to evaluations: 190 s left, 723 steps more.
    assert plan.plan(801, train_s=204.0, spent_s=210.0) == 1524
    assert not plan.fixed  # its cooldown starts at step 1,219: there is time for another plan
    assert plan.plan(1231, train_s=311.5, spent_s=317.5) == 1545
    assert plan.fixed  # the next log, at 1,241, would come after the cooldown starts (1,236)


def test_the_compiled_step_takes_the_step_count_as_an_input():
    """One compilation serves every step count (a budgeted run changes it as it goes), and the
    count reaches the schedule: the second step of a 2-step cosine is a smaller one."""
    config = TrainConfig(recipe="classic", schedule="cosine", warmup_steps=0, min_lr_ratio=0.0)
    sizes = GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=1, d_model=8, d_ff=16)
    model = GPT(sizes, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))
    train_step = make_train_step(graphdef, fused=False)
    tokens = np.arange(16, dtype=np.int32).reshape(2, 8)
    positions, segments = np.tile(np.arange(8, dtype=np.int32), (2, 1)), np.ones_like(tokens)
    batch = Batch(*map(jnp.asarray, (tokens, (tokens + 1) % 16, positions, segments)))
    key = jax.random.key(0)
    state, _ = train_step(state, batch, key, np.int32(100))  # the first step: the full rate

    def moved(total: int) -> float:
        """How far the second step moves the weights in a run of `total` steps."""
        after, _ = train_step(jax.tree.map(jnp.copy, state), batch, key, np.int32(total))
        distance = jax.tree.map(lambda a, b: jnp.abs(a - b).sum(), after[0], state[0])
        return float(sum(jax.tree.leaves(distance)))

    assert 0 < moved(2) < moved(100)
    assert train_step._cache_size() == 1  # one compilation for the three calls


@pytest.mark.slow
def test_a_budgeted_run_trains_the_steps_it_planned(tmp_path, capsys):
    """The run plans its step count from its own pace, and trains exactly that many steps. How
    close a run ends to its budget is a measurement, not a test: `python -m
    benchmarks.time_to_quality` reports it."""
    data = write_jokes(tmp_path, JOKES + OTHER_JOKES)
    out = tmp_path / "budgeted"
    assert run(tmp_path, "--data", str(data), "--out", str(out), "--time-budget", "8s",
               "--schedule", "wsd", "--eval-every", "100") == 0  # fmt: skip
    record = json.loads((out / "budget.json").read_text())
    assert record["final"]
    assert f"training for {record['steps']} steps" in capsys.readouterr().out
    assert metrics(out)[-1]["step"] == record["steps"]
    _, _, metadata = load_model(out / "model")
    assert metadata["steps"] == metadata["train_config"]["steps"] == record["steps"]


@pytest.mark.slow
def test_resuming_a_budgeted_run_keeps_its_step_count(tmp_path, monkeypatch):
    data = write_jokes(tmp_path, JOKES + OTHER_JOKES)
    out = tmp_path / "budgeted"
    # A plan of 11 steps, however fast this machine is: within the warmup, so it is final.
    monkeypatch.setattr(training.budget, "steps_within", lambda *args: 11)
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

    def no_plan(*args):
        raise AssertionError("a resumed budgeted run must keep its step count, not plan again")

    monkeypatch.setattr(training.budget, "steps_within", no_plan)
    monkeypatch.setattr(training.run, "train_batch", real_batch)
    assert run(tmp_path, "--out", str(out), "--resume") == 0
    assert [r["step"] for r in metrics(out)] == list(range(1, 12))
    _, _, metadata = load_model(out / "model")
    assert metadata["steps"] == metadata["train_config"]["steps"] == 11
