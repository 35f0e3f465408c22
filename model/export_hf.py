"""Export a Punchline model folder as a Hugging Face `transformers` model folder.

    python -m model.export_hf --checkpoint checkpoints/punchline --out hf/punchline

The result loads with `AutoModelForCausalLM.from_pretrained(out)` and
`AutoTokenizer.from_pretrained(out)`, with no network, and computes the same next-token
probabilities and attention weights as `GPT.__call__` (tests/test_export_hf.py checks it).
Which Hugging Face architecture a model becomes follows from its GPTConfig:

    GPT-2 (GPT2LMHeadModel)      positional=learned, norm=layernorm, activation=gelu, bias=true
    Llama (LlamaForCausalLM)     positional=rope, norm=rmsnorm, activation=swiglu, bias=false
    Qwen3 (Qwen3ForCausalLM)     as Llama, with qk_norm=true
    Arcee (ArceeForCausalLM)     as Llama, with activation=relu2 (no gate: up, relu², down)
    Apertus (ApertusForCausalLM) as Arcee, with qk_norm=true

Any other combination (sinusoidal positions, relu2 with LayerNorm, LayerNorm with RoPE, ...)
exists in no standard architecture and is refused with the fields to change. tie_embeddings
may be either in all five.

Parameter names, block i (Punchline -> GPT-2). Flax kernels are (in, out), and so are
GPT-2's Conv1D weights: they are copied as they are.

    token_embedding.embedding            transformer.wte.weight
    positional.table.embedding           transformer.wpe.weight
    blocks.i.attention_norm.scale/bias   transformer.h.i.ln_1.weight/bias
    blocks.i.attention.query|key|value   transformer.h.i.attn.c_attn.weight/bias
      .kernel/bias                         (the three concatenated along the output axis)
    blocks.i.attention.output            transformer.h.i.attn.c_proj.weight/bias
    blocks.i.feed_forward_norm           transformer.h.i.ln_2.weight/bias
    blocks.i.feed_forward.widen          transformer.h.i.mlp.c_fc.weight/bias
    blocks.i.feed_forward.narrow         transformer.h.i.mlp.c_proj.weight/bias
    final_norm.scale/bias                transformer.ln_f.weight/bias
    lm_head.kernel (untied only)         lm_head.weight, transposed to (vocab, d_model)

Punchline -> Llama, Qwen3, Arcee and Apertus. torch's nn.Linear weights are (out, in): every
kernel is transposed.

    token_embedding.embedding            model.embed_tokens.weight
    blocks.i.attention_norm.scale        model.layers.i.input_layernorm.weight
                                           (Apertus: attention_layernorm)
    blocks.i.attention.query.kernel      model.layers.i.self_attn.q_proj.weight (transposed)
    blocks.i.attention.key.kernel        model.layers.i.self_attn.k_proj.weight (transposed)
    blocks.i.attention.value.kernel      model.layers.i.self_attn.v_proj.weight (transposed)
    blocks.i.attention.output.kernel     model.layers.i.self_attn.o_proj.weight (transposed)
    blocks.i.attention.query_norm.scale  model.layers.i.self_attn.q_norm.weight (Qwen3, Apertus)
    blocks.i.attention.key_norm.scale    model.layers.i.self_attn.k_norm.weight (Qwen3, Apertus)
    blocks.i.feed_forward_norm.scale     model.layers.i.post_attention_layernorm.weight
                                           (Apertus: feedforward_layernorm)
    blocks.i.feed_forward.gate.kernel    model.layers.i.mlp.gate_proj.weight (transposed;
                                           SwiGLU only)
    blocks.i.feed_forward.widen.kernel   model.layers.i.mlp.up_proj.weight (transposed)
    blocks.i.feed_forward.narrow.kernel  model.layers.i.mlp.down_proj.weight (transposed)
    final_norm.scale                     model.norm.weight
    lm_head.kernel (untied only)         lm_head.weight (transposed)

Both RoPEs rotate feature j of a head with feature j + d_head/2 by the angle
position * rope_base^(-2j/d_head) (Hugging Face's `rotate_half`), so no permutation of
the query and key weights is needed. The weights are written in float32. The tokenizer is
the model's own byte-level BPE, as a PreTrainedTokenizerFast whose bos, eos and pad token
is <|endofjoke|>: encoding a text puts that token first, as Punchline starts every joke
with it, and generation stops when the model writes it again. As in Punchline, the text
"<|endofjoke|>" inside a prompt stays text (split_special_tokens).

transformers is needed only here, and only when exporting: it is a test dependency
(requirements-dev.txt), not a runtime one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, processors

from model.checkpoint import CheckpointError, load_model, parameters_to_flat
from model.config import GPTConfig
from model.gpt import GPT

# The GPTConfig values each family needs; qk_norm picks Qwen3 over Llama, Apertus over Arcee.
GPT2_NEEDS: dict[str, Any] = {
    "positional": "learned",
    "norm": "layernorm",
    "activation": "gelu",
    "bias": True,
    "qk_norm": False,
}
LLAMA_NEEDS: dict[str, Any] = {
    "positional": "rope",
    "norm": "rmsnorm",
    "activation": "swiglu",
    "bias": False,
}
RELU2_NEEDS: dict[str, Any] = {**LLAMA_NEEDS, "activation": "relu2"}
CLASSES = {
    "gpt2": "GPT2LMHeadModel",
    "llama": "LlamaForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "arcee": "ArceeForCausalLM",
    "apertus": "ApertusForCausalLM",
}


class ExportError(Exception):
    """A model or output folder the export cannot use; the message names the fix."""


class MissingTransformers(ExportError):
    """transformers is not installed: not the input's fault (exit code 1, not 2)."""


