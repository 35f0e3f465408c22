"""The model folder: what `train.py` exports, the app loads and git ships.

    model.safetensors  the weights, one named tensor per parameter (no pickle); weights over
                       8 MB as shards and an index instead (model/weight_files.py)
    config.json        the GPTConfig that gives every size
    tokenizer.json     the byte-level BPE tokenizer the model was trained with
    metadata.json      data sources and counts, steps, tokens seen, validation figures
    head_means.safetensors  each attention head's mean output on validation jokes, the
                       replacement of mean ablation (model/knockout.py); optional
    originality_index.npz  the training jokes' hashed word n-grams, no text: the originality
                       check where the training files are absent (data/originality_index.py);
                       optional
    head_roles.json    each head's role scores on probe texts and its role (model/roles.py);
                       optional
    snapshot-STEP.safetensors  the weights at a few steps of a training run, one file each,
    snapshots.json     and their steps and head roles: the app's attention over training
                       (model/snapshots.py); optional
    manifest.json      sha256 of each file above, checked before anything is used

Loading checks everything before building the model, so a damaged folder is reported
with the file at fault and never half-loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

from model.config import ConfigError, GPTConfig
from model.gpt import GPT
from model.roles import HeadRoles
from model.weight_files import (
    SHARD_BYTES,
    STORAGE_DTYPES,
    WEIGHTS,
    CheckpointError,
    read_weights,
    save_weights,
    weight_files,
    weights_path,
)

CONFIG, TOKENIZER, METADATA, MANIFEST = (
    "config.json",
    "tokenizer.json",
    "metadata.json",
    "manifest.json",
)
HEAD_MEANS = "head_means.safetensors"
HEAD_MEANS_KEY = "head_mean_outputs"  # (n_layer, n_head, d_head), float32
ORIGINALITY_INDEX = "originality_index.npz"
HEAD_ROLES = "head_roles.json"
SNAPSHOT_INDEX = "snapshots.json"
# One weights file per training snapshot, each well under the 10 MB a Hugging Face Space
# takes without Git LFS (model/snapshots.py).
SNAPSHOT_FILE = re.compile(r"snapshot-\d+\.safetensors")
# Files an older folder may lack; when present they are signed like the required ones.
OPTIONAL = (HEAD_MEANS, ORIGINALITY_INDEX, HEAD_ROLES, SNAPSHOT_INDEX)
HEAD_ANALYSES_FIX = "python -m training.head_analyses"  # recomputes head means and roles
REQUIRED = (CONFIG, TOKENIZER, METADATA)  # beside the weights' files


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _named_leaves(model: GPT) -> tuple[list[str], list[Any], Any]:
    """Parameter names ('blocks.0.attention.query.kernel', ...), values and tree structure."""
    pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(pure)
    names = [".".join(str(getattr(part, "key", part)) for part in path) for path, _ in leaves]
    return names, [value for _, value in leaves], treedef


def parameters_to_flat(model: GPT) -> dict[str, Any]:
    """{'blocks.0.attention.query.kernel': array, ...}: the model's parameters by name.

    For a model built with nnx.eval_shape the values are shapes only.
    """
    names, values, _ = _named_leaves(model)
    return dict(zip(names, values, strict=True))


def model_from_parameters(abstract: GPT, tensors: dict[str, np.ndarray]) -> GPT:
    """The model shaped like `abstract` (from nnx.eval_shape), holding `tensors` by name.

    The model is built once, from the abstract one's structure: no random initialisation
    is computed only to be overwritten.
    """
    names, _, treedef = _named_leaves(abstract)
    graphdef, state = nnx.split(abstract)  # a GPT holds parameters and nothing else
    values = [jnp.asarray(tensors[name]) for name in names]
    nnx.replace_by_pure_dict(state, jax.tree_util.tree_unflatten(treedef, values))
    return nnx.merge(graphdef, state)


def save_model(
    model: GPT,
    tokenizer: Tokenizer,
    folder: str | Path,
    metadata: dict[str, Any],
    dtype: str = "float32",
    head_means: np.ndarray | None = None,
    originality_index: dict[str, np.ndarray] | None = None,
    head_roles: HeadRoles | None = None,
    max_shard_bytes: int = SHARD_BYTES,
) -> Path:
    """Write a model folder (see the module docstring); returns its path. Weights larger
    than `max_shard_bytes` are written as shards and an index."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    storage = STORAGE_DTYPES[dtype]
    tensors = {k: np.asarray(v).astype(storage) for k, v in parameters_to_flat(model).items()}
    save_weights(tensors, folder, max_shard_bytes)
    (folder / CONFIG).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    tokenizer.save(str(folder / TOKENIZER))
    (folder / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    for name in optional_files(folder):  # means of other weights, other jokes' index: misleading
        (folder / name).unlink()
    if head_means is not None:
        save_file({HEAD_MEANS_KEY: np.asarray(head_means, np.float32)}, folder / HEAD_MEANS)
    if originality_index is not None:
        np.savez_compressed(folder / ORIGINALITY_INDEX, **originality_index)
    if head_roles is not None:
        _write_head_roles(folder, head_roles)
    sign(folder)
    return folder


def optional_files(folder: Path, listed: Iterable[str] = ()) -> list[str]:
    """The optional files (OPTIONAL and the snapshots' weights) the folder holds, or that a
    manifest `listed`."""
    listed = set(listed)
    fixed = [name for name in OPTIONAL if name in listed or (folder / name).exists()]
    kept = {path.name for path in folder.glob("snapshot-*.safetensors")}
    snapshots = {name for name in kept | listed if SNAPSHOT_FILE.fullmatch(name)}
    return [*fixed, *sorted(snapshots)]


def sign(folder: Path) -> None:
    """Write manifest.json: the sha256 of every file of the folder (see the docstring)."""
    files = [*weight_files(folder), *REQUIRED, *optional_files(folder)]
    manifest = {name: _sha256(folder / name) for name in files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def save_head_means(folder: str | Path, head_means: np.ndarray) -> None:
    """Add (or replace) the mean head outputs of an exported folder, and sign it again."""
    folder = Path(folder)
    save_file({HEAD_MEANS_KEY: np.asarray(head_means, np.float32)}, folder / HEAD_MEANS)
    sign(folder)


def save_head_roles(folder: str | Path, head_roles: HeadRoles) -> None:
    """Add (or replace) the head roles of an exported folder, and sign it again."""
    folder = Path(folder)
    _write_head_roles(folder, head_roles)
    sign(folder)


def _write_head_roles(folder: Path, head_roles: HeadRoles) -> None:
    (folder / HEAD_ROLES).write_text(json.dumps(head_roles.to_json(), separators=(",", ":")))


def load_head_roles(folder: str | Path, config: GPTConfig) -> HeadRoles | None:
    """The head roles the folder ships, None if it has none (exported before they existed);
    raises CheckpointError when they are unusable. Call after load_model (the sha256)."""
    path = Path(folder) / HEAD_ROLES
    if not path.is_file():
        return None
    try:
        return HeadRoles.from_json(json.loads(path.read_text()), config.n_layer, config.n_head)
    except (ValueError, UnicodeDecodeError, OSError) as error:
        raise CheckpointError(
            f"{path} cannot be used ({error}): recompute it with {HEAD_ANALYSES_FIX} {Path(folder)}"
        ) from None


def load_head_means(folder: str | Path, config: GPTConfig) -> np.ndarray | None:
    """The mean head outputs (n_layer, n_head, d_head) the folder ships, None if it has
    none (exported before they existed); raises CheckpointError when they are unusable.
    Call after load_model, which checked the file's sha256."""
    path = Path(folder) / HEAD_MEANS
    if not path.is_file():
        return None
    try:
        means = load_file(path).get(HEAD_MEANS_KEY)
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} cannot be read ({error})") from None
    shape = (config.n_layer, config.n_head, config.d_head)
    if means is None or means.shape != shape or not np.isfinite(means).all():
        raise CheckpointError(
            f"{path} should hold finite {HEAD_MEANS_KEY} of shape {shape}: recompute them "
            f"with {HEAD_ANALYSES_FIX} {Path(folder)}"
        )
    return means.astype(np.float32)


def save_originality_index(folder: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Add (or replace) the text-free originality index of a folder, and sign it again."""
    folder = Path(folder)
    np.savez_compressed(folder / ORIGINALITY_INDEX, **arrays)
    sign(folder)


def load_originality_index(folder: str | Path) -> dict[str, np.ndarray] | None:
    """The arrays of the folder's originality index (data/originality_index.py checks them),
    None if it has none (exported before it existed); raises CheckpointError when the file
    cannot be read. Never unpickles. Call after load_model, which checked the file's sha256."""
    path = Path(folder) / ORIGINALITY_INDEX
    if not path.is_file():
        return None
    try:
        if not zipfile.is_zipfile(path):  # np.load would take it for a pickle, and refuse that
            raise ValueError("not an .npz archive")
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise CheckpointError(
            f"{path} cannot be read ({error}): build it again with "
            f"python -m training.originality_index {Path(folder)}"
        ) from None


def _check_manifest(folder: Path) -> None:
    manifest_path = folder / MANIFEST
    for name in (WEIGHTS, CONFIG, TOKENIZER, METADATA, MANIFEST):
        if not (folder / name).is_file() and (name != WEIGHTS or not weight_files(folder)):
            raise CheckpointError(
                f"{folder / name} is missing: export the model again with train.py "
                f"(a model folder needs {WEIGHTS} or its shards, {CONFIG}, {TOKENIZER}, "
                f"{METADATA}, {MANIFEST})"
            )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{manifest_path} is not valid JSON ({error})") from None
    # Every file must be listed: an edited manifest that leaves one out would switch its check off.
    listed = manifest if isinstance(manifest, dict) else {}
    signed = (*weight_files(folder, listed), *REQUIRED, *optional_files(folder, listed))
    if not isinstance(manifest, dict) or sorted(manifest) != sorted(signed):
        raise CheckpointError(
            f"{manifest_path} must map exactly {', '.join(signed)} to their sha256: "
            f"export the model again with train.py"
        )
    for name, expected in manifest.items():
        try:
            actual = _sha256(folder / name)
        except OSError as error:
            raise CheckpointError(f"{folder / name} cannot be read ({error.strerror})") from None
        if actual != expected:
            raise CheckpointError(
                f"{folder / name} does not match its sha256 in {MANIFEST}: the file is "
                f"damaged or was edited; restore it or export the model again"
            )


def load_config(folder: str | Path) -> GPTConfig:
    path = Path(folder) / CONFIG
    try:
        values = json.loads(path.read_text())
        if not isinstance(values, dict):
            raise ConfigError(f"expected a JSON object of sizes, got {type(values).__name__}")
        _check_config_types(values)
        return GPTConfig.from_dict(values)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ConfigError) as error:
        raise CheckpointError(f"{path}: {error}") from None


def _check_config_types(values: dict[str, Any]) -> None:
    """Each known value has its field's JSON type (GPTConfig.validate checks their ranges).

    A string where a number belongs would otherwise surface later as an error from deep
    inside the model code, without the file's name.
    """
    for field in dataclasses.fields(GPTConfig):
        if field.name not in values:
            continue  # GPTConfig.from_dict names the missing keys
        value, default = values[field.name], field.default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):  # JSON has one number type: 1 is a fine float
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ConfigError(
                f"{field.name}={value!r} should be a {type(default).__name__} "
                f"(like the default {default!r})"
            )


