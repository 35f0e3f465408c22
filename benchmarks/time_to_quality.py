"""Time to quality: validation bits per character against seconds of training, for the
project's default recipe and a nanoGPT-style PyTorch reference, one after the other.

    python -m benchmarks.time_to_quality            # 5 min project, 10 min reference (+ evals)
    python -m benchmarks.time_to_quality --quick    # tiny preset, 20 s + 40 s: about 2 min
    python -m benchmarks.time_to_quality --quick -- --n-layer 1 --d-model 32   # train.py flags

1. The project: what `python train.py --preset small` runs (the default recipe under the
   preset's training settings, read at run time; flags after `--` are train.py's), through
   training.run.Run: its corpus, model, optimizer, compiled step and batches. As --time-budget
   does (training/budget.py), it plans its step count (the schedule's length) from the pace of
   its own steps, again every 10 steps until the cooldown needs it, to end with the budget.
2. The reference: benchmarks/torch_reference.py at the same sizes, nanoGPT's recipe (AdamW 1e-3,
   50 warmup steps, cosine to 1e-4, beta2 0.99, weight decay 0.1 on 2-D weights, clip 1.0, no
   dropout, no biases, learned positions, batch 32), its cosine's length planned the same way.

Same data, tokenizer and validation: both train on data.packing.train_batch's rows (same seed:
the same batches, every joke from its own start, loss on real targets only) with the tokenizer
prepare_corpus trained once (cached), and both are validated by the same function: joke_batches
over the validation split (capped at --eval-tokens), bits per character = summed NLL / ln 2 /
joke_chars. The clock counts training only (timing, compiling, batches, steps), not data
preparation or evaluation. benchmarks/README.md has the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import glob
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from benchmarks.speed import machine
from data import Batch, TokenStream, joke_batches, joke_chars, train_batch
from data.packing import jokes_within
from model.host_memory import reuse_freed_memory
from model.loss import loss_figures
from training import cli
from training.average import averaged_model_state
from training.budget import StepPlan
from training.config import TrainConfig, parse_args
from training.distributed import process_rows
from training.run import Run
from training.steps import model_state

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
FULL_DATA = ("short-jokes/*.csv", "stupidstuff.json", "rjokes-dev.tsv.gz")
QUICK_DATA = ("short-jokes/onelinefun.csv", "short-jokes/reddit-cleanjokes.csv")  # a slice
NllOf = Callable[[Batch], tuple[float, float]]  # a batch -> (summed NLL, targets counted)
Sync = Callable[[], None]  # waits until the work dispatched so far is done
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "time_to_quality.json"
# Flags of Settings' fields: (type, --quick's value, help).
OPTIONS: dict[str, tuple[type, Any, str]] = {
    "preset": (str, "tiny", "model preset of both sides"),
    "project_minutes": (float, 1 / 3, "the project's minutes of training"),
    "reference_minutes": (float, 2 / 3, "the reference's minutes of training"),
    "eval_every": (float, 10.0, "seconds of training between evaluations"),
    "eval_tokens": (int, 8192, "validation tokens per evaluation; None: TrainConfig's"),
}


@dataclasses.dataclass
class Settings:
    """What a run compares; train_flags: train.py's flags for the project's side."""

    data: list[str]  # [] means the built-in jokes
    preset: str = "small"
    project_minutes: float = 5.0
    reference_minutes: float = 10.0
    eval_every: float = 60.0
    eval_tokens: int | None = None
    quick: bool = False
    train_flags: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class NanoGPTRecipe:
    """The reference's schedule and batch; AdamW's beta2 0.99, weight decay 0.1 on 2-D weights
    and clipping at 1.0 are torch_reference.TrainStep's own."""

    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-4
    warmup_steps: int = 50
    batch_size: int = 32


