"""Every size of the model, in one frozen dataclass.

Nothing in `model/` hard-codes a width, a head count or a context length: it all
comes from a `GPTConfig`, which is also what `config.json` in a model folder holds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

PositionalKind = Literal["sinusoidal", "learned", "rope"]
POSITIONAL_KINDS: tuple[str, ...] = ("sinusoidal", "learned", "rope")
NormKind = Literal["layernorm", "rmsnorm"]
NORM_KINDS: tuple[str, ...] = ("layernorm", "rmsnorm")
ActivationKind = Literal["gelu", "relu2", "swiglu"]
ACTIVATION_KINDS: tuple[str, ...] = ("gelu", "relu2", "swiglu")

# Fields added after the first models were exported. A config.json without them describes
# the classic model, so `from_dict` fills them with their defaults (the classic values).
ADDED_FIELDS: tuple[str, ...] = ("norm", "activation", "qk_norm", "bias")


class ConfigError(ValueError):
    """A model configuration that cannot work; the message says which field and why."""


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 4096  # tokens the model can read and write (byte-level BPE)
    block_size: int = 128  # context length: the most tokens attention can see at once
    n_layer: int = 4  # transformer blocks stacked on top of each other
    n_head: int = 4  # attention heads per block; d_model is split evenly between them
    d_model: int = 256  # width of the residual stream (the embedding size)
    d_ff: int = 1024  # hidden width of the feed-forward network (4 x d_model, as in GPT-2)
    dropout: float = 0.1  # share of embeddings and residual-branch outputs zeroed in training
    positional: PositionalKind = "learned"  # how the model knows where a token is
    rope_base: float = 10_000.0  # wavelength base of RoPE and of the sinusoidal table
    tie_embeddings: bool = True  # the output layer reuses the token embedding matrix
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02  # standard deviation of the initial weights (GPT-2)
    # Modern components, each off by default: the defaults are the classic GPT-2 of the
    # teaching path; (rmsnorm, swiglu, qk_norm, no bias, rope) is Qwen3, Llama without qk_norm.
    norm: NormKind = "layernorm"  # layernorm (GPT-2) or rmsnorm (Llama: no mean, no bias)
    activation: ActivationKind = "gelu"  # feed-forward non-linearity: gelu, relu2 or swiglu
    qk_norm: bool = False  # normalise each head's queries and keys (Qwen3, OLMo-2)
    bias: bool = True  # biases in the Linear layers and LayerNorms (False: Llama style)

    @property
    def d_head(self) -> int:
        """Width of one attention head: d_model split evenly between the heads."""
        return self.d_model // self.n_head

    def validate(self) -> GPTConfig:
        """Raise ConfigError naming the first field that cannot work; return self."""
        positive = ("vocab_size", "block_size", "n_layer", "n_head", "d_model", "d_ff")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name}={value!r} must be a positive integer")
        if self.d_model % self.n_head:
            raise ConfigError(
                f"d_model={self.d_model} is not divisible by n_head={self.n_head}: "
                f"choose a width that is a multiple of the head count"
            )
        if self.positional not in POSITIONAL_KINDS:
            kinds = ", ".join(POSITIONAL_KINDS)
            raise ConfigError(f"positional={self.positional!r} is unknown: use one of {kinds}")
        if self.positional == "rope" and self.d_head % 2:
            raise ConfigError(
                f"RoPE rotates pairs of features, so d_head={self.d_head} must be even: "
                f"change d_model or n_head"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout} must be in [0, 1)")
        for name, kinds in (("norm", NORM_KINDS), ("activation", ACTIVATION_KINDS)):
            value = getattr(self, name)
            if value not in kinds:
                raise ConfigError(f"{name}={value!r} is unknown: use one of {', '.join(kinds)}")
        for name in ("qk_norm", "bias"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigError(f"{name}={value!r} must be true or false")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GPTConfig:
        """Build a config from `config.json`; unknown or missing keys are a ConfigError.

        Only the ADDED_FIELDS may be missing: a folder exported before they existed holds
        the classic model, which their defaults describe.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; allowed: {sorted(names)}")
        missing = sorted(names - set(values) - set(ADDED_FIELDS))
        if missing:
            raise ConfigError(f"missing config keys {missing}")
        return cls(**values).validate()


# Model sizes by name. Training presets (batch size, steps, learning rate) live in
# training/config.py.
PRESETS: dict[str, GPTConfig] = {
    # Seconds per hundred steps on a laptop CPU: for trying things out and for tests.
    "tiny": GPTConfig(block_size=128, n_layer=2, n_head=4, d_model=128, d_ff=512),
    # The reference size of the speed benchmarks (about 4.2M parameters).
    "small": GPTConfig(block_size=128, n_layer=4, n_head=4, d_model=256, d_ff=1024),
    # For a GPU: about 11M parameters and a longer context.
    "base": GPTConfig(block_size=256, n_layer=6, n_head=6, d_model=384, d_ff=1536),
}