def load_model(folder: str | Path, verify: bool = True) -> tuple[GPT, Tokenizer, dict[str, Any]]:
    """Load (model, tokenizer, metadata) from a model folder, or raise CheckpointError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder} is not a model folder: pass a folder written by train.py, "
            f"such as checkpoints/punchline"
        )
    if verify:
        _check_manifest(folder)
    config = load_config(folder)
    weights, where = read_weights(folder)
    weights_file = weights_path(folder)
    # Building even the abstract model takes time for every block (seconds each for a
    # hundred), so a config.json that claims far more blocks than the weights hold is
    # refused before anything is built.
    blocks = {name.split(".")[1] for name in weights if name.startswith("blocks.")}
    if len(blocks) != config.n_layer:
        raise CheckpointError(
            f"{weights_file} holds {len(blocks)} transformer blocks but {CONFIG} says "
            f"n_layer={config.n_layer}; export config and weights together"
        )
    # Build the model's shapes without computing anything, then check every tensor.
    try:
        abstract = nnx.eval_shape(lambda: GPT(config, rngs=nnx.Rngs(0)))
    except (TypeError, ValueError) as error:  # sizes that pass validate() but build no model
        raise CheckpointError(f"{folder / CONFIG} describes no buildable model ({error})") from None
    expected = {k: v.shape for k, v in parameters_to_flat(abstract).items()}
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights_file} does not fit {CONFIG}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}; export config and weights together"
        )
    for name, shape in expected.items():
        if tuple(weights[name].shape) != tuple(shape):
            raise CheckpointError(
                f"{where[name]}: {name} has shape {tuple(weights[name].shape)} but "
                f"{CONFIG} implies {tuple(shape)}; export config and weights together"
            )
    tokenizer_path = folder / TOKENIZER
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as error:  # tokenizers raises a bare Exception on bad JSON
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{tokenizer_path} cannot be read ({reason})") from None
    if tokenizer.get_vocab_size() != config.vocab_size:
        raise CheckpointError(
            f"{tokenizer_path} has {tokenizer.get_vocab_size()} tokens but {CONFIG} says "
            f"vocab_size={config.vocab_size}: use the tokenizer the model was trained with"
        )
    _check_token_ids(tokenizer, tokenizer_path, config.vocab_size)
    model = model_from_parameters(abstract, weights)
    try:
        metadata = json.loads((folder / METADATA).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{folder / METADATA} is not valid JSON ({error})") from None
    return model, tokenizer, metadata


def _check_token_ids(tokenizer: Tokenizer, path: Path, vocab_size: int) -> None:
    """Every token id indexes a row of the embedding, and the end-of-joke token exists.

    The counts can agree while an id does not (an added token with id 1000000): the model
    would then read a clamped, wrong embedding row without any error.
    """
    from data.tokenizer import END_OF_JOKE  # here: data/ is heavier than model/ needs

    largest = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1)
    if largest >= vocab_size:
        raise CheckpointError(
            f"{path} has token id {largest} but the model has only {vocab_size} embeddings: "
            f"use the tokenizer the model was trained with"
        )
    if tokenizer.token_to_id(END_OF_JOKE) is None:
        raise CheckpointError(
            f"{path} has no {END_OF_JOKE} token, which starts and ends every joke: "
            f"use the tokenizer the model was trained with"
        )
