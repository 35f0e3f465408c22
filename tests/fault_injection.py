"""Run train.py with one fault injected (for tests/test_faults.py).

    python tests/fault_injection.py kill-while-saving STEP -- TRAIN_FLAGS...
    python tests/fault_injection.py nan-at STEP -- TRAIN_FLAGS...
    python tests/fault_injection.py sigint-during STEP -- TRAIN_FLAGS...

kill-while-saving: SIGKILL this process while it writes the checkpoint of STEP, after Orbax has
    written every file of it into its temporary folder and before the rename that completes it:
    the worst moment, when the folder looks whole.
nan-at: make the parameters NaN just before optimizer step STEP (counted from 1 in this
    process), so that step's loss is NaN and every state after it has diverged, as a learning
    rate far too high would do.
sigint-during: send this process a real SIGINT (what Ctrl-C sends) while step STEP trains, when
    its batch is drawn: the same moment every time, unlike a signal from outside.

Everything else is `training.cli.main(TRAIN_FLAGS)`, exactly what `python train.py` runs.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import jax
import jax.numpy as jnp
from orbax.checkpoint._src.path import atomicity

import training.run
from training.cli import main


def kill_while_saving(step: int) -> None:
    """Orbax completes a checkpoint by renaming its temporary folder: die just before that."""
    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize_or_die(self: atomicity.AtomicRenameTemporaryPath) -> None:
        if self.get_final().name == str(step):
            os.kill(os.getpid(), signal.SIGKILL)
        await finalize(self)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize_or_die


def nan_at(step: int) -> None:
    """Wrap the compiled train step (the same compiled program) to poison its input once."""
    make_train_step = training.run.make_train_step

    def poisoned_make_train_step(graphdef, fused):
        train_step = make_train_step(graphdef, fused)
        calls = 0

        def poisoned_train_step(state, *batch_and_key):
            nonlocal calls
            calls += 1
            if calls == step:
                state = jax.tree.map(
                    lambda a: a * jnp.nan if jnp.issubdtype(a.dtype, jnp.floating) else a, state
                )
            return train_step(state, *batch_and_key)

        return poisoned_train_step

    training.run.make_train_step = poisoned_make_train_step


def sigint_during(step: int) -> None:
    # train_batch(tokens, step index from 0, ...): step STEP draws index STEP - 1.
    draw_batch = training.run.train_batch

    def draw_batch_and_interrupt(tokens, index, *args, **kwargs):
        if index == step - 1:
            os.kill(os.getpid(), signal.SIGINT)
        return draw_batch(tokens, index, *args, **kwargs)

    training.run.train_batch = draw_batch_and_interrupt


FAULTS = {"kill-while-saving": kill_while_saving, "nan-at": nan_at, "sigint-during": sigint_during}

if __name__ == "__main__":
    fault, step, separator, *flags = sys.argv[1:]
    if fault not in FAULTS or separator != "--":
        sys.exit(__doc__)
    FAULTS[fault](int(step))
    sys.exit(main(flags))