class Curve:
    """Validation figures against seconds of training alone: the clock stops to evaluate."""

    def __init__(self, evaluate: Callable[[], dict[str, float]], eval_every_s: float) -> None:
        self.evaluate, self.eval_every_s = evaluate, eval_every_s
        self.points = [{"seconds": 0.0, "step": 0, **evaluate()}]  # before training
        self.total, self.since = 0.0, time.perf_counter()  # the clock starts now

    @property
    def seconds(self) -> float:
        return self.total + (0.0 if self.since is None else time.perf_counter() - self.since)

    def point(self, step: int, sync: Sync) -> None:
        sync()  # the steps dispatched so far are done before the clock stops
        self.total, self.since = self.seconds, None
        self.points.append({"seconds": self.total, "step": step, **self.evaluate()})
        print(f"{self.total:8.1f} s  step {step:6,}  {self.points[-1]['bpc']:.4f} bits/char")

    def follow(self, plan: StepPlan, done: int, side: str, sync: Sync = lambda: None) -> int:
        """The step count after `done` steps: `plan`'s clock starts after the first step (which
        compiles), then it plans again every log_every steps until it is final."""
        if plan.started is None:
            sync()
            plan.start(done, self.seconds)
        elif not plan.fixed and done % plan.config.log_every == 0:
            sync()
            plan.plan(done, self.seconds, self.seconds)
            if plan.fixed:
                print(f"{side}: {plan.step_s * 1000:.0f} ms a step: {plan.steps:,} steps")
        return plan.steps

    def train(
        self,
        advance: Callable[[int], None],
        steps: Callable[[], int],
        budget_s: float,
        sync: Sync = lambda: None,
    ) -> None:
        """Steps 0, 1, ... until `steps()` (asked after every step: a plan may change it) or
        the budget's end (at least one), evaluating every `eval_every_s` seconds of training
        and at the end."""
        step, next_eval = 0, self.seconds + self.eval_every_s
        while step < steps() and (step == 0 or self.seconds < budget_s):
            advance(step)
            step += 1
            if step < steps() and next_eval <= self.seconds < budget_s:
                self.point(step, sync)
                self.since = time.perf_counter()
                next_eval = self.seconds + self.eval_every_s
        self.point(step, sync)


def joke_by_joke(
    nll_of: NllOf, stream: TokenStream, rows: int, block: int, cap: int | None
) -> dict[str, float]:
    """Both sides' validation: batches of `rows` rows of every joke from its own start (the
    first `cap` targets), NLL summed over real targets; bits per character over joke_chars."""
    total = count = 0.0
    for batch in joke_batches(stream, rows, block, cap):
        nll, n = nll_of(batch)
        total, count = total + nll, count + n
    figures = loss_figures(total, count, joke_chars(stream, block, cap))
    return {"bpc": figures["val_bpc"], "loss": figures["val_loss"]}


def train_project(
    config: TrainConfig, budget_s: float, eval_every_s: float, eval_tokens: int | None
) -> tuple[dict[str, Any], Run]:
    """The project's curve, trained through training.run.Run (which prepares the corpus)."""
    run = Run(config, resume=False)

    def figures(weights: nnx.State) -> dict[str, float]:
        def nll_of(batch: Batch) -> tuple[float, float]:
            placed = Batch(*(run.parallel.shard(process_rows(array)) for array in batch))
            return tuple(float(value) for value in run.eval_step(weights, placed))

        block_size = run.model_config.block_size
        return joke_by_joke(nll_of, run.corpus.val, config.batch_size, block_size, eval_tokens)

    def evaluate() -> dict[str, float]:
        point = figures(model_state(run.state))
        averaged = averaged_model_state(run.graphdef, run.state)
        if averaged is not None:  # --ema-decay: the export keeps the better of the two
            point["ema_bpc"] = figures(averaged)["bpc"]
            point["bpc"] = min(point["bpc"], point["ema_bpc"])
        return point

    curve = Curve(evaluate, eval_every_s)
    plan = StepPlan(budget_s, config, config.steps)  # as --time-budget plans (training/budget.py)
    pending: list[jax.Array] = []
    sync = lambda: jax.block_until_ready(run.state)  # noqa: E731

    def advance(step: int) -> None:
        run.state, metrics = run.advance(run.state, step)
        if pending and not math.isfinite(float(pending.pop())):  # a step behind: no stall
            raise RuntimeError(f"the project's loss diverged before step {step}")
        pending.append(metrics["loss"])
        config.steps = curve.follow(plan, step + 1, "project", sync)

    curve.train(advance, lambda: config.steps, budget_s, sync)
    return {
        "recipe": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("data", "out")},
        "model": run.model_config.to_dict(),
        "parameters": run.n_params,
        "step_ms": None if plan.step_s is None else 1000 * plan.step_s,
        "steps_planned": config.steps,
        "curve": curve.points,
    }, run