def _mismatches(config: GPTConfig, needs: dict[str, Any]) -> dict[str, Any]:
    return {name: want for name, want in needs.items() if getattr(config, name) != want}


def architecture(config: GPTConfig) -> str:
    """'gpt2', 'llama', 'qwen3', 'arcee' or 'apertus': the standard architecture that
    computes this model.

    Raises ExportError naming the fields that none expresses, for the nearest one first.
    """
    gpt2 = _mismatches(config, GPT2_NEEDS)
    llama, relu2 = _mismatches(config, LLAMA_NEEDS), _mismatches(config, RELU2_NEEDS)
    if not gpt2:
        return "gpt2"
    if not llama:
        return "qwen3" if config.qk_norm else "llama"
    if not relu2:
        return "apertus" if config.qk_norm else "arcee"

    def needs(fields: dict[str, Any]) -> str:
        return ", ".join(f"{name}={json.dumps(want)}" for name, want in fields.items())

    families = [("GPT-2", gpt2), ("Llama/Qwen3", llama), ("Arcee/Apertus", relu2)]
    (near, missing), *far = sorted(families, key=lambda family: len(family[1]))  # stable
    fields = ", ".join(f"{name}={json.dumps(getattr(config, name))}" for name in missing)
    others = "; ".join(f"{name}: {needs(wants)}" for name, wants in far)
    raise ExportError(
        f"no standard Hugging Face architecture has {fields} with the rest of this model: "
        f"{near} needs {needs(missing)} ({others}); "
        f"train a model with those settings to export it"
    )


