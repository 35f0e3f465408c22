"""--time-budget: the number of steps that fits a wall-clock budget, chosen once per run.

A schedule needs its step count from the start (the cosine's or the cooldown's end), so a
budgeted run times itself first, on a throwaway copy of its initial state: a few steps to
compile and warm up, a few more timed, and a small evaluation (which also compiles the
evaluation step for later). From those it sets --steps so that compiling the step again
(its schedule is part of the program), training and every evaluation end when the budget
does, and trains from step 0 exactly as a run given that --steps would. The step count goes
to RUN/budget.json, where --resume finds it: a resumed run keeps it instead of timing again.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from training.config import TrainError

if TYPE_CHECKING:
    from training.run import Run

BUDGET_FILE = "budget.json"
WARM_STEPS = 3  # the first compiles; the others let allocations and autotuning settle
TIMED_STEPS = 20
# A run's steps may take a few percent longer than the timed ones, which run back to back
# before anything else: in two 5-minute runs of benchmarks.time_to_quality (2026-12-05) 3%
# longer, which cut the first off 18 steps before its cooldown ended, and 1% shorter. The plan
# allows for the slower case, so that the schedule ends inside the budget.
STEP_MARGIN = 1.03
UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
DURATION = re.compile(r"(?:\d+(?:\.\d+)?[hms])+")


@dataclass
class Timings:
    """What a budgeted run measured before it chose its step count, in seconds."""

    compile_s: float  # compiling the training step (done once more with the final schedule)
    step_s: float  # one training step, batch included
    eval_s: float  # one evaluation (with its samples)


def parse_duration(text: str | None) -> float | None:
    """Seconds in "90s", "30m", "1.5h" or "1h30m"; None for None (no budget)."""
    if text is None:
        return None
    spec = text.strip().lower()
    if not DURATION.fullmatch(spec):
        raise TrainError(
            f"--time-budget {text!r} is not a duration: give a number and a unit (s, m or h), "
            "e.g. 90s, 30m, 1.5h or 1h30m"
        )
    seconds = sum(
        float(number) * UNIT_SECONDS[unit] for number, unit in re.findall(r"([\d.]+)([hms])", spec)
    )
    if seconds <= 0:
        raise TrainError(f"--time-budget {text!r} is no time at all: give e.g. 90s, 30m or 1h")
    return seconds


def steps_within(budget_s: float, spent_s: float, timings: Timings, eval_every: int) -> int:
    """The most steps n for which what is left fits the budget: one more compilation, n steps
    (each STEP_MARGIN times the timed one), and the evaluations every `eval_every` steps and
    at the end (at least 1 step)."""
    left = budget_s - spent_s - timings.compile_s - timings.eval_s  # the final evaluation
    per_step = STEP_MARGIN * timings.step_s + timings.eval_s / eval_every
    return max(1, math.floor(left / per_step))


def time_steps(step: Callable[[int], None], sync: Callable[[], None]) -> tuple[float, float]:
    """(compile or warm-up seconds, seconds a step) of `step(0)`, `step(1)`, ...: WARM_STEPS to
    compile and warm up, then TIMED_STEPS timed; `sync` waits for the work dispatched so far."""
    times = [time.perf_counter()]
    for steps in (range(WARM_STEPS), range(WARM_STEPS, WARM_STEPS + TIMED_STEPS)):
        for index in steps:
            step(index)
        sync()
        times.append(time.perf_counter())
    step_s = (times[2] - times[1]) / TIMED_STEPS
    return max(0.0, times[1] - times[0] - WARM_STEPS * step_s), step_s


def measure(run: Run) -> Timings:
    """Time the run's compiled step and evaluation on a copy of its state (left untouched)."""
    states = [jax.tree.map(jnp.copy, run.state)]  # the step donates its input: not run.state

    def step(index: int) -> None:
        states.append(run.advance(states.pop(), index)[0])

    compile_s, step_s = time_steps(step, lambda: jax.block_until_ready(states))
    trial = states[0]

    # An evaluation's time grows with its tokens: time one batch's worth (after compiling it
    # once) and scale up to the tokens each evaluation reads.
    config = run.config
    batch_tokens = config.batch_size * run.model_config.block_size
    run.evaluate(trial, max_tokens=batch_tokens)
    started = time.perf_counter()
    run.evaluate(trial, max_tokens=batch_tokens)
    tokens = min(config.eval_tokens or math.inf, len(run.corpus.val.tokens))
    eval_s = (time.perf_counter() - started) * math.ceil(tokens / batch_tokens)
    if run.is_main and config.samples:
        started = time.perf_counter()  # the first samples compile the generator: an upper bound
        run.samples()
        eval_s += time.perf_counter() - started
    return Timings(compile_s=compile_s, step_s=step_s, eval_s=eval_s)


def fit_to_budget(run: Run, budget_s: float, started: float) -> int:
    """The step count of a run whose training began at `started` (time.perf_counter), the
    same on every process (process 0's), logged and kept in RUN/budget.json."""
    timings = measure(run)
    spent = time.perf_counter() - started
    steps = steps_within(budget_s, spent, timings, run.config.eval_every)
    # Processes time themselves differently, and all must run the same number of steps.
    steps = int(multihost_utils.broadcast_one_to_all(np.int32(steps)))
    if run.is_main:
        # Unrounded: the steps are recomputed from these exactly (tests/test_training_budget.py).
        record = {"steps": steps, "budget_s": budget_s, "spent_s": spent, **asdict(timings)}
        (run.folder / BUDGET_FILE).write_text(json.dumps(record, indent=2) + "\n")
        print(
            f"time budget {budget_s:.0f} s: {timings.step_s * 1000:.1f} ms a step, "
            f"{timings.eval_s:.1f} s an evaluation, {spent:.0f} s spent timing them and "
            f"compiling: training for {steps} steps"
        )
    return steps


def chosen_steps(folder: Path) -> int | None:
    """The step count a budgeted run in `folder` chose when it started, if it got that far."""
    path = folder / BUDGET_FILE
    return int(json.loads(path.read_text())["steps"]) if path.is_file() else None
