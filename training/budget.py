"""--time-budget: a run whose step count is planned from its own pace, to end with the budget.

A schedule needs the run's step count: warmup-stable-decay's cooldown ends with the run,
the cosine reaches its minimum there. The count is an input of the compiled step, not a
constant compiled into it (training/steps.py), so a budgeted run does not time throwaway
steps first: it trains from step 0 with a provisional count (--steps) and plans the count from
the pace of its own steps, at every log, for as long as the schedule does not depend on it
yet (training.optimizer.settles_at: the warmup, and for wsd the flat part). The plan that
comes before that point is final, so every step the run takes is the step a run given that
--steps would take. (A plan that comes too late, for a cosine whose warmup ends before the
first log, leaves the steps before it on the provisional count.)

Each plan fits what is left of the budget: the steps at their pace so far (evaluations left
out), an evaluation every --eval-every steps and one at the end (timed once, on one batch).
It goes to RUN/budget.json, where --resume finds it: a resumed run keeps the count.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from jax.experimental import multihost_utils

from training.config import TrainConfig, TrainError
from training.optimizer import settles_at

if TYPE_CHECKING:
    from training.run import Run

BUDGET_FILE = "budget.json"
# The steps still to come are planned this much slower than the pace so far: a 2-core machine
# shared with others varies (chunks of 20 steps took 426 to 527 ms on 2026-12-05), and a run
# cut off by its budget misses the end of its cooldown. Only the steps after the last plan
# (the cooldown, a fifth of a wsd run) are at risk, so the margin costs about 1% of the steps.
STEP_MARGIN = 1.05
UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
DURATION = re.compile(r"(?:\d+(?:\.\d+)?[hms])+")


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


def steps_within(
    budget_s: float, spent_s: float, step: int, step_s: float, eval_s: float, eval_every: int
) -> int:
    """The step count of a run at `step`, `spent_s` into its budget, that ends with it: the
    steps left at STEP_MARGIN times `step_s` each with an evaluation (`eval_s`) every
    `eval_every` steps, and one more evaluation at the end. At least one step more than
    `step`."""
    left = budget_s - spent_s - eval_s  # the final evaluation
    per_step = STEP_MARGIN * step_s + eval_s / eval_every
    return step + max(1, math.floor(left / per_step))


@dataclass
class StepPlan:
    """A budgeted run's step count, planned again at each log until the schedule needs it.

    The caller says when the pace starts to count (`start`: after the first step, which
    compiles) and, at each log, how far the run is (`plan`). Times are seconds since training
    began: `spent_s` all of it, `train_s` without the evaluations.
    """

    budget_s: float
    config: TrainConfig
    steps: int  # the count planned last (at first the provisional one the run starts with)
    eval_s: float = 0.0  # one evaluation, with its samples
    fixed: bool = False  # the schedule needs the count from the next log on: no more plans
    step_s: float | None = None  # the pace of the steps so far
    started: tuple[int, float] | None = None  # (step, train_s) where the pace starts to count
    planned_at: tuple[int, float] | None = None  # (step, spent_s) of the last plan

    def start(self, step: int, train_s: float) -> None:
        self.started = (step, train_s)

    def plan(self, step: int, train_s: float, spent_s: float) -> int:
        """The step count that ends with the budget, the same on every process (process 0's);
        it becomes final when the next log would come after the schedule needs it."""
        first_step, first_s = self.started
        self.step_s = (train_s - first_s) / (step - first_step)
        steps = steps_within(
            self.budget_s, spent_s, step, self.step_s, self.eval_s, self.config.eval_every
        )
        # Processes time themselves differently, and all must run the same number of steps.
        self.steps = int(multihost_utils.broadcast_one_to_all(np.int32(steps)))
        self.fixed = step + self.config.log_every > settles_at(self.config, self.steps)
        self.planned_at = (step, spent_s)
        return self.steps


def time_evaluation(run: Run) -> float:
    """Seconds one evaluation of the run's current state takes, with its samples.

    An evaluation's time grows with its tokens: time one batch's worth (after compiling it
    once) and scale up to the tokens each evaluation reads."""
    config = run.config
    batch_tokens = config.batch_size * run.model_config.block_size
    run.evaluate(max_tokens=batch_tokens)
    started = time.perf_counter()
    run.evaluate(max_tokens=batch_tokens)
    tokens = min(config.eval_tokens or math.inf, len(run.corpus.val.tokens))
    eval_s = (time.perf_counter() - started) * math.ceil(tokens / batch_tokens)
    if run.is_main and config.samples:
        started = time.perf_counter()  # the first samples compile the generator: an upper bound
        run.samples()
        eval_s += time.perf_counter() - started
    return eval_s


def write_plan(folder: Path, plan: StepPlan) -> None:
    """RUN/budget.json: the count planned last, and what the plan was made of."""
    step, spent_s = plan.planned_at
    record = {
        "steps": plan.steps,
        "final": plan.fixed,
        "planned_at_step": step,
        "budget_s": plan.budget_s,
        "spent_s": spent_s,
        "step_s": plan.step_s,
        "eval_s": plan.eval_s,
    }
    (folder / BUDGET_FILE).write_text(json.dumps(record, indent=2) + "\n")


def chosen_steps(folder: Path) -> int | None:
    """The step count a budgeted run in `folder` planned last, if it got that far."""
    path = folder / BUDGET_FILE
    return int(json.loads(path.read_text())["steps"]) if path.is_file() else None
