"""Snapshots: copies of the weights at a few points of a run, for the app's
"attention over training" (the same prompt and seed replayed on each, to see heads form).

During training, `save_snapshot` writes RUN/snapshots/step-NNNNNN.safetensors (float16) at
the steps `snapshot_steps` picks (--snapshots: fractions of the run's steps). At export they
go into the model folder in int8 (model/snapshots.py quantize: each snapshot of the shipped
model takes 5.3 MB) with each one's head roles. To add a run's snapshots
to a folder exported without them (a run trained from scratch with --tokenizer-from FOLDER,
whose token ids are the folder's):

    python -m training.snapshots FOLDER --run RUN --note "what run this was"

It finds their head roles on the folder's validation jokes (the data must be there).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from data.tokenizer import encode_batch, end_of_joke_id
from model.checkpoint import model_from_parameters, parameters_to_flat
from model.gpt import GPT
from model.roles import find_roles
from model.snapshots import Snapshot, Snapshots, quantize, save_snapshots
from training.config import TrainError
from training.folder_data import read_folder_and_data

SNAPSHOTS = "snapshots"  # the folder of a run that holds them
FILE = re.compile(r"step-(\d{6})\.safetensors")
ROLE_JOKES = 256  # validation jokes the roles are found on, as for the exported model


def snapshot_steps(fractions: str, steps: int) -> list[int]:
    """The steps --snapshots names: each fraction of `steps`, at least step 1, once each."""
    if not fractions.strip():
        return []
    try:
        values = [float(part) for part in fractions.split(",")]
    except ValueError:
        values = [-1.0]
    if not all(0 < f <= 1 for f in values):
        raise TrainError(
            f"--snapshots {fractions!r} should be fractions of the run, each above 0 and at "
            "most 1, separated by commas (e.g. 0.01,0.1,1), or empty for none"
        )
    return sorted({max(1, round(f * steps)) for f in values})


def save_snapshot(run_folder: Path, step: int, model: GPT) -> Path:
    """Write the weights of `model` at `step` as float16 into RUN/snapshots."""
    folder = run_folder / SNAPSHOTS
    folder.mkdir(exist_ok=True)
    # Replicated on every device: the first local copy is the whole array, on any host.
    tensors = {
        name: np.asarray(v.addressable_data(0)) for name, v in parameters_to_flat(model).items()
    }
    path = folder / f"step-{step:06d}.safetensors"
    save_file({name: v.astype(np.float16) for name, v in tensors.items()}, path)
    return path


def run_snapshots(run_folder: Path, last_step: int) -> list[tuple[int, dict[str, np.ndarray]]]:
    """(step, float16 weights) of each snapshot the run kept up to `last_step`, in order (a
    resumed run may have kept some of an earlier, longer plan)."""
    kept = []
    for path in sorted((run_folder / SNAPSHOTS).glob("step-*.safetensors")):
        match = FILE.fullmatch(path.name)
        if match and int(match.group(1)) <= last_step:
            kept.append((int(match.group(1)), load_file(path)))
    return kept


def with_roles(
    model: GPT,
    kept: list[tuple[int, dict[str, np.ndarray]]],
    steps: int,
    tokens_per_step: int,
    jokes: list[list[int]],
    note: str,
) -> Snapshots:
    """The kept snapshots of a run of `steps` steps, each with its heads' roles on `jokes`
    (token ids opening with the end-of-joke token); `model` gives the shapes."""
    start = jokes[0][0]
    snapshots = []
    for step, weights in kept:
        tensors, scales = quantize(weights)
        shipped = Snapshot(step, step / steps, step * tokens_per_step, tensors, scales, None)
        # The roles of the weights the app will replay: the compact ones.
        roles = find_roles(model_from_parameters(model, shipped.weights()), jokes, start)
        snapshots.append(dataclasses.replace(shipped, roles=roles))
    return Snapshots(note, snapshots)


def main(argv: list[str] | None = None) -> int:
    read = read_folder_and_data(
        "python -m training.snapshots",
        "Add a training run's snapshots (RUN/snapshots) to a model folder, with their head "
        "roles, for the app's attention over training. Needs the data the folder names.",
        argv,
        extra=[
            ("--run", {"type": Path, "required": True, "help": "run folder with snapshots/"}),
            ("--note", {"default": "", "help": "which run they come from, shown in the app"}),
        ],
    )
    if read is None:
        return 1
    run, model = read.args.run, read.model
    steps = sorted(
        int(m.group(1)) for p in (run / SNAPSHOTS).glob("*") if (m := FILE.fullmatch(p.name))
    )
    if not steps:
        print(
            f"error: {run / SNAPSHOTS} holds no snapshots: train with --snapshots", file=sys.stderr
        )
        return 1
    kept = run_snapshots(run, max(steps))
    end = end_of_joke_id(read.tokenizer)
    jokes = [[end, *ids] for ids in encode_batch(read.tokenizer, read.jokes.val[:ROLE_JOKES])]
    batch = read.metadata.get("train_config", {}).get("batch_size", 0)
    note = read.args.note or f"the run in {run}"
    save_snapshots(
        read.folder,
        with_roles(model, kept, max(steps), batch * model.config.block_size, jokes, note),
    )
    print(f"{read.folder}: {len(kept)} snapshots added (steps {', '.join(map(str, steps))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