def hf_weights(model: GPT, arch: str) -> dict[str, np.ndarray]:
    """The model's parameters under their Hugging Face names, float32, in HF's layouts."""
    params = {
        name: np.asarray(value, np.float32) for name, value in parameters_to_flat(model).items()
    }
    used: set[str] = set()

    def get(name: str, transpose: bool = False) -> np.ndarray:
        used.add(name)
        return np.ascontiguousarray(params[name].T if transpose else params[name])

    config, out = model.config, {}
    if arch == "gpt2":
        out["transformer.wte.weight"] = get("token_embedding.embedding")
        out["transformer.wpe.weight"] = get("positional.table.embedding")
        for i in range(config.n_layer):
            src, dst = f"blocks.{i}.", f"transformer.h.{i}."
            # (HF part, Flax name in a Linear, Flax name in a LayerNorm)
            for part, linear, norm in (("weight", "kernel", "scale"), ("bias", "bias", "bias")):
                qkv = [get(f"{src}attention.{name}.{linear}") for name in ("query", "key", "value")]
                out[f"{dst}attn.c_attn.{part}"] = np.concatenate(qkv, axis=-1)  # q, k, v columns
                out[f"{dst}ln_1.{part}"] = get(f"{src}attention_norm.{norm}")
                out[f"{dst}attn.c_proj.{part}"] = get(f"{src}attention.output.{linear}")
                out[f"{dst}ln_2.{part}"] = get(f"{src}feed_forward_norm.{norm}")
                out[f"{dst}mlp.c_fc.{part}"] = get(f"{src}feed_forward.widen.{linear}")
                out[f"{dst}mlp.c_proj.{part}"] = get(f"{src}feed_forward.narrow.{linear}")
        out["transformer.ln_f.weight"] = get("final_norm.scale")
        out["transformer.ln_f.bias"] = get("final_norm.bias")
    else:
        out["model.embed_tokens.weight"] = get("token_embedding.embedding")
        for i in range(config.n_layer):
            src, dst = f"blocks.{i}.", f"model.layers.{i}."
            linear = {
                "self_attn.q_proj": "attention.query",
                "self_attn.k_proj": "attention.key",
                "self_attn.v_proj": "attention.value",
                "self_attn.o_proj": "attention.output",
                "mlp.up_proj": "feed_forward.widen",
                "mlp.down_proj": "feed_forward.narrow",
            }
            if config.activation == "swiglu":
                linear["mlp.gate_proj"] = "feed_forward.gate"
            for hf, ours in linear.items():  # nn.Linear: (out, in), a Flax kernel transposed
                out[f"{dst}{hf}.weight"] = get(f"{src}{ours}.kernel", transpose=True)
            norms = {
                "input_layernorm": "attention_norm",
                "post_attention_layernorm": "feed_forward_norm",
            }
            if arch == "apertus":
                norms = {
                    "attention_layernorm": "attention_norm",
                    "feedforward_layernorm": "feed_forward_norm",
                }
            if config.qk_norm:
                norms |= {
                    "self_attn.q_norm": "attention.query_norm",
                    "self_attn.k_norm": "attention.key_norm",
                }
            for hf, ours in norms.items():
                out[f"{dst}{hf}.weight"] = get(f"{src}{ours}.scale")
        out["model.norm.weight"] = get("final_norm.scale")
    if not config.tie_embeddings:
        out["lm_head.weight"] = get("lm_head.kernel", transpose=True)  # (vocab, d_model)
    left = sorted(set(params) - used)
    if left:  # a parameter with no place would silently change the model's outputs
        raise ExportError(f"parameters with no Hugging Face name: {left[:3]}; report this bug")
    return out


def hf_config(config: GPTConfig, arch: str, end_of_joke: int) -> Any:
    """The transformers config (GPT2Config, LlamaConfig, Qwen3Config, ArceeConfig or
    ApertusConfig) of this model."""
    import transformers

    # No pad_token_id here: it would equal the first token of every joke, and transformers
    # warns about padding whenever an input starts with it (generation_config.json has it).
    special = {"bos_token_id": end_of_joke, "eos_token_id": end_of_joke}
    shared = {"vocab_size": config.vocab_size, "tie_word_embeddings": config.tie_embeddings}
    if arch == "gpt2":
        hf = transformers.GPT2Config(
            n_positions=config.block_size,
            n_embd=config.d_model,
            n_layer=config.n_layer,
            n_head=config.n_head,
            n_inner=config.d_ff,
            activation_function="gelu_new",  # jax.nn.gelu's default: the tanh approximation
            layer_norm_epsilon=config.layer_norm_eps,
            resid_pdrop=config.dropout,  # Punchline drops branch outputs and embeddings,
            embd_pdrop=config.dropout,
            attn_pdrop=0.0,  # never attention weights
            **shared,
            **special,
        )
    else:
        kind = {
            "llama": transformers.LlamaConfig,
            "qwen3": transformers.Qwen3Config,
            "arcee": transformers.ArceeConfig,
            "apertus": transformers.ApertusConfig,
        }[arch]
        # Apertus has no head_dim setting (it is hidden_size / heads, as in Punchline), and a
        # pad token of its own (id 3) unless told otherwise.
        extra = {"pad_token_id": None} if arch == "apertus" else {"head_dim": config.d_head}
        hf = kind(
            hidden_size=config.d_model,
            intermediate_size=config.d_ff,
            num_hidden_layers=config.n_layer,
            num_attention_heads=config.n_head,
            num_key_value_heads=config.n_head,  # every head has its own keys and values
            # SwiGLU's gate, or ReLU² on the up projection
            hidden_act="silu" if config.activation == "swiglu" else "relu2",
            max_position_embeddings=config.block_size,
            rms_norm_eps=config.layer_norm_eps,  # also the eps of q_norm and k_norm
            rope_parameters={"rope_type": "default", "rope_theta": config.rope_base},
            attention_bias=False,
            attention_dropout=0.0,
            **shared,
            **special,
            **extra,
        )
    hf.architectures = [CLASSES[arch]]
    hf.dtype = "float32"
    return hf


