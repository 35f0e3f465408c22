"""The run folder (--out): its files, the checks before a run may use it, and the metrics log.

    RUN/train_config.json   the TrainConfig the run started with (--resume reads it back)
    RUN/metrics.jsonl       one JSON record per logged step (training loss, throughput, ...)
    RUN/tokenizer.json      RUN/data_report.md    RUN/loss.png
    RUN/budget.json         --time-budget: the step count planned and the pace behind it
    RUN/state/              Orbax training checkpoints (training/state.py)
    RUN/model/              the exported model folder (training/export.py)

Process 0 writes every file but the checkpoints, which each process writes its part of.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
from jax.experimental.multihost_utils import sync_global_devices

from training.config import TrainConfig, TrainError

TRAIN_CONFIG = "train_config.json"
METRICS = "metrics.jsonl"


def prepare_folder(folder: Path, config: TrainConfig, resume: bool) -> None:
    """Check that the run may use `folder`, then (process 0) start a new run's files there."""
    saved = folder / TRAIN_CONFIG
    if resume and not saved.is_file():
        raise TrainError(f"nothing to resume in {folder}: no {TRAIN_CONFIG}; drop --resume")
    if not resume and (folder / "state").exists():
        raise TrainError(
            f"{folder} already holds a run: pass --resume to continue it, or choose another --out"
        )
    try:
        # Every process writes its part of each checkpoint, so every process checks
        # (with its own probe file, so that none deletes another's).
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{jax.process_index()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise TrainError(
            f"cannot write to {folder} ({error.strerror}): choose another --out"
        ) from None
    # Only now may process 0 change the folder: a process still checking would take the
    # state/ folder this run is about to create for an earlier run's. (On CPU this first
    # barrier also connects the processes' gloo collectives, which must happen within
    # 30 s of each other; later collectives wait as long as they need to.)
    sync_global_devices("run folder checked")
    if jax.process_index() != 0:
        return
    if not resume:
        saved.write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
        (folder / METRICS).unlink(missing_ok=True)


def saved_config(folder: Path) -> TrainConfig | None:
    """The TrainConfig the run in `folder` started with, if it has one."""
    saved = folder / TRAIN_CONFIG
    if not saved.is_file():
        return None
    # Runs started before --recipe existed left the model's components unset for the classic
    # defaults to fill in; read them so, not with today's default recipe.
    return TrainConfig(**{"recipe": "classic", **json.loads(saved.read_text())})


def append_record(folder: Path, record: dict[str, Any]) -> None:
    with open(folder / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / METRICS).read_text().splitlines() if line]


def drop_records_after(folder: Path, step: int) -> None:
    """Resuming from the checkpoint of `step`: the steps after it will be trained again."""
    metrics = folder / METRICS
    if metrics.is_file():
        kept = [
            line
            for line in metrics.read_text().splitlines()
            if line and json.loads(line)["step"] <= step
        ]
        metrics.write_text("".join(line + "\n" for line in kept))
