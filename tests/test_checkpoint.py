"""The model folder: export and load round trip, and every kind of damage reported by name."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from data.tokenizer import train_tokenizer
from model.checkpoint import (
    CheckpointError,
    load_head_means,
    load_head_roles,
    load_model,
    save_head_means,
    save_head_roles,
    save_model,
    sign,
)
from model.config import GPTConfig
from model.gpt import GPT
from model.roles import HeadRoles, find_roles

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [f"Joke number {i}: the {w} walked into a bar and ordered {i} drinks." for i, w in
         enumerate(["duck", "horse", "robot", "ghost", "snail", "pirate"] * 20)]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=300)


@pytest.fixture
def folder(tmp_path, tokenizer) -> Path:
    config = GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=32, n_layer=2,
                       n_head=2, d_model=32, d_ff=64, positional="rope")  # fmt: skip
    model = GPT(config, rngs=nnx.Rngs(3))
    return save_model(model, tokenizer, tmp_path / "model", {"note": "test"})


def tokens(vocab: int) -> jax.Array:
    return jax.random.randint(jax.random.key(0), (2, 32), 0, vocab)


def refresh_manifest(folder: Path) -> None:
    """Re-sign the folder after a deliberate edit, so the check under test is the deeper one."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in manifest:
        manifest[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_export_then_load_gives_bit_identical_logits(tmp_path, tokenizer):
    config = GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=32, n_layer=2,
                       n_head=2, d_model=32, d_ff=64)  # fmt: skip
    model = GPT(config, rngs=nnx.Rngs(1))
    folder = save_model(model, tokenizer, tmp_path / "m", {"steps": 5})
    loaded, loaded_tokenizer, metadata = load_model(folder)
    x = tokens(config.vocab_size)
    np.testing.assert_array_equal(model(x)[0], loaded(x)[0])
    assert loaded.config == config and metadata == {"steps": 5}
    assert loaded_tokenizer.to_str() == tokenizer.to_str()


def test_loading_builds_the_model_once_without_a_random_initialisation(folder, monkeypatch):
    import model.checkpoint as checkpoint

    concrete_builds = []

    class CountingGPT(GPT):
        def __init__(self, *args, **kwargs):
            # Under nnx.eval_shape every array is abstract (a tracer): nothing is computed.
            concrete_builds.append(not isinstance(jnp.zeros(()), jax.core.Tracer))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "GPT", CountingGPT)
    load_model(folder)  # the weights it holds: test_export_then_load_gives_bit_identical_logits
    assert concrete_builds == [False]  # one abstract build, no real initialisation


def test_bfloat16_export_is_half_the_size_and_close_in_logits(tmp_path, tokenizer, folder):
    model, _, _ = load_model(folder)
    small = save_model(model, tokenizer, tmp_path / "bf16", {}, dtype="bfloat16")
    loaded, _, _ = load_model(small)
    size = (small / "model.safetensors").stat().st_size
    assert size < 0.55 * (folder / "model.safetensors").stat().st_size
    x = tokens(model.config.vocab_size)
    np.testing.assert_allclose(model(x)[0], loaded(x)[0], atol=2e-2)


def test_a_missing_file_is_named(folder):
    (folder / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"tokenizer\.json is missing"):
        load_model(folder)


def test_a_flipped_byte_in_the_weights_is_caught_by_the_manifest(folder):
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not match its sha256"):
        load_model(folder)


