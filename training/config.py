"""What a training run is told: the TrainConfig dataclass, its command-line flags, the presets.

Every TrainConfig field is a flag of `python train.py`: its help text sits beside it
(`option(default, help)`) and its type comes from its annotation, so a new setting is one new
field. `parse_args` turns the command line into a TrainConfig, with the chosen preset's
training settings (TRAIN_PRESETS) under the flags that were given; `model_config` does the same
for the model's sizes (model/config.py's presets). What is left unset after both is the
recipe's (RECIPES): its model components, dropout, optimizer and schedule.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from model.config import PRESETS, GPTConfig


def option(default: Any, help: str) -> Any:
    """A TrainConfig field with its --help text beside it (dataclass field metadata)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every knob of a run. Each field is also a command-line flag (see --help)."""

    preset: str = option(
        "tiny", "model size and training length: tiny (minutes on a laptop CPU), small, base"
    )
    recipe: Literal["modern", "classic"] = option(
        "modern",
        "how the model is built and trained where no flag says otherwise: modern (the "
        "measured best) or classic (GPT-2 as the seed material teaches it); the table at the "
        "end lists what each sets; --init-from keeps the loaded model's components",
    )
    data: list[str] = field(  # a list: a fresh one per config, so not option()
        default_factory=list,
        metadata={
            "help": "joke files or globs (CSV, TSV, JSON, JSONL, TXT, optionally .gz); "
            "default: the jokes shipped with the oneliners and pyjokes packages"
        },
    )
    text_column: str | None = option(
        None, "column or field holding the joke text (default: Joke / body / text)"
    )
    out: str = option(
        "runs/tiny",
        "run folder: metrics, loss curve, training checkpoints and the exported model "
        "(default: runs/PRESET)",
    )
    init_from: str | None = option(
        None, "fine-tune: start from this model folder and its tokenizer"
    )
    tokenizer_from: str | None = option(
        None,
        "train from scratch with this model folder's tokenizer, so that the run's token ids are "
        "the folder's (e.g. snapshots of a re-run to ship with that model)",
    )
    # Model sizes: None takes the preset's value (or the --init-from model's). The components
    # (positional to bias) and dropout: the recipe's (fine-tuning keeps the model's components).
    n_layer: int | None = option(None, "transformer blocks")
    n_head: int | None = option(None, "attention heads per block (must divide d_model)")
    d_model: int | None = option(None, "width of the residual stream")
    d_ff: int | None = option(None, "hidden width of the feed-forward network")
    block_size: int | None = option(None, "context length in tokens")
    dropout: float | None = option(
        None, "dropout rate on the embeddings and residual branches while training"
    )
    positional: str | None = option(None, "positional encoding: sinusoidal, learned or rope")
    norm: str | None = option(None, "normalisation: layernorm (GPT-2) or rmsnorm (Llama)")
    activation: str | None = option(
        None, "feed-forward non-linearity: gelu (GPT-2), relu2 or swiglu (Llama)"
    )
    qk_norm: bool | None = option(None, "normalise each head's queries and keys (Qwen3)")
    bias: bool | None = option(
        None, "biases in the linear layers and layer norms (GPT-2), or none (Llama)"
    )
    vocab_size: int = option(4096, "tokenizer vocabulary size (byte-level BPE)")
    # Optimisation.
    steps: int = option(300, "optimizer steps in the whole run")
    batch_size: int = option(32, "jokes-blocks per step, across all devices and hosts")
    rows: Literal["jokes", "windows"] = option(
        "jokes",
        "what a training row holds: jokes (whole jokes, each from its own start as the app "
        "writes, reshuffled every epoch) or windows (earlier releases': windows of the joke "
        "stream at random offsets, most starting mid-joke; kept for the ablation)",
    )
    time_budget: str | None = option(
        None,
        "train for this long instead of --steps, e.g. 90s, 30m, 1.5h: the run plans --steps "
        "from the pace of its own steps, again at every log until the schedule's cooldown "
        "needs it, so that training (compilation, steps, evaluations and the schedule's end "
        "included; not data preparation or export) ends on time; --resume keeps the count "
        "(default: none, use --steps)",
    )
    optimizer: Literal["adamw", "muon"] | None = option(
        None,
        "adamw: AdamW for every parameter; muon: Muon for the 2-D weight matrices inside the "
        "transformer blocks (attention and feed-forward kernels), AdamW for the rest "
        "(embeddings, norms, biases)",
    )
    learning_rate: float = option(
        2e-3, "peak learning rate of AdamW (with --optimizer muon: of the non-block parameters)"
    )
    muon_learning_rate: float = option(
        0.02, "peak learning rate of Muon (with --optimizer muon); momentum 0.95, Nesterov"
    )
    muon_weight_decay: float = option(
        0.0,
        "Muon's weight decay on the block matrices, multiplied by Muon's scheduled learning "
        "rate as optax does (0.1 at a rate of 0.02 shrinks them by 0.002 per step)",
    )
    schedule: Literal["cosine", "wsd"] | None = option(
        None,
        "learning-rate schedule after the linear warmup: cosine decay to the final rate, or "
        "wsd (warmup-stable-decay): flat at the peak, then a linear cooldown to the final rate",
    )
    min_lr_ratio: float = option(
        0.1, "final learning rate as a fraction of the peak (end of the cosine or the cooldown)"
    )
    cooldown_fraction: float = option(
        0.2, "with --schedule wsd: share of the steps, at the end, spent cooling down"
    )
    warmup_steps: int = option(30, "steps of linear learning-rate warmup")
    weight_decay: float = option(0.1, "AdamW weight decay, applied to weight matrices only")
    grad_clip: float = option(1.0, "clip gradients to this global norm (before either optimizer)")
    beta2: float = option(0.99, "AdamW second-moment decay")
    ema_decay: float = option(
        0.0,
        "keep an exponential moving average of the weights with this decay (e.g. 0.999; "
        "0: off); evaluations report both, the better one is exported",
    )
    fused_attention: bool | None = option(
        None,
        "train with the fused attention op, jax.nn.dot_product_attention (the same maths as the "
        "plain formula the app shows); default: on GPU and TPU, off on CPU, where the plain "
        "formula is faster (the small preset's step: 430 against 453 ms)",
    )
    seed: int = option(0, "random seed: same seed, data and device give the same loss curve")
    # Data preparation.
    clean: bool = option(
        False, "drop jokes the offensive-language classifier flags (on for the shipped model)"
    )
    offensive_threshold: float = option(
        0.5,
        "with --clean, drop jokes whose offensive probability is above this (lower is stricter)",
    )
    clean_topics: bool = option(
        True,
        "with --clean, also drop jokes that name a sensitive topic (data/sensitive_topics.json: "
        "groups of people, sex, sexual violence, self-harm, drugs, atrocities), as the app's "
        "clean mode does",
    )
    min_chars: int = option(10, "drop jokes shorter than this many characters")
    max_chars: int = option(800, "drop jokes longer than this many characters")
    val_fraction: float = option(
        0.05, "share of jokes held out for validation (split by joke, stable)"
    )
    cache_dir: str = option(
        ".cache/punchline", "where the tokenized corpus and tokenizer are cached between runs"
    )
    # Logging, evaluation and checkpoints.
    log_every: int = option(10, "steps between progress/metrics lines")
    eval_every: int = option(150, "steps between validation (loss, perplexity, bits per character)")
    eval_tokens: int = option(
        65_536, "validation tokens per evaluation (0: the whole validation split)"
    )
    checkpoint_every: int = option(200, "steps between Orbax training checkpoints")
    snapshots: str = option(
        "0.01,0.03,0.1,0.3,0.6,1",
        "fractions of the steps at which a float16 copy of the weights is kept in RUN/snapshots "
        "and exported with the model, for the app's attention over training (empty: none)",
    )
    samples: int = option(3, "jokes printed at each evaluation (seeds 0, 1, ...)")
    export_dtype: str = option(
        "float32", "storage dtype of the exported weights: float32 or bfloat16"
    )

    def __post_init__(self) -> None:
        """Fill every setting left unset (None) from the recipe; the model's components only
        when training from scratch, as --init-from keeps the loaded model's."""
        if self.recipe not in RECIPES:
            raise TrainError(
                f"--recipe {self.recipe!r} is unknown: use one of {', '.join(RECIPES)}"
            )
        for name, value in RECIPES[self.recipe].items():
            if getattr(self, name) is None and not (self.init_from and name in COMPONENTS):
                setattr(self, name, value)


