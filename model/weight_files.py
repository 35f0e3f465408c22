"""The weights of a model folder on disk: one safetensors file, or shards and an index.

A Hugging Face Space (like GitHub) takes files of up to 10 MB without Git LFS, and the
shipped model's weights are just over that. So weights that fit in SHARD_BYTES are one file,

    model.safetensors

and larger weights are cut, in name order, into files of at most SHARD_BYTES each, with an
index that maps every tensor to its file:

    model-00001-of-00002.safetensors
    model-00002-of-00002.safetensors
    model.safetensors.index.json   {"metadata": {"total_size": BYTES}, "weight_map": {NAME: FILE}}

This is the layout Hugging Face transformers writes (`save_pretrained(max_shard_size=...)`).
Reading checks that the index, the shards and their tensors agree, and that every weight is
stored as float32 or bfloat16 and is finite, before anything is built from them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

WEIGHTS = "model.safetensors"  # the weights in one file
INDEX = "model.safetensors.index.json"  # or: which shard holds each tensor
SHARD = re.compile(r"model-(\d{5})-of-(\d{5})\.safetensors")
# The largest shard: under the 10 MB limit with room for the header (a few kB of names).
SHARD_BYTES = 8_000_000
STORAGE_DTYPES = {"float32": np.float32, "bfloat16": jnp.bfloat16}


class CheckpointError(Exception):
    """A model folder that cannot be used; the message names the file and the fix."""


def shard_name(number: int, count: int) -> str:
    """'model-00001-of-00002.safetensors': shard `number` (from 1) of `count`."""
    return f"model-{number:05d}-of-{count:05d}.safetensors"


def weight_files(folder: Path, listed: Iterable[str] = ()) -> list[str]:
    """The weights' files that `folder` holds or that a manifest `listed`: model.safetensors,
    or the index and its shards (both when a folder is damaged; reading refuses that)."""
    names = {path.name for path in folder.glob("model*.safetensors*")} | set(listed)
    return sorted(name for name in names if name in (WEIGHTS, INDEX) or SHARD.fullmatch(name))


def split_into_shards(sizes: dict[str, int], max_bytes: int) -> list[list[str]]:
    """Tensor names in name order, cut into groups of at most `max_bytes` (a tensor larger
    than that alone is a group of its own)."""
    groups: list[list[str]] = [[]]
    filled = 0
    for name in sorted(sizes):
        if groups[-1] and filled + sizes[name] > max_bytes:
            groups.append([])
            filled = 0
        groups[-1].append(name)
        filled += sizes[name]
    return groups


def save_weights(
    tensors: dict[str, np.ndarray], folder: Path, max_bytes: int = SHARD_BYTES
) -> list[str]:
    """Write `tensors` into `folder` as one file or as shards and an index, after removing
    the weights' files of an earlier export; returns the names written."""
    for name in weight_files(folder):
        (folder / name).unlink()
    groups = split_into_shards({name: t.nbytes for name, t in tensors.items()}, max_bytes)
    if len(groups) == 1:
        save_file(tensors, folder / WEIGHTS)
        return [WEIGHTS]
    weight_map = {}
    for number, group in enumerate(groups, start=1):
        name = shard_name(number, len(groups))
        save_file({tensor: tensors[tensor] for tensor in group}, folder / name)
        weight_map.update(dict.fromkeys(group, name))
    total = sum(tensor.nbytes for tensor in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return [INDEX, *sorted(set(weight_map.values()))]


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} cannot be read ({error})") from None


def _shard_map(folder: Path) -> dict[str, str]:
    """The index's {tensor name: shard file}, checked to name shards 1 to N of N."""
    path = folder / INDEX
    try:
        weight_map = json.loads(path.read_text()).get("weight_map")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, OSError) as error:
        raise CheckpointError(f"{path} is not a weights index ({error}): export again") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{path} has no weight_map of tensor names to shard files")
    shards = sorted({str(shard) for shard in weight_map.values()})
    expected = [shard_name(k, len(shards)) for k in range(1, len(shards) + 1)]
    if shards != expected:
        raise CheckpointError(
            f"{path} names the shards {shards[:3]}, not {expected[:3]}: export the model again"
        )
    return weight_map


def weights_path(folder: Path) -> Path:
    """The file that stands for the weights in messages: the index, or the one file."""
    return folder / (INDEX if (folder / INDEX).exists() else WEIGHTS)


def _read_shards(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors of every shard the index names, each checked against the index."""
    weight_map = _shard_map(folder)
    stored: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
        tensors = _read(folder / shard)
        listed = {name for name, file in weight_map.items() if file == shard}
        if set(tensors) != listed:
            raise CheckpointError(
                f"{folder / shard} holds other tensors than {INDEX} says "
                f"({sorted(set(tensors) ^ listed)[:3]}): export the model again"
            )
        stored.update(tensors)
    return stored, weight_map


def read_weights(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    """Every weight as float32 by name, and the file each came from (for error messages);
    raises CheckpointError naming the file at fault."""
    present = weight_files(folder)
    if WEIGHTS in present and INDEX in present:
        raise CheckpointError(
            f"{folder} holds both {WEIGHTS} and {INDEX}: export the model again into an "
            f"empty folder"
        )
    if INDEX in present:
        stored, weight_map = _read_shards(folder)
    elif WEIGHTS in present:
        stored = _read(folder / WEIGHTS)
        weight_map = dict.fromkeys(stored, WEIGHTS)
    else:
        raise CheckpointError(f"{folder / WEIGHTS} is missing: export the model again")
    weights = {}
    for name, tensor in stored.items():
        path = folder / weight_map[name]
        # save_model writes float32 or bfloat16; integers of the right byte length would
        # otherwise load as nonsense weights.
        if tensor.dtype not in STORAGE_DTYPES.values():
            raise CheckpointError(
                f"{path}: {name} is stored as {tensor.dtype}, not float32 or bfloat16; "
                f"export the model again"
            )
        weights[name] = tensor.astype(np.float32)
        # A damaged exponent byte turns a weight into inf or NaN: every output would be NaN.
        if not np.isfinite(weights[name]).all():
            raise CheckpointError(
                f"{path}: {name} holds NaN or infinite values; the file is damaged "
                f"or the run diverged: restore it or export the model again"
            )
    return weights, {name: folder / file for name, file in weight_map.items()}
