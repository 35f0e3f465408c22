"""The Hugging Face export: transformers computes what Punchline computes.

For tiny models of each supported architecture, every parameter drawn at random (so a
bias or a norm scale left out or misplaced shows), and for the shipped model: export,
load with transformers (float32, eager attention), and compare the next-token
log-probabilities and every layer's attention weights with the project's own forward pass.

torch and transformers are test dependencies (requirements-dev.txt): without them this
module fails to import, loudly, rather than skipping.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tokenizers import Tokenizer

from data.tokenizer import encode, end_of_joke_id
from model.checkpoint import load_model, model_from_parameters, parameters_to_flat, save_model
from model.config import GPTConfig
from model.export_hf import ExportError, architecture, main
from model.gpt import GPT

os.environ["HF_HUB_OFFLINE"] = "1"  # everything comes from the exported folder
try:
    import torch
    import transformers
except ImportError as error:  # a missing test dependency is a failure, not a skip
    raise ImportError(
        f"tests/test_export_hf.py needs torch and transformers ({error}): "
        f"pip install -r requirements-dev.txt"
    ) from error

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "punchline"
TOLERANCE = 1e-4
TINY = {"block_size": 16, "n_layer": 2, "n_head": 2, "d_model": 32, "d_ff": 48}
MODERN = {"positional": "rope", "norm": "rmsnorm", "activation": "swiglu", "bias": False}
# Name -> (config fields, the transformers class it must load as).
VARIANTS = {
    "gpt2": ({}, "GPT2LMHeadModel"),
    "gpt2-untied": ({"tie_embeddings": False, "layer_norm_eps": 1e-6}, "GPT2LMHeadModel"),
    "llama": (
        {**MODERN, "tie_embeddings": False, "rope_base": 500.0, "layer_norm_eps": 1e-6},
        "LlamaForCausalLM",
    ),
    "qwen3": ({**MODERN, "qk_norm": True, "rope_base": 1000.0}, "Qwen3ForCausalLM"),
    "arcee": (
        {**MODERN, "activation": "relu2", "tie_embeddings": False, "layer_norm_eps": 1e-6},
        "ArceeForCausalLM",
    ),
    "apertus": (
        {**MODERN, "activation": "relu2", "qk_norm": True, "rope_base": 2000.0},
        "ApertusForCausalLM",
    ),
}
STRINGS = [
    "Why did the chicken cross the road?",
    "  two spaces, tabs\tand\nnew lines ",
    "Café déjà vu: 🐔🥚 中文 ¿qué?",
    "a literal <|endofjoke|> stays text",
    "",
]


def randomised(config: GPTConfig, seed: int) -> GPT:
    """A model of `config` whose every parameter is random: norm scales around 1, biases
    around 0, kernels scaled by their fan-in, embeddings of unit size."""
    abstract = nnx.eval_shape(lambda: GPT(config, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in parameters_to_flat(abstract).items():
        noise = rng.standard_normal(shape.shape).astype(np.float32)
        if name.endswith(".scale"):
            tensors[name] = 1.0 + 0.5 * noise
        elif name.endswith(".bias"):
            tensors[name] = 0.5 * noise
        elif name.endswith(".kernel"):
            tensors[name] = noise / np.sqrt(shape.shape[0])
        else:  # token and position embeddings
            tensors[name] = noise
    return model_from_parameters(abstract, tensors)


def export(folder: Path, out: Path) -> tuple[GPT, Tokenizer, torch.nn.Module]:
    """Export with the command's own entry point; return both models and the tokenizer."""
    assert main(["--checkpoint", str(folder), "--out", str(out)]) == 0
    model, tokenizer, _ = load_model(folder)
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        out, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    return model, tokenizer, hf


def largest_differences(model: GPT, hf: torch.nn.Module, tokens: np.ndarray) -> tuple[float, float]:
    """Max |difference| of next-token log-probabilities and of attention weights, (B, T)."""
    logits, attention = model(jnp.asarray(tokens), return_attention=True)  # (B, L, H, T, T)
    ours = np.asarray(jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1))
    with torch.no_grad():
        output = hf(input_ids=torch.from_numpy(tokens).long(), output_attentions=True)
    theirs = torch.log_softmax(output.logits, dim=-1).numpy()
    weights = torch.stack(output.attentions, dim=1).numpy()  # per layer (B, H, T, T)
    assert ours.shape == theirs.shape and weights.shape == attention.shape
    return float(np.abs(ours - theirs).max()), float(np.abs(np.asarray(attention) - weights).max())