# Training settings per model preset; the model sizes themselves are in model/config.py.
# small's batch of 16 is the ablation's and time to quality's: on a 2-core CPU, twice the
# steps of half the size learn more in the same time (benchmarks/README.md).
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(steps=300, batch_size=32, learning_rate=2e-3, warmup_steps=30, eval_every=150),
    "small": dict(steps=3000, batch_size=16, learning_rate=1e-3, warmup_steps=30, eval_every=250),
    "base": dict(steps=10000, batch_size=64, learning_rate=6e-4, warmup_steps=500, eval_every=500),
}
# What the model is, fixed when fine-tuning: its sizes (the preset's, model/config.py) and its
# components (the recipe's).
MODEL_SIZES = ("n_layer", "n_head", "d_model", "d_ff", "block_size")
COMPONENTS = ("positional", "norm", "activation", "qk_norm", "bias")
SIZE_FLAGS = (*MODEL_SIZES, *COMPONENTS)
# The settings a --preset chooses: model sizes, then training settings.
PRESET_ROWS = (*MODEL_SIZES, *next(iter(TRAIN_PRESETS.values())))
# What --recipe fills in where no flag chose. classic is the seed material's GPT-2, the
# model/config.py defaults that the teaching path reads, trained as in 2019. modern is what
# the 15-minute ablation measured best on the small preset (README, "Choosing by
# measurement"; experiments/ablation.py), as a whole: QK-norm hurt alone, helps within it.
_CLASSIC_MODEL = {name: getattr(GPTConfig(), name) for name in (*COMPONENTS, "dropout")}
RECIPES: dict[str, dict[str, Any]] = {
    "modern": dict(
        positional="rope",
        norm="rmsnorm",
        activation="relu2",
        qk_norm=True,
        bias=False,
        dropout=0.0,
        optimizer="muon",
        schedule="wsd",
    ),
    "classic": {**_CLASSIC_MODEL, "optimizer": "adamw", "schedule": "cosine"},
}
RECIPE_ROWS = tuple(RECIPES["modern"])