def hf_tokenizer(tokenizer: Tokenizer, max_length: int) -> Any:
    """A PreTrainedTokenizerFast of the model's tokenizer that starts each text with
    <|endofjoke|>, which is also its eos and pad token."""
    from transformers import PreTrainedTokenizerFast

    from data.tokenizer import END_OF_JOKE, end_of_joke_id

    copy = Tokenizer.from_str(tokenizer.to_str())  # the model's own tokenizer stays as it is
    copy.post_processor = processors.TemplateProcessing(
        single=f"{END_OF_JOKE} $A",
        pair=f"{END_OF_JOKE} $A {END_OF_JOKE} $B:1",
        special_tokens=[(END_OF_JOKE, end_of_joke_id(copy))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=copy,
        bos_token=END_OF_JOKE,
        eos_token=END_OF_JOKE,
        pad_token=END_OF_JOKE,
        split_special_tokens=True,  # "<|endofjoke|>" typed in a prompt stays text
        model_max_length=max_length,
    )


def export(checkpoint: str | Path, out: str | Path, *, force: bool = False) -> str:
    """Write the Hugging Face folder `out` for the model folder `checkpoint`.

    Returns the transformers class it loads as. Raises CheckpointError for a missing or
    damaged model folder and ExportError for a model or output folder it cannot use.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file: pass a folder to write the export into")
    if out.is_dir() and checkpoint.is_dir() and out.resolve() == checkpoint.resolve():
        raise ExportError(f"{out} is the model folder itself: pass another --out folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} is not empty: pass a new folder, or --force to overwrite it")
    model, tokenizer, _ = load_model(checkpoint)
    arch = architecture(model.config)
    try:
        import transformers  # noqa: F401  (only to fail early, before writing anything)
    except ImportError:
        raise MissingTransformers(
            "the export needs transformers: pip install -r requirements-dev.txt"
        ) from None
    from transformers import GenerationConfig

    from data.tokenizer import end_of_joke_id
    from model.generate import SamplingSettings

    end_of_joke = end_of_joke_id(tokenizer)
    weights = hf_weights(model, arch)
    config = hf_config(model.config, arch, end_of_joke)
    try:
        out.mkdir(parents=True, exist_ok=True)
        save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
        config.save_pretrained(out)
        ids = {f"{name}_token_id": end_of_joke for name in ("bos", "eos", "pad")}
        sampling = SamplingSettings()  # model.generate's defaults, so generate() samples alike
        GenerationConfig(
            **ids,  # generation stops when the model writes <|endofjoke|>
            do_sample=True,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
        ).save_pretrained(out)
        hf_tokenizer(tokenizer, model.config.block_size).save_pretrained(out)
    except OSError as error:
        raise ExportError(
            f"cannot write {out} ({error.strerror or error}): pass a folder you can write to"
        ) from None
    return CLASSES[arch]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model.export_hf",
        description=(
            "Write a Punchline model folder as a Hugging Face transformers folder "
            "(config.json, model.safetensors, tokenizer files) that "
            "AutoModelForCausalLM.from_pretrained and AutoTokenizer.from_pretrained load "
            "offline. Learned positions + LayerNorm + GELU + biases become GPT-2; "
            "RoPE + RMSNorm + SwiGLU without biases become Llama, or Qwen3 with qk_norm; "
            "with ReLU² instead of SwiGLU, Arcee, or Apertus with qk_norm. "
            "Other models are refused with the settings to change. Needs transformers "
            "(pip install -r requirements-dev.txt)."
        ),
    )
    parser.add_argument(
        "--checkpoint",
        default="checkpoints/punchline",
        help="the model folder to export (default: checkpoints/punchline)",
    )
    parser.add_argument("--out", required=True, help="the folder to write (created if missing)")
    parser.add_argument(
        "--force", action="store_true", help="write into --out even if it is not empty"
    )
    args = parser.parse_args(argv)
    try:
        kind = export(args.checkpoint, args.out, force=args.force)
    except (CheckpointError, ExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1 if isinstance(error, MissingTransformers) else 2
    print(f"wrote {args.out}: a {kind} for transformers.AutoModelForCausalLM.from_pretrained")
    return 0


if __name__ == "__main__":
    sys.exit(main())