def check(name: str, model: GPT, hf: torch.nn.Module, batches: list[np.ndarray]) -> None:
    diffs = [largest_differences(model, hf, tokens) for tokens in batches]
    log_prob, attention = max(d[0] for d in diffs), max(d[1] for d in diffs)
    report = f"{name}: max |log-prob diff| {log_prob:.2e}, max |attention diff| {attention:.2e}"
    print(report)
    assert log_prob < TOLERANCE and attention < TOLERANCE, report


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_random_tiny_model_computes_the_same_in_transformers(variant, tmp_path, joke_tokenizer):
    fields, class_name = VARIANTS[variant]
    config = GPTConfig(vocab_size=joke_tokenizer.get_vocab_size(), **TINY, **fields)
    model = randomised(config, seed=len(variant))
    folder = save_model(model, joke_tokenizer, tmp_path / "model", {})
    _, _, hf = export(folder, tmp_path / "hf")
    assert type(hf).__name__ == class_name
    # Sizes a random model barely shows in its outputs (eps against unit-sized vectors).
    if class_name == "GPT2LMHeadModel":
        assert hf.config.layer_norm_epsilon == config.layer_norm_eps
    else:
        assert hf.config.rms_norm_eps == config.layer_norm_eps
        assert hf.config.rope_parameters["rope_theta"] == config.rope_base
    assert hf.config.max_position_embeddings == config.block_size
    rng = np.random.default_rng(0)
    full = rng.integers(0, config.vocab_size, (2, config.block_size))  # the whole context
    short = rng.integers(0, config.vocab_size, (3, 5))
    check(variant, model, hf, [full, short])


def test_the_shipped_model_computes_the_same_in_transformers(tmp_path):
    model, tokenizer, hf = export(SHIPPED, tmp_path / "hf")
    assert type(hf).__name__ == "Qwen3ForCausalLM"  # RoPE, RMSNorm, SwiGLU, QK-norm
    start = end_of_joke_id(tokenizer)
    jokes = [[start, *encode(tokenizer, text)] for text in STRINGS[:3]]
    length = max(map(len, jokes))  # one batch, the shorter jokes ended by the end token
    jokes = np.array([joke + [start] * (length - len(joke)) for joke in jokes])
    rng = np.random.default_rng(1)
    full = rng.integers(0, model.config.vocab_size, (2, model.config.block_size))
    check("shipped", model, hf, [jokes, full])


@pytest.mark.parametrize("source", ["tiny", "shipped"])
def test_the_tokenizer_encodes_as_the_project_does(source, tmp_path, joke_tokenizer):
    if source == "shipped":
        folder = SHIPPED
    else:
        config = GPTConfig(vocab_size=joke_tokenizer.get_vocab_size(), **TINY)
        folder = save_model(GPT(config, rngs=nnx.Rngs(0)), joke_tokenizer, tmp_path / "m", {})
    assert main(["--checkpoint", str(folder), "--out", str(tmp_path / "hf")]) == 0
    _, tokenizer, _ = load_model(folder)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    start = end_of_joke_id(tokenizer)
    assert hf.bos_token_id == hf.eos_token_id == hf.pad_token_id == start
    for text in STRINGS:
        ids = encode(tokenizer, text)
        assert hf(text)["input_ids"] == [start, *ids], text  # every joke starts with the token
        assert hf(text, add_special_tokens=False)["input_ids"] == ids, text
        assert hf.decode([start, *ids], skip_special_tokens=True) == text


def test_an_unsupported_model_is_refused_in_one_line(tmp_path, joke_tokenizer):
    config = GPTConfig(vocab_size=joke_tokenizer.get_vocab_size(), **TINY, positional="sinusoidal")
    folder = save_model(GPT(config, rngs=nnx.Rngs(0)), joke_tokenizer, tmp_path / "m", {})
    result = subprocess.run(
        [sys.executable, "-m", "model.export_hf", "--checkpoint", folder, "--out", tmp_path / "hf"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert 'positional="sinusoidal"' in lines[0] and 'positional="learned"' in lines[0]
    assert not (tmp_path / "hf").exists()  # nothing written


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"activation": "relu2"}, ['activation="relu2"', 'activation="gelu"']),
        ({**MODERN, "activation": "gelu"}, ['activation="gelu"', 'activation="swiglu"']),
        ({"qk_norm": True}, ["qk_norm=true", "qk_norm=false"]),
        ({**MODERN, "bias": True}, ["bias=true", "bias=false"]),
        ({**MODERN, "norm": "layernorm"}, ['norm="layernorm"', 'norm="rmsnorm"']),
        ({**MODERN, "positional": "learned"}, ['positional="learned"', 'positional="rope"']),
    ],
    ids=[
        "gpt2-relu2",
        "llama-gelu",
        "gpt2-qk_norm",
        "llama-bias",
        "llama-layernorm",
        "llama-learned",
    ],
)
def test_each_field_no_architecture_expresses_is_named_with_its_fix(fields, named):
    config = dataclasses.replace(GPTConfig(), **fields)
    with pytest.raises(ExportError) as caught:
        architecture(config)
    message = str(caught.value)
    assert "\n" not in message and all(part in message for part in named), message


def test_bad_folders_are_one_line_errors_with_exit_code_2(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "nowhere"), "--out", str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err.startswith("error: ") and not (tmp_path / "hf").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["--checkpoint", str(SHIPPED), "--out", str(busy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not empty" in err and "--force" in err
    assert main(["--checkpoint", str(SHIPPED), "--out", str(SHIPPED), "--force"]) == 2
    assert "model folder itself" in capsys.readouterr().err