class TrainError(Exception):
    """A run that cannot start or go on; the message says what to change."""


def parse_args(argv: list[str] | None, usage: str) -> tuple[TrainConfig, argparse.Namespace]:
    """The run's TrainConfig from the command line, and every flag as parsed.

    `usage` is the command's docstring: its first paragraph describes the command, its second
    gives examples (shown above the preset table at the end of --help).
    """
    parser = argparse.ArgumentParser(
        prog="python train.py",
        description=usage.split("\n\n")[0],
        epilog="\n\n".join(
            ("Examples:\n" + usage.split("\n\n")[1], preset_table(), recipe_table())
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = unset_config()
    hints = typing.get_type_hints(TrainConfig)  # the annotations, e.g. int | None
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        text = f.metadata["help"]
        kind = _without_none(hints[f.name])  # e.g. int | None -> int
        if f.name in PRESET_ROWS or f.name in RECIPE_ROWS:
            shown = "the preset's" if f.name in PRESET_ROWS else "the recipe's"
            text = f"{text} (default: {shown}, see below)"
        elif typing.get_origin(kind) is Literal:
            text = f"{text} (default: {defaults[f.name]})"
        elif "default:" not in text and kind is not bool:  # a text may name its own default
            text = f"{text} (default: {defaults[f.name]!r})"
        if kind is list or typing.get_origin(kind) is list:
            parser.add_argument(flag, nargs="+", default=[], help=text)
        elif typing.get_origin(kind) is Literal:  # a choice: --help lists them
            parser.add_argument(flag, choices=typing.get_args(kind), help=text)
        elif kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        else:
            parser.add_argument(flag, type=kind, help=text)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="multi-host on a TPU VM slice, Slurm or Open MPI: find the other processes "
        "from the cluster's environment (elsewhere give --coordinator, --num-processes "
        "and --process-id)",
    )
    parser.add_argument(
        "--coordinator",
        default=os.environ.get("JAX_COORDINATOR_ADDRESS"),
        help="multi-host: HOST:PORT of process 0 (env JAX_COORDINATOR_ADDRESS)",
    )
    parser.add_argument(
        "--num-processes",
        type=int,
        default=_env_int("JAX_NUM_PROCESSES"),
        help="multi-host: number of processes (env JAX_NUM_PROCESSES)",
    )
    parser.add_argument(
        "--process-id",
        type=int,
        default=_env_int("JAX_PROCESS_ID"),
        help="multi-host: this process's index (env JAX_PROCESS_ID)",
    )
    args = parser.parse_args(argv)
    preset = args.preset or defaults["preset"]
    if preset not in PRESETS:
        parser.error(f"--preset {preset!r} is unknown: choose one of {', '.join(PRESETS)}")
    values = {**defaults, **TRAIN_PRESETS[preset], "preset": preset}
    if args.out is None:
        values["out"] = f"runs/{preset}"
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name)
        if given is not None and not (f.name == "data" and given == []):
            values[f.name] = given
    return TrainConfig(**values), args


