"""Training snapshots in a model folder: the weights at a few steps of a run, compact, with
what their heads did then, for the app's attention over training (serving/training_replay.py).

    snapshot-STEP.safetensors  one per snapshot: its matrices as int8 with a float32 scale per
                           column (`quantize`, under "NAME@scale"), its vectors as float16;
                           about 5.3 MB each for the shipped model
    snapshots.json         their steps, fractions of the run, tokens seen, head roles, and a
                           note on the run they come from

Both are signed in the folder's manifest like its other files (model/checkpoint.py); a set
that cannot be used is refused with the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from model.checkpoint import (
    SNAPSHOT_FILE,
    SNAPSHOT_INDEX,
    CheckpointError,
    parameters_to_flat,
    sign,
)
from model.gpt import GPT
from model.roles import HeadRoles

SNAPSHOTS_FORMAT = "punchline-snapshots-v1"
SNAPSHOTS_FIX = "python -m training.snapshots FOLDER --run RUN"  # adds a run's snapshots again
SCALE = "@scale"  # a snapshot matrix's scales are stored under its name and this suffix

INT8_LEVELS = 127  # a snapshot's matrix entry is round(w / scale), scale = column max / 127


def quantize(weights: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Compact weights for a snapshot: each matrix as int8 with one float32 scale per column
    (its largest magnitude / 127), the vectors (biases, norms) as float16. About a quarter of
    float32's bytes; a matrix entry moves by at most half its column's scale."""
    tensors, scales = {}, {}
    for name, value in weights.items():
        value = np.asarray(value, np.float32)
        if value.ndim == 2:
            scale = np.maximum(np.abs(value).max(axis=0), 1e-12) / INT8_LEVELS  # (columns,)
            tensors[name] = np.rint(value / scale).astype(np.int8)
            scales[name] = scale.astype(np.float32)
        else:
            tensors[name] = value.astype(np.float16)
    return tensors, scales


@dataclass(frozen=True)
class Snapshot:
    """The weights at one step of a training run, and what their heads did then."""

    step: int
    fraction: float  # of the run's steps
    tokens_seen: int
    tensors: dict[str, np.ndarray]  # by parameter name, as `quantize` stores them
    scales: dict[str, np.ndarray]  # float32, one per column of each int8 matrix
    roles: HeadRoles  # found on `weights()`

    def weights(self) -> dict[str, np.ndarray]:
        """The weights as float32, by parameter name (parameters_to_flat's)."""
        return {
            name: value.astype(np.float32) * self.scales[name] if name in self.scales
            else value.astype(np.float32)
            for name, value in self.tensors.items()
        }  # fmt: skip


@dataclass(frozen=True)
class Snapshots:
    note: str  # which run they come from
    snapshots: list[Snapshot]  # in the order of their steps


def snapshot_file(step: int) -> str:
    """The name of the weights file of the training snapshot at `step`."""
    return f"snapshot-{step}.safetensors"


def _write_snapshots(folder: Path, snapshots: Snapshots) -> None:
    for path in folder.glob("snapshot-*.safetensors"):  # another run's would mislead
        if SNAPSHOT_FILE.fullmatch(path.name):
            path.unlink()
    for snapshot in snapshots.snapshots:
        scales = {f"{name}{SCALE}": value for name, value in snapshot.scales.items()}
        save_file(snapshot.tensors | scales, folder / snapshot_file(snapshot.step))
    index = {
        "format": SNAPSHOTS_FORMAT,
        "note": snapshots.note,
        "snapshots": [
            {"step": s.step, "fraction": s.fraction, "tokens_seen": s.tokens_seen,
             "roles": s.roles.to_json()}
            for s in snapshots.snapshots
        ],
    }  # fmt: skip
    (folder / SNAPSHOT_INDEX).write_text(json.dumps(index, separators=(",", ":")))


def save_snapshots(folder: str | Path, snapshots: Snapshots) -> None:
    """Add (or replace) a folder's snapshots, and sign it again."""
    folder = Path(folder)
    _write_snapshots(folder, snapshots)
    sign(folder)


def load_snapshots(folder: str | Path, model: GPT) -> Snapshots | None:
    """The snapshots the folder ships, None if it has none; CheckpointError naming the file
    and the fix when they cannot be used. Call after load_model (the sha256)."""
    folder = Path(folder)
    index_path = folder / SNAPSHOT_INDEX
    kept = [p for p in folder.glob("snapshot-*.safetensors") if SNAPSHOT_FILE.fullmatch(p.name)]
    if not index_path.is_file() and not kept:
        return None
    fix = (
        f"add them again with {SNAPSHOTS_FIX}, or remove {SNAPSHOT_INDEX} and the "
        "snapshot-*.safetensors files and sign the folder again"
    )
    shapes = {name: value.shape for name, value in parameters_to_flat(model).items()}
    c = model.config
    try:
        index = json.loads(index_path.read_text())
        if not isinstance(index, dict) or index.get("format") != SNAPSHOTS_FORMAT:
            raise ValueError(f"not a {SNAPSHOTS_FORMAT} index")
        snapshots = []
        for entry in index["snapshots"]:
            step = int(entry["step"])
            tensors = load_file(folder / snapshot_file(step))
            stored = {name: tensors[name] for name in shapes}
            scales = {name: tensors[f"{name}{SCALE}"] for name, shape in shapes.items()
                      if len(shape) == 2}  # fmt: skip
            fits = all(
                value.shape == shapes[name]
                and value.dtype == (np.int8 if name in scales else np.float16)
                and (name not in scales or scales[name].shape == shapes[name][-1:])
                for name, value in stored.items()
            )
            if not fits or not all(
                np.isfinite(v).all() for v in (*stored.values(), *scales.values())
            ):
                raise ValueError(f"the weights of step {step} do not fit the model")
            roles = HeadRoles.from_json(entry["roles"], c.n_layer, c.n_head)
            snapshots.append(
                Snapshot(int(step), float(entry["fraction"]), int(entry["tokens_seen"]), stored,
                         scales, roles)
            )  # fmt: skip
        if [s.step for s in snapshots] != sorted({s.step for s in snapshots}):
            raise ValueError("the steps are not distinct and in order")
        if {p.name for p in kept} != {snapshot_file(s.step) for s in snapshots}:
            raise ValueError(f"the snapshot files are not those {SNAPSHOT_INDEX} lists")
        return Snapshots(str(index["note"]), snapshots)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as error:
        raise CheckpointError(f"{folder} has unusable snapshots ({error}): {fix}") from None