def nanogpt_lr(recipe: NanoGPTRecipe, steps: int) -> Callable[[int], float]:
    """nanoGPT's get_lr: linear warmup, then a cosine from the peak to the minimum at `steps`."""
    top, bottom, warmup = recipe.learning_rate, recipe.min_learning_rate, recipe.warmup_steps

    def lr(step: int) -> float:
        if step < warmup:
            return top * (step + 1) / (warmup + 1)
        ratio = min(1.0, (step - warmup) / max(1, steps - warmup))
        return bottom + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (top - bottom)

    return lr


def train_reference(
    run: Run, recipe: NanoGPTRecipe, budget_s: float, eval_every_s: float, eval_tokens: int | None
) -> dict[str, Any]:
    """The reference's curve on the project's corpus and batches; a note if torch is missing."""
    try:
        from benchmarks.torch_reference import COMPONENTS, make_train_step, summed_nll, torch
    except ImportError:
        return {"note": "not installed", "curve": []}
    torch.set_num_threads(os.cpu_count())
    # The sizes of the project's model with nanoGPT's components, no biases and no dropout.
    sizes = dataclasses.replace(run.model_config, dropout=0.0, bias=False, **COMPONENTS)
    train, val, seed = run.corpus.train, run.corpus.val, run.config.seed

    def tensors(batch: Batch) -> list[torch.Tensor]:
        return [torch.from_numpy(np.asarray(array, np.int64)) for array in batch]

    def rows(step: int) -> list[torch.Tensor]:
        return tensors(train_batch(train, step, recipe.batch_size, sizes.block_size, seed))

    def evaluate() -> dict[str, float]:
        def nll_of(batch: Batch) -> tuple[float, float]:
            nll, count = summed_nll(trainer.model, *tensors(batch))
            return float(nll), float(count)

        trainer.model.eval()
        with torch.no_grad():
            point = joke_by_joke(nll_of, val, run.config.batch_size, sizes.block_size, eval_tokens)
        trainer.model.train()
        return point

    trainer = make_train_step(sizes, recipe.learning_rate, seed=seed)
    curve = Curve(evaluate, eval_every_s)
    # Planned as the project's step count, for nanoGPT's schedule (a cosine after its warmup).
    schedule = TrainConfig(schedule="cosine", warmup_steps=recipe.warmup_steps)
    plan = StepPlan(budget_s, schedule, run.config.steps)  # a provisional count
    trainer.schedule = lambda step: nanogpt_lr(recipe, plan.steps)(step)

    def advance(step: int) -> None:
        if not math.isfinite(trainer(*rows(step))):
            raise RuntimeError(f"the reference's loss diverged at step {step}")
        curve.follow(plan, step + 1, "reference")

    curve.train(advance, lambda: plan.steps, budget_s)
    return {
        "recipe": {**dataclasses.asdict(recipe), "beta2": 0.99, "weight_decay_2d": 0.1},
        "model": sizes.to_dict(),
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "step_ms": None if plan.step_s is None else 1000 * plan.step_s,
        "steps_planned": plan.steps,
        "curve": curve.points,
    }


def default_data(quick: bool) -> list[str]:
    """The shared corpora (a slice of them with --quick) where present; [] is the built-in."""
    names = QUICK_DATA if quick else FULL_DATA
    return [str(SHARED_DATA / name) for name in names if glob.glob(str(SHARED_DATA / name))]


