"""Many devices, many processes: joining a multi-host run, and splitting batches over devices.

Training is data parallel. Every process runs train.py with the same flags and draws the same
global batch of each step, but keeps only its own rows; the rows of all processes make one
global array, sharded along its batch axis over every device. Parameters and optimizer state
are replicated; XLA averages the gradients with an all-reduce inside the compiled step.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

import jax
import numpy as np
from jax.experimental.multihost_utils import sync_global_devices
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from training.config import TrainError


def initialize_distributed(args: argparse.Namespace) -> None:
    """Join a multi-process run: every process runs train.py with the same flags.

    --coordinator, --num-processes and --process-id name the processes; --distributed
    leaves them to JAX, which reads them from a TPU VM slice, Slurm or Open MPI. With
    neither, this is a single-process run over all the machine's devices.
    """
    given = {
        "--coordinator": args.coordinator,
        "--num-processes": args.num_processes,
        "--process-id": args.process_id,
    }
    missing = [flag for flag, value in given.items() if value is None]
    if not args.distributed and len(missing) == len(given):
        return
    if not args.distributed and missing:
        raise TrainError(
            f"a multi-host run needs {', '.join(missing)} too (or --distributed on a TPU VM "
            f"slice, Slurm or Open MPI, which name the processes themselves)"
        )
    # CPU processes (a multi-host run simulated on one machine, or CPU-only hosts) exchange
    # gradients over TCP with gloo. This setting is JAX's default today, and it touches
    # only the CPU backend: GPUs and TPUs keep their own collectives (NCCL, ICI).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    except ValueError as error:  # a --process-id out of range; --distributed outside a cluster
        raise TrainError(f"cannot join the multi-host run: {error}") from None


@contextlib.contextmanager
def main_process_first(name: str) -> Iterator[None]:
    """Run the block on process 0, then on the others: they find what it wrote.

    Process 0 reaches the barrier even when the block fails, so that the others then run
    into the same error instead of waiting for it forever.
    """
    if jax.process_index() == 0:
        try:
            yield
        finally:
            sync_global_devices(name)
    else:
        sync_global_devices(name)
        yield


class DataParallel:
    """Where a run's arrays live: batches split over every device, the state on each."""

    def __init__(self, batch_size: int):
        devices = jax.devices()
        if batch_size % len(devices):
            raise TrainError(
                f"--batch-size {batch_size} does not split over {len(devices)} devices: "
                f"use a multiple of {len(devices)}"
            )
        # One mesh axis, "data": each device gets a slice of the batch; parameters and
        # optimizer state are replicated; gradients are averaged across devices by the
        # all-reduce XLA inserts inside the compiled step.
        mesh = Mesh(np.array(devices), ("data",))
        self.batch_sharding = NamedSharding(mesh, P("data"))
        self.replicated = NamedSharding(mesh, P())

    def shard(self, local: np.ndarray) -> jax.Array:
        """This process's rows of the global batch -> one global array over all devices."""
        return jax.make_array_from_process_local_data(self.batch_sharding, local)


def process_rows(global_batch: np.ndarray) -> np.ndarray:
    """This process's share of the rows of a batch every process computed whole."""
    rows = len(global_batch) // jax.process_count()
    return global_batch[jax.process_index() * rows : (jax.process_index() + 1) * rows]
