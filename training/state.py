"""The training state on disk: Orbax checkpoints in RUN/state, and room for them.

A checkpoint holds the whole training state (model parameters + optimizer state, with the
weights' moving average when --ema-decay keeps one, replicated on every device) and the step
it was saved after. The last two are kept; a resumed run starts
from the latest one. Orbax writes a checkpoint into a temporary folder and renames it when
complete, so a run killed while saving leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from flax import nnx

from training.config import TrainError

BYTES_PER_PARAMETER_CHECKPOINT = 4 * 3  # float32 weights + two Adam moments (Muon keeps one)
BYTES_PER_PARAMETER_AVERAGE = 4  # --ema-decay: a float32 moving average of the weights
# Orbax's metadata per checkpoint (about 0.1 MB for the tiny preset), and the run folder's
# other files: tokenizer, metrics, loss curve, data report.
CHECKPOINT_OVERHEAD_BYTES = 1_000_000
FOLDER_OVERHEAD_BYTES = 1_000_000


class Checkpoints:
    """The Orbax checkpoints of one run folder (every process writes its part)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.manager = ocp.CheckpointManager(
            (folder / "state").absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True),
        )

    def save(self, step: int, state: nnx.State) -> None:
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                progress=ocp.args.JsonSave({"step": step}),
            ),
            force=True,
        )

    def restore(self, like: nnx.State) -> tuple[nnx.State, int] | None:
        """The latest saved state (with the shapes, dtypes and shardings of `like`) and its
        step, or None when there is no checkpoint yet."""
        latest = self.manager.latest_step()
        if latest is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = self.manager.restore(
                latest,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract),
                    progress=ocp.args.JsonRestore(),
                ),
            )
        except ValueError:  # Orbax: the saved tree's structure or shapes differ from `like`
            raise TrainError(
                f"the checkpoint of step {latest} in {self.folder / 'state'} does not hold this "
                "run's model and optimizer state (it was saved by another version of "
                "Punchline, or is damaged): resume it with that version, or start again with "
                "another --out"
            ) from None
        return restored["state"], int(restored["progress"]["step"])

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def wait_until_finished(self) -> None:
        """Block until the checkpoint being written in the background is complete."""
        self.manager.wait_until_finished()


def check_disk_space(folder: Path, n_params: int, average: bool = False) -> None:
    """Fail now, not hours from now, if the checkpoints will not fit on the disk."""
    needed = disk_space_needed(n_params, average)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise TrainError(
            f"{folder} has {free / 1e6:.0f} MB free but checkpoints need about "
            f"{needed / 1e6:.0f} MB: free some space or choose another --out"
        )


def disk_space_needed(n_params: int, average: bool = False) -> int:
    """Bytes a run of a model this size needs in its folder, counted generously: two kept
    checkpoints (with the weights' average if `average`) and a third being written, the
    exported model (float32 at most), small files."""
    per_parameter = BYTES_PER_PARAMETER_CHECKPOINT + average * BYTES_PER_PARAMETER_AVERAGE
    checkpoint = n_params * per_parameter + CHECKPOINT_OVERHEAD_BYTES
    return 3 * checkpoint + n_params * 4 + FOLDER_OVERHEAD_BYTES