def run_benchmark(settings: Settings, recipe: NanoGPTRecipe = NanoGPTRecipe()) -> dict[str, Any]:
    """Both sides, the project first, and the verdict."""
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    results: dict[str, Any] = {"date": date, "machine": machine()}
    project_s, reference_s = 60 * settings.project_minutes, 60 * settings.reference_minutes
    data, eval_every_s = settings.data, settings.eval_every
    with tempfile.TemporaryDirectory(prefix="time-to-quality-") as out:
        argv = ["--preset", settings.preset, "--out", out, *(["--data", *data] if data else [])]
        config, _ = parse_args([*argv, *settings.train_flags], cli.__doc__)
        tokens = config.eval_tokens if settings.eval_tokens is None else settings.eval_tokens
        settings.eval_tokens = eval_tokens = tokens or None  # 0: the whole split
        results["settings"] = dataclasses.asdict(settings)
        results["project"], run = train_project(config, project_s, eval_every_s, eval_tokens)
        corpus, block_size = run.corpus, run.model_config.block_size
        results["data"] = {
            "sources": corpus.sources,
            "train_jokes": corpus.n_train_jokes,
            "train_tokens": len(corpus.train.tokens),
            "val_jokes": corpus.n_val_jokes,
            "val_jokes_evaluated": jokes_within(corpus.val, block_size, eval_tokens),
            "val_chars_evaluated": joke_chars(corpus.val, block_size, eval_tokens),
            "vocab_size": corpus.tokenizer.get_vocab_size(),
        }
        run.state = None  # free the project's arrays before the reference trains
        results["reference"] = train_reference(run, recipe, reference_s, eval_every_s, eval_tokens)
    results["goal"] = verdict(results)
    return results


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    """The goal: the project's last figure (its budget) at least as good as the reference's."""
    settings, reference = results["settings"], results["reference"]["curve"]
    minutes = settings["project_minutes"], settings["reference_minutes"]
    goal = "the project's bits/char after {:.3g} min <= the reference's after {:.3g} min"
    goal = goal.format(*minutes)
    project_bpc = results["project"]["curve"][-1]["bpc"]
    reference_bpc = reference[-1]["bpc"] if reference else None
    met = None if reference_bpc is None else project_bpc <= reference_bpc
    return {"goal": goal, "project_bpc": project_bpc, "reference_bpc": reference_bpc, "met": met}


def table(results: dict[str, Any]) -> str:
    """Bits per character against seconds of training, both sides, and the verdict."""
    lines = [
        "| training s | project step | project bits/char | reference step | reference bits/char |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [(p, 0) for p in results["project"]["curve"]]
    rows += [(p, 1) for p in results["reference"]["curve"]]
    for point, side in sorted(rows, key=lambda row: (row[0]["seconds"], row[1])):
        cells = ["", "", "", ""]
        cells[2 * side : 2 * side + 2] = [f"{point['step']:,}", f"{point['bpc']:.4f}"]
        lines.append(f"| {point['seconds']:.1f} | " + " | ".join(cells) + " |")
    goal, note = results["goal"], results["reference"].get("note")
    outcome = {True: "met", False: "MISSED", None: f"n/a, torch {note}"}[goal["met"]]
    bpc = {side: goal[f"{side}_bpc"] for side in ("project", "reference")}
    figures = ", ".join(f"{side} {value:.4f}" for side, value in bpc.items() if value is not None)
    return "\n".join(lines) + f"\n\nGoal: {goal['goal']}: {outcome} ({figures} bits/char)"


def plot(results: dict[str, Any], path: Path) -> Path:
    """A PNG of both curves: bits per character against seconds of training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for side, label in (("project", "Punchline (JAX)"), ("reference", "nanoGPT-style (PyTorch)")):
        if curve := results[side]["curve"]:
            ax.plot([p["seconds"] for p in curve], [p["bpc"] for p in curve], "o-", label=label)
    ax.set(xlabel="seconds of training (evaluations left out)", ylabel="bits per character")
    ax.set_title("Time to quality: same data, tokenizer and validation jokes")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    reuse_freed_memory()  # before JAX's first computation starts its threads
    getattr(sys.stdout, "reconfigure", lambda **_: None)(line_buffering=True)  # show progress
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.time_to_quality",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--quick", action="store_true", help="tiny models, a slice of the data")
    data_help = "joke files/globs (default: ../shared/data's corpora, --quick a slice; or built-in)"
    parser.add_argument("--data", nargs="+", help=data_help)
    for name, (kind, quick, text) in OPTIONS.items():
        default, quick = getattr(Settings([]), name), f"{quick:.2g}" if kind is float else quick
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=kind, help=f"{text} (default {default}, --quick {quick})")
    json_help = f"results (default {DEFAULT_JSON.relative_to(ROOT)}); the .png plot beside"
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=json_help)
    parser.add_argument("train_flags", nargs="*", help="after --: train.py flags for the project")
    args = parser.parse_args(argv)
    quick = {name: value for name, (_, value, _) in OPTIONS.items()} if args.quick else {}
    given = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    data = args.data if args.data is not None else default_data(args.quick)
    settings = Settings(data, quick=args.quick, train_flags=args.train_flags, **(quick | given))
    results = run_benchmark(settings)
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json} and {plot(results, args.json.with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
