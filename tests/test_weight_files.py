"""Weights over the shard size: written as shards and an index, read back bit for bit, and
every inconsistency between index, shards and manifest refused with the file named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from test_checkpoint import TEXTS, refresh_manifest

from data.tokenizer import train_tokenizer
from model.checkpoint import CheckpointError, load_model, save_model
from model.config import GPTConfig
from model.gpt import GPT
from model.weight_files import INDEX, WEIGHTS, shard_name, split_into_shards

SHARD_BYTES = 40_000  # the tiny model below holds 115 kB of float32 weights, no tensor over 40 kB
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_and_tokenizer() -> tuple[GPT, object]:
    tokenizer = train_tokenizer(TEXTS, vocab_size=300)
    config = GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=32, n_layer=2,
                       n_head=2, d_model=32, d_ff=64)  # fmt: skip
    return GPT(config, rngs=nnx.Rngs(5)), tokenizer


@pytest.fixture
def sharded(tmp_path, model_and_tokenizer) -> Path:
    model, tokenizer = model_and_tokenizer
    return save_model(model, tokenizer, tmp_path / "m", {}, max_shard_bytes=SHARD_BYTES)


def test_split_keeps_name_order_and_the_size_limit():
    sizes = {"c": 40, "a": 50, "b": 60, "d": 200, "e": 10}
    assert split_into_shards(sizes, 100) == [["a"], ["b", "c"], ["d"], ["e"]]
    assert split_into_shards(sizes, 1000) == [["a", "b", "c", "d", "e"]]


def test_large_weights_become_shards_that_load_bit_identically(sharded, model_and_tokenizer):
    model, _ = model_and_tokenizer
    index = json.loads((sharded / INDEX).read_text())
    names = sorted(set(index["weight_map"].values()))
    count = len(names)
    assert count >= 3 and names == [shard_name(k, count) for k in range(1, count + 1)]
    assert not (sharded / WEIGHTS).exists()
    manifest = json.loads((sharded / "manifest.json").read_text())
    assert {INDEX, *names} <= set(manifest)
    sizes = [(sharded / name).stat().st_size for name in names]
    # Each shard holds at most SHARD_BYTES of tensors, plus its header.
    assert max(sizes) < SHARD_BYTES + 4_000, sizes
    stored = sum(np.asarray(v).nbytes for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert index["metadata"]["total_size"] == stored
    loaded, _, _ = load_model(sharded)
    x = jax.random.randint(jax.random.key(0), (2, 16), 0, model.config.vocab_size)
    np.testing.assert_array_equal(model(x)[0], loaded(x)[0])


def test_exporting_again_in_one_file_removes_the_shards(sharded, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    save_model(model, tokenizer, sharded, {})
    assert (sharded / WEIGHTS).is_file()
    assert not list(sharded.glob("model-*")) and not (sharded / INDEX).exists()
    load_model(sharded)


def shards(folder: Path) -> int:
    return len(list(folder.glob("model-*.safetensors")))


def drop_a_shard(folder: Path) -> str:
    (folder / shard_name(2, shards(folder))).unlink()
    return shard_name(2, shards(folder) + 1)


def shard_with_other_tensors(folder: Path) -> str:
    """Shard 1's file replaced by shard 2's: same format, other tensor names."""
    first, second = shard_name(1, shards(folder)), shard_name(2, shards(folder))
    (folder / first).write_bytes((folder / second).read_bytes())
    return first


def index_naming_a_fourth_shard(folder: Path) -> str:
    index = json.loads((folder / INDEX).read_text())
    name = next(iter(index["weight_map"]))
    index["weight_map"][name] = shard_name(shards(folder) + 1, shards(folder) + 1)
    (folder / INDEX).write_text(json.dumps(index))
    return INDEX


def index_not_json(folder: Path) -> str:
    (folder / INDEX).write_text("{not json")
    return INDEX


DAMAGES = {
    "a shard deleted": (drop_a_shard, r"cannot be read"),
    "a shard with other tensors": (shard_with_other_tensors, r"holds other tensors than"),
    "the index names other shards": (index_naming_a_fourth_shard, r"names the shards"),
    "the index is not JSON": (index_not_json, r"is not a weights index"),
}


@pytest.mark.parametrize("name", DAMAGES)
def test_damaged_shards_are_refused_naming_the_file(sharded, name):
    damage, message = DAMAGES[name]
    file = damage(sharded)
    with pytest.raises(CheckpointError, match=r"does not match its sha256|cannot be read"):
        load_model(sharded)  # the manifest catches it first
    if (sharded / file).exists():
        refresh_manifest(sharded)  # re-signed: the deeper check must catch it too
    else:
        manifest = json.loads((sharded / "manifest.json").read_text())
        del manifest[file]
        (sharded / "manifest.json").write_text(json.dumps(manifest))
        message = r"cannot be read"
    with pytest.raises(CheckpointError) as caught:
        load_model(sharded)
    text = str(caught.value)
    assert "\n" not in text and re.search(message, text), text
    assert str(sharded / file) in text or str(sharded / INDEX) in text, text


def test_both_layouts_in_one_folder_are_refused(sharded, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    single = save_model(model, tokenizer, sharded.parent / "single", {})
    (sharded / WEIGHTS).write_bytes((single / WEIGHTS).read_bytes())
    manifest = json.loads((sharded / "manifest.json").read_text())
    (sharded / "manifest.json").write_text(json.dumps({**manifest, WEIGHTS: ""}))
    refresh_manifest(sharded)
    both = f"holds both {re.escape(WEIGHTS)} and {re.escape(INDEX)}"
    with pytest.raises(CheckpointError, match=both):
        load_model(sharded)


def test_every_shipped_file_is_under_the_10_mb_a_space_takes_without_git_lfs():
    folder = ROOT / "checkpoints" / "punchline"
    sizes = {path.name: path.stat().st_size for path in folder.iterdir()}
    assert INDEX in sizes and WEIGHTS not in sizes  # the shipped weights are over 8 MB
    assert max(sizes.values()) < 10_000_000, sizes