def test_truncated_weights_are_reported_even_with_a_matching_manifest(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    refresh_manifest(folder)
    with pytest.raises(CheckpointError, match=r"model\.safetensors cannot be read"):
        load_model(folder)


def test_config_with_missing_keys_is_reported(folder):
    config = json.loads((folder / "config.json").read_text())
    del config["n_head"]
    (folder / "config.json").write_text(json.dumps(config))
    refresh_manifest(folder)
    with pytest.raises(CheckpointError, match=r"config\.json: missing config keys \['n_head'\]"):
        load_model(folder)


def test_config_whose_shapes_do_not_match_the_weights_is_reported(folder):
    config = json.loads((folder / "config.json").read_text())
    config["d_ff"] = 128
    (folder / "config.json").write_text(json.dumps(config))
    refresh_manifest(folder)
    with pytest.raises(CheckpointError, match=r"feed_forward\.(widen|narrow)\.kernel has shape"):
        load_model(folder)


def test_a_tokenizer_of_another_vocabulary_is_reported(folder):
    train_tokenizer(TEXTS, vocab_size=280).save(str(folder / "tokenizer.json"))
    refresh_manifest(folder)
    with pytest.raises(CheckpointError, match=r"tokenizer\.json has \d+ tokens but config\.json"):
        load_model(folder)


def test_loading_never_half_loads(folder):
    """A failure leaves nothing behind: the caller gets an error, not a model."""
    (folder / "metadata.json").write_text("{not json")
    with pytest.raises(CheckpointError):
        load_model(folder)


def test_the_sampling_command_prints_one_line_for_a_damaged_folder(folder):
    (folder / "config.json").write_text("{}")
    result = subprocess.run(
        [sys.executable, "-m", "model.generate", "--checkpoint", str(folder), "-n", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "config.json" in result.stderr and "Traceback" not in result.stderr


def test_the_sampling_command_prints_jokes(folder):
    result = subprocess.run(
        [sys.executable, "-m", "model.generate", "--checkpoint", str(folder), "-n", "2",
         "--max-new-tokens", "8", "--prompt", "Joke number"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split("]")[0] for line in lines] == ["[seed 0", "[seed 1"]
    assert all("Joke number" in line for line in lines)


def test_config_dataclass_survives_the_folder(folder):
    loaded, _, _ = load_model(folder)
    assert dataclasses.asdict(loaded.config)["positional"] == "rope"


# ---------------------------------------------------------------- the mean head outputs


def test_head_means_travel_with_the_folder_and_are_signed(folder):
    model, _, _ = load_model(folder)
    c = model.config
    assert load_head_means(folder, c) is None  # a folder exported without them
    means = np.random.default_rng(0).normal(size=(c.n_layer, c.n_head, c.d_head))
    save_head_means(folder, means)
    assert "head_means.safetensors" in json.loads((folder / "manifest.json").read_text())
    load_model(folder)  # still a valid folder
    np.testing.assert_allclose(load_head_means(folder, c), means, rtol=1e-6)


def test_damaged_or_missing_head_means_are_reported(folder):
    model, _, _ = load_model(folder)
    c = model.config
    save_head_means(folder, np.zeros((c.n_layer, c.n_head, c.d_head)))
    path = folder / "head_means.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"head_means\.safetensors does not match"):
        load_model(folder)
    path.unlink()  # listed in the manifest but gone: not silently dropped
    with pytest.raises(CheckpointError, match=r"head_means\.safetensors cannot be read"):
        load_model(folder)
    save_head_means(folder, np.zeros((c.n_layer + 1, c.n_head, c.d_head)))  # other sizes
    with pytest.raises(CheckpointError, match=r"should hold finite .* of shape \(2, 2, 16\)"):
        load_head_means(folder, c)


# ---------------------------------------------------------------- the head roles


def some_roles(model: GPT) -> HeadRoles:
    """The roles find_roles gives the folder's random model, on two made-up jokes."""
    return find_roles(model, [[0, 5, 9, 7, 3], [0, 4, 4, 8]], start_token=0)


def test_head_roles_travel_with_the_folder_and_are_signed(folder):
    model, _, _ = load_model(folder)
    assert load_head_roles(folder, model.config) is None  # a folder exported without them
    roles = some_roles(model)
    save_head_roles(folder, roles)
    assert "head_roles.json" in json.loads((folder / "manifest.json").read_text())
    load_model(folder)  # still a valid folder
    loaded = load_head_roles(folder, model.config)
    assert loaded.roles == roles.roles
    np.testing.assert_allclose(loaded.scores["diffuse"], roles.scores["diffuse"], atol=1e-4)


def test_damaged_or_malformed_head_roles_are_reported_with_the_fix(folder):
    model, _, _ = load_model(folder)
    save_head_roles(folder, some_roles(model))
    path = folder / "head_roles.json"
    path.write_text(path.read_text().replace('"roles"', '"rolez"'))
    with pytest.raises(CheckpointError, match=r"head_roles\.json does not match"):
        load_model(folder)
    sign(folder)  # signed as it is now: the content itself must be refused
    with pytest.raises(
        CheckpointError, match=r"head_roles\.json cannot be used .* training\.head_analyses"
    ):
        load_head_roles(folder, model.config)
    wider = dataclasses.replace(model.config, n_head=model.config.n_head * 2)
    save_head_roles(folder, some_roles(model))
    with pytest.raises(CheckpointError, match="must be"):
        load_head_roles(folder, wider)


def test_exporting_again_drops_head_means_of_other_weights(folder, tokenizer):
    model, _, _ = load_model(folder)
    c = model.config
    save_head_means(folder, np.zeros((c.n_layer, c.n_head, c.d_head)))
    save_model(model, tokenizer, folder, {"note": "again"})
    assert not (folder / "head_means.safetensors").exists()
    load_model(folder)