def preset_table() -> str:
    """What each --preset sets, as a table for --help: model sizes, then training settings."""
    values = {
        name: {**PRESETS[name].to_dict(), **settings} for name, settings in TRAIN_PRESETS.items()
    }
    title = "Presets (a flag given on the command line wins over its preset's value):"
    return flag_table(title, values, PRESET_ROWS)


def recipe_table() -> str:
    """What each --recipe sets, as a table for --help."""
    title = (
        "Recipes (a flag given on the command line wins over its recipe's value;\n"
        "--init-from keeps the loaded model's components):"
    )
    return flag_table(title, RECIPES, RECIPE_ROWS)


def flag_table(title: str, columns: dict[str, dict[str, Any]], rows: tuple[str, ...]) -> str:
    """`title`, then one line per flag in `rows` with its value in each named column."""
    width = max(len(row) for row in rows) + 4
    lines = [title, "  " + "flag".ljust(width) + "".join(name.rjust(12) for name in columns)]
    for row in rows:
        cells = "".join(f"{values[row]!s:>12}" for values in columns.values())
        lines.append("  " + ("--" + row.replace("_", "-")).ljust(width) + cells)
    return "\n".join(lines)


def unset_config() -> dict[str, Any]:
    """Every TrainConfig field at its declared default, before the recipe fills the unset."""
    return {
        f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(TrainConfig)
    }


def size_preset(config: GPTConfig) -> str:
    """The name of the preset whose model sizes `config` has, or "custom"."""
    for name, preset in PRESETS.items():
        if all(getattr(preset, f) == getattr(config, f) for f in MODEL_SIZES):
            return name
    return "custom"


def model_config(config: TrainConfig, base: GPTConfig, fine_tuning: bool) -> GPTConfig:
    """The preset's (or fine-tuned model's) sizes with the flags that were given."""
    overrides = {
        name: getattr(config, name)
        for name in (*SIZE_FLAGS, "dropout")
        if getattr(config, name) is not None
    }
    if fine_tuning:
        changed = [n for n in SIZE_FLAGS if n in overrides and overrides[n] != getattr(base, n)]
        if changed:
            flags = ", ".join("--" + n.replace("_", "-") for n in changed)
            raise TrainError(
                f"{flags} cannot change when fine-tuning (--init-from fixes the model's sizes, "
                f"e.g. block_size={base.block_size} is the length of its position table): "
                f"drop {flags}"
            )
    return dataclasses.replace(base, **overrides).validate()


def _without_none(hint: Any) -> Any:
    """`X | None` -> X; any other annotation as it is."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(t for t in typing.get_args(hint) if t is not type(None))
    return hint


def _env_int(name: str) -> int | None:
    """An integer from the environment (the multi-host flags' defaults), None when unset."""
    value = os.environ.get(name)
    return int(value) if value else None
