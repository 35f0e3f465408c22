"""Train (or fine-tune) a Punchline model: one command, CPU, GPU or TPU, one or many hosts.

    python train.py                                   # tiny model on the built-in jokes
    python train.py --data ../shared/data --preset small --out runs/small
    python train.py --out runs/small --resume         # continue a killed run
    python train.py --init-from checkpoints/punchline --data my_jokes.txt \\
        --out runs/mine --steps 300 --learning-rate 3e-4  # fine-tune on your own jokes

`main` is `python train.py`: the first paragraph above is its --help description, the
examples its epilog (train.py's docstring repeats them). Errors the user can mend end the
run with one line and exit code 1; Ctrl-C with exit code 130 and how to resume.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax

from data import DataError
from model.checkpoint import CheckpointError
from model.config import ConfigError
from model.host_memory import reuse_freed_memory
from training.config import TrainError, parse_args
from training.distributed import initialize_distributed
from training.export import export_model, plot_loss_curve
from training.folder import saved_config
from training.run import Run


def main(argv: list[str] | None = None) -> int:
    reuse_freed_memory()  # before JAX's first computation starts its threads
    config, args = parse_args(argv, __doc__)
    try:
        initialize_distributed(args)
        if args.resume:
            # A resumed run keeps the configuration it started with (a budgeted one the step
            # count it chose); only --steps may change, to extend it, ending any time budget.
            saved = saved_config(Path(config.out))
            if saved is not None:
                config = saved
                if args.steps is not None:
                    config.steps, config.time_budget = args.steps, None
        started = time.perf_counter()
        run = Run(config, resume=args.resume)
        if run.is_main:
            print(
                f"model: {run.n_params:,} parameters, {run.model_config}\n"
                f"data: {run.corpus.n_train_jokes:,} training jokes, "
                f"{len(run.corpus.train.tokens):,} tokens; {run.corpus.n_val_jokes:,} validation "
                f"jokes\ndevices: {jax.device_count()} x {jax.devices()[0].platform}, "
                f"{jax.process_count()} process(es); starting at step {run.step}"
            )
        figures = run.train()
        if run.is_main:
            folder = export_model(run, figures, time.perf_counter() - started)
            plot_loss_curve(run.folder)
            summary = ", ".join(f"{k} {v:.4f}" for k, v in figures.items())
            print(f"exported {folder} ({summary}) in {time.perf_counter() - started:.0f} s")
    except (TrainError, DataError, ConfigError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: progress saved in {config.out}; continue with "
            f"`python train.py --out {config.out} --resume`",
            file=sys.stderr,
        )
        return 130
    return 0
