"""Train (or fine-tune) a Punchline model: one command, CPU, GPU or TPU, one or many hosts.

    python train.py                                   # tiny model on the built-in jokes
    python train.py --data ../shared/data --preset small --out runs/small
    python train.py --out runs/small --resume         # continue a killed run
    python train.py --init-from checkpoints/punchline --data my_jokes.txt \\
        --out runs/mine --steps 300 --learning-rate 3e-4  # fine-tune on your own jokes

The run folder (--out) holds `metrics.jsonl`, `loss.png`, Orbax training checkpoints
in `state/` and, at the end, the exported model folder `model/` that the app and
`python -m model.generate` load.

The jit boundary is `train_step`: everything inside it (forward pass, loss, gradients,
clipping, AdamW update) is compiled by XLA into one program; everything outside is
plain Python that feeds it batches and writes logs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.experimental.multihost_utils import sync_global_devices
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tokenizers import Tokenizer
from tqdm import tqdm

from data import (
    CleaningConfig,
    Corpus,
    DataError,
    eval_batches,
    eval_chars,
    prepare_corpus,
    train_batch,
)
from data.tokenizer import decode, end_of_joke_id, load_tokenizer
from model.checkpoint import CheckpointError, load_model, save_model
from model.config import PRESETS, ConfigError, GPTConfig
from model.generate import Generator, SamplingSettings
from model.gpt import GPT, count_parameters
from model.host_memory import reuse_freed_memory
from model.loss import cross_entropy, loss_figures, masked_nll

TRAIN_CONFIG = "train_config.json"
METRICS = "metrics.jsonl"
BYTES_PER_PARAMETER_CHECKPOINT = 4 * 3  # float32 weights + two Adam moments
# Orbax's metadata per checkpoint (about 0.1 MB for the tiny preset), and the run folder's
# other files: tokenizer, metrics, loss curve, data report.
CHECKPOINT_OVERHEAD_BYTES = 1_000_000
FOLDER_OVERHEAD_BYTES = 1_000_000


def option(default: Any, help: str) -> Any:
    """A TrainConfig field with its --help text beside it (dataclass field metadata)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every knob of a run. Each field is also a command-line flag (see --help)."""

    preset: str = option(
        "tiny", "model size and training length: tiny (minutes on a laptop CPU), small, base"
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
    # Model sizes: None takes the preset's value (or the --init-from model's).
    n_layer: int | None = option(None, "transformer blocks")
    n_head: int | None = option(None, "attention heads per block (must divide d_model)")
    d_model: int | None = option(None, "width of the residual stream")
    d_ff: int | None = option(None, "hidden width of the feed-forward network")
    block_size: int | None = option(None, "context length in tokens")
    dropout: float | None = option(
        None, "dropout rate on the embeddings and residual branches while training"
    )
    positional: str | None = option(None, "positional encoding: sinusoidal, learned or rope")
    vocab_size: int = option(4096, "tokenizer vocabulary size (byte-level BPE)")
    # Optimisation.
    steps: int = option(300, "optimizer steps in the whole run")
    batch_size: int = option(32, "jokes-blocks per step, across all devices and hosts")
    learning_rate: float = option(2e-3, "peak learning rate (AdamW), after linear warmup")
    min_lr_ratio: float = option(
        0.1, "final learning rate as a fraction of the peak (cosine decay)"
    )
    warmup_steps: int = option(30, "steps of linear learning-rate warmup")
    weight_decay: float = option(0.1, "AdamW weight decay, applied to weight matrices only")
    grad_clip: float = option(1.0, "clip gradients to this global norm")
    beta2: float = option(0.99, "AdamW second-moment decay")
    fused_attention: bool = option(True, "train with the fused attention op (same maths, faster)")
    seed: int = option(0, "random seed: same seed, data and device give the same loss curve")
    # Data preparation.
    clean: bool = option(
        False, "drop jokes the offensive-language classifier flags (on for the shipped model)"
    )
    offensive_threshold: float = option(
        0.5,
        "with --clean, drop jokes whose offensive probability is above this (lower is stricter)",
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
    samples: int = option(3, "jokes printed at each evaluation (seeds 0, 1, ...)")
    export_dtype: str = option(
        "float32", "storage dtype of the exported weights: float32 or bfloat16"
    )


# Training settings per model preset; the model sizes themselves are in model/config.py.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(steps=300, batch_size=32, learning_rate=2e-3, warmup_steps=30, eval_every=150),
    "small": dict(steps=3000, batch_size=32, learning_rate=1e-3, warmup_steps=100, eval_every=250),
    "base": dict(steps=10000, batch_size=64, learning_rate=6e-4, warmup_steps=500, eval_every=500),
}


class TrainError(Exception):
    """A run that cannot start or go on; the message says what to change."""


# ----------------------------------------------------------------------------- setup


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python train.py",
        description=__doc__.split("\n\n")[0],
        epilog="Examples:\n" + __doc__.split("\n\n")[1] + "\n\n" + preset_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = TrainConfig()
    types = typing.get_type_hints(TrainConfig)  # the annotations, e.g. int | None
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        text = f.metadata["help"]
        kind = next(
            t for t in typing.get_args(types[f.name]) or (types[f.name],) if t is not type(None)
        )
        if kind is list or typing.get_origin(types[f.name]) is list:
            parser.add_argument(flag, nargs="+", default=[], help=text)
        elif kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        else:
            default = getattr(defaults, f.name)
            if "default:" not in text:  # a help text may name its own default
                shown = "the preset's, see below" if f.name in PRESET_ROWS else repr(default)
                text = f"{text} (default: {shown})"
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
    preset = args.preset or defaults.preset
    if preset not in PRESETS:
        parser.error(f"--preset {preset!r} is unknown: choose one of {', '.join(PRESETS)}")
    values = {**dataclasses.asdict(defaults), **TRAIN_PRESETS[preset], "preset": preset}
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
    width = max(len(row) for row in PRESET_ROWS) + 4
    lines = ["Presets (a flag given on the command line wins over its preset's value):"]
    lines.append("  " + "flag".ljust(width) + "".join(name.rjust(12) for name in values))
    for row in PRESET_ROWS:
        cells = "".join(f"{values[name][row]:>12}" for name in values)
        lines.append("  " + ("--" + row.replace("_", "-")).ljust(width) + cells)
    return "\n".join(lines)


def size_preset(config: GPTConfig) -> str:
    """The name of the preset whose model sizes `config` has, or "custom"."""
    for name, preset in PRESETS.items():
        if all(getattr(preset, f) == getattr(config, f) for f in SIZE_FLAGS):
            return name
    return "custom"


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


SIZE_FLAGS = ("n_layer", "n_head", "d_model", "d_ff", "block_size", "positional")
# The settings a --preset chooses: model sizes (model/config.py), then training settings.
PRESET_ROWS = (*SIZE_FLAGS, "dropout", *next(iter(TRAIN_PRESETS.values())))


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


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """AdamW with linear warmup and cosine decay, gradient clipping, and weight decay
    on weight matrices only (biases and layer-norm gains are not pulled towards zero)."""
    warmup = min(config.warmup_steps, config.steps)
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(config.steps, warmup + 1),  # counts the warmup; must outlast it
        end_value=config.learning_rate * config.min_lr_ratio,
    )
    return optax.chain(
        optax.clip_by_global_norm(config.grad_clip),
        optax.adamw(
            schedule,
            b2=config.beta2,
            weight_decay=config.weight_decay,
            mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2, params),
        ),
    )


# ----------------------------------------------------------------------------- jit


def make_steps(graphdef: nnx.GraphDef, fused: bool):
    """The two compiled functions of training: one optimizer step, one evaluation batch.

    Both take the whole training state (model parameters + optimizer state) as an
    explicit argument and return the new one: no hidden state crosses the jit boundary.
    """

    def train_step(state, x, y, key):
        model, optimizer = nnx.merge(graphdef, state)
        model.train()  # dropout on (a trace-time switch: the compiled step always drops)

        def loss_fn(model: GPT) -> jax.Array:
            logits, _ = model(x, rngs=nnx.Rngs(dropout=key), fused=fused)  # (B, T, V)
            return cross_entropy(logits, y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        _, new_state = nnx.split((model, optimizer))
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    def eval_step(state, x, y, mask):
        model, _ = nnx.merge(graphdef, state)
        model.eval()  # dropout off
        return masked_nll(model, x, y, mask, fused)

    # donate_argnums: the old state's buffers are reused for the new one (no copy).
    return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)


# ----------------------------------------------------------------------------- run


class Run:
    """One training run: its folder, data, compiled steps, state and logs."""

    def __init__(self, config: TrainConfig, resume: bool):
        self.config = config
        self.folder = Path(config.out)
        self.is_main = jax.process_index() == 0
        self.prepare_folder(resume)
        # Process 0 trains the tokenizer, fills the data cache and writes tokenizer.json;
        # the other processes then read those files instead of racing it for them.
        with main_process_first("data prepared"):
            base_model, tokenizer = self.load_base(resume)
            # Check the sizes before the data is prepared, so a bad flag fails at once.
            base = base_model.config if base_model else PRESETS[config.preset]
            sizes = model_config(config, base, fine_tuning=base_model is not None)
            self.corpus = self.prepare_data(tokenizer)
        # A tokenizer trained on a small corpus can have fewer entries than asked for.
        self.model_config = dataclasses.replace(
            sizes, vocab_size=self.corpus.tokenizer.get_vocab_size()
        ).validate()
        devices = jax.devices()
        if config.batch_size % len(devices):
            raise TrainError(
                f"--batch-size {config.batch_size} does not split over {len(devices)} devices: "
                f"use a multiple of {len(devices)}"
            )
        # One mesh axis, "data": each device gets a slice of the batch; parameters and
        # optimizer state are replicated; gradients are averaged across devices by the
        # all-reduce XLA inserts inside the compiled step.
        self.mesh = Mesh(np.array(devices), ("data",))
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        replicated = NamedSharding(self.mesh, P())

        model = GPT(self.model_config, rngs=nnx.Rngs(config.seed))
        if base_model is not None:
            _copy_parameters(base_model, model)
        optimizer = nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)
        self.graphdef, state = nnx.split((model, optimizer))
        self.state = jax.device_put(state, replicated)
        self.train_step, self.eval_step = make_steps(self.graphdef, config.fused_attention)
        self.generator = Generator(model, end_of_joke_id(self.corpus.tokenizer))
        self.n_params = count_parameters(model)
        self.step = 0
        self.checkpoints = ocp.CheckpointManager(
            (self.folder / "state").absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True),
        )
        if resume:
            self.restore()

    # --- folder, data, checkpoints

    def prepare_folder(self, resume: bool) -> None:
        folder = self.folder
        saved = folder / TRAIN_CONFIG
        if resume and not saved.is_file():
            raise TrainError(f"nothing to resume in {folder}: no {TRAIN_CONFIG}; drop --resume")
        if not resume and (folder / "state").exists():
            raise TrainError(
                f"{folder} already holds a run: pass --resume to continue it, "
                f"or choose another --out"
            )
        try:
            # Every process writes its part of each checkpoint, so every process checks
            # (with its own probe file, so that none deletes another's).
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".write-test-{jax.process_index()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as error:
            raise TrainError(
                f"cannot write to {folder} ({error.strerror}): choose another --out"
            ) from None
        # Only now may process 0 change the folder: a process still checking would take the
        # state/ folder this run is about to create for an earlier run's. (On CPU this first
        # barrier also connects the processes' gloo collectives, which must happen within
        # 30 s of each other; later collectives wait as long as they need to.)
        sync_global_devices("run folder checked")
        if not self.is_main:
            return
        if not resume:
            saved.write_text(json.dumps(dataclasses.asdict(self.config), indent=2) + "\n")
            (folder / METRICS).unlink(missing_ok=True)

    def load_base(self, resume: bool) -> tuple[GPT | None, Tokenizer | None]:
        """The model to fine-tune (--init-from) and the tokenizer to keep, if any."""
        base_model = tokenizer = None
        self.base_metadata: dict[str, Any] | None = None
        if self.config.init_from:
            try:
                base_model, tokenizer, self.base_metadata = load_model(self.config.init_from)
            except CheckpointError as error:
                raise TrainError(f"--init-from: {error}") from None
        if resume and (self.folder / "tokenizer.json").is_file():
            tokenizer = load_tokenizer(self.folder / "tokenizer.json")
        return base_model, tokenizer

    def prepare_data(self, tokenizer: Tokenizer | None) -> Corpus:
        config = self.config
        corpus = prepare_corpus(
            config.data or None,
            text_column=config.text_column,
            cleaning=CleaningConfig(
                min_chars=config.min_chars,
                max_chars=config.max_chars,
                drop_offensive=config.clean,
                offensive_threshold=config.offensive_threshold,
            ),
            val_fraction=config.val_fraction,
            vocab_size=config.vocab_size,
            cache_dir=Path(config.cache_dir),
            tokenizer=tokenizer,
        )
        if self.is_main:
            corpus.tokenizer.save(str(self.folder / "tokenizer.json"))
            (self.folder / "data_report.md").write_text(corpus.report.to_markdown() + "\n")
        return corpus

    def check_disk_space(self) -> None:
        """Fail now, not hours from now, if the checkpoints will not fit on the disk."""
        needed = disk_space_needed(self.n_params)
        free = shutil.disk_usage(self.folder).free
        if free < needed:
            raise TrainError(
                f"{self.folder} has {free / 1e6:.0f} MB free but checkpoints need about "
                f"{needed / 1e6:.0f} MB: free some space or choose another --out"
            )

    def save(self) -> None:
        self.checkpoints.save(
            self.step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(self.state),
                progress=ocp.args.JsonSave({"step": self.step}),
            ),
            force=True,
        )

    def restore(self) -> None:
        latest = self.checkpoints.latest_step()
        if latest is None:
            return  # killed before the first checkpoint: start again from step 0
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, self.state)
        restored = self.checkpoints.restore(
            latest,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract),
                progress=ocp.args.JsonRestore(),
            ),
        )
        self.state = restored["state"]
        self.step = int(restored["progress"]["step"])
        # Drop metrics logged after that checkpoint: those steps will be trained again.
        metrics = self.folder / METRICS
        if self.is_main and metrics.is_file():
            kept = [
                line
                for line in metrics.read_text().splitlines()
                if line and json.loads(line)["step"] <= self.step
            ]
            metrics.write_text("".join(line + "\n" for line in kept))

    # --- evaluation and logging

    def evaluate(self) -> dict[str, float]:
        """Validation loss (nats/token), perplexity and bits per character."""
        val = self.corpus.val
        cap = self.config.eval_tokens or None
        total_nll = total_tokens = 0.0
        batches = eval_batches(val, self.config.batch_size, self.model_config.block_size, cap)
        for batch in batches:
            x, y, mask = (self.process_rows(array) for array in batch)
            nll, count = self.eval_step(self.state, *self.shard(x, y), self.shard_one(mask))
            total_nll += float(nll)
            total_tokens += float(count)
        return loss_figures(total_nll, total_tokens, eval_chars(val, cap))

    def samples(self) -> list[str]:
        model, _ = nnx.merge(self.graphdef, self.state)
        self.generator.params = nnx.split(model)[1]
        tokenizer = self.corpus.tokenizer
        return [
            decode(tokenizer, self.generator.generate([], SamplingSettings(seed=s)).token_ids[1:])
            for s in range(self.config.samples)
        ]

    def log(self, record: dict[str, Any]) -> None:
        if self.is_main:
            with open(self.folder / METRICS, "a") as f:
                f.write(json.dumps(record) + "\n")

    # --- data onto devices

    def shard(self, x: np.ndarray, y: np.ndarray) -> tuple[jax.Array, jax.Array]:
        return self.shard_one(x), self.shard_one(y)

    def shard_one(self, local: np.ndarray) -> jax.Array:
        """This process's rows of the global batch -> one global array over all devices."""
        return jax.make_array_from_process_local_data(self.batch_sharding, local)

    def process_rows(self, global_batch: np.ndarray) -> np.ndarray:
        """This process's share of the rows of a batch every process computed whole."""
        rows = len(global_batch) // jax.process_count()
        return global_batch[jax.process_index() * rows : (jax.process_index() + 1) * rows]

    def local_batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        return train_batch(
            self.corpus.train,
            step,
            self.config.batch_size,
            self.model_config.block_size,
            self.config.seed,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )

    # --- the loop

    def train(self) -> dict[str, float]:
        config = self.config
        self.check_disk_space()
        tokens_per_step = config.batch_size * self.model_config.block_size
        base_key = jax.random.key(config.seed)
        progress = tqdm(
            total=config.steps,
            initial=self.step,
            disable=not self.is_main,
            unit="step",
            dynamic_ncols=True,
        )
        window_losses: list[jax.Array] = []
        window_start = time.perf_counter()
        window_first_step = self.step
        figures: dict[str, float] = {}
        interrupted = False

        def on_sigint(signum, frame):
            nonlocal interrupted
            interrupted = True  # finish the current step, save, then stop

        previous_handler = signal.signal(signal.SIGINT, on_sigint)
        try:
            while self.step < config.steps and not interrupted:
                x, y = self.shard(*self.local_batch(self.step))
                key = jax.random.fold_in(base_key, self.step)  # dropout noise of this step
                self.state, metrics = self.train_step(self.state, x, y, key)
                window_losses.append(metrics["loss"])
                self.step += 1
                progress.update(1)
                last = self.step == config.steps
                # Three independent schedules: a step may log, evaluate or checkpoint alone.
                log_now = self.step % config.log_every == 0 or last
                eval_now = self.step % config.eval_every == 0 or last
                if log_now or eval_now:
                    losses = self.finite_losses(window_losses, window_first_step)
                    elapsed = time.perf_counter() - window_start
                    tokens_per_s = tokens_per_step * len(losses) / elapsed
                    record = {
                        "step": self.step,
                        "train_loss": float(losses.mean()),
                        "tokens_per_s": tokens_per_s,
                        "grad_norm": float(metrics["grad_norm"]),
                        "tokens_seen": self.step * tokens_per_step,
                    }
                    if eval_now:
                        figures = self.evaluate()
                        record.update(figures)
                        if self.is_main:
                            for text in self.samples():
                                tqdm.write(f"  sample: {text[:200]!r}")
                    self.log(record)
                    progress.set_postfix(
                        loss=f"{record['train_loss']:.3f}",
                        tok_s=f"{tokens_per_s:,.0f}",
                        **({"val_bpc": f"{figures['val_bpc']:.3f}"} if "val_bpc" in record else {}),
                    )
                    window_losses, window_start, window_first_step = (
                        [],
                        time.perf_counter(),
                        self.step,
                    )
                if self.step % config.checkpoint_every == 0 or last:
                    # Never save a diverged state: check the steps not logged yet (if any) first.
                    self.finite_losses(window_losses, window_first_step)
                    self.save()
            # A Ctrl-C during a checkpoint step finds that step saved already (Orbax refuses
            # to save a step twice).
            if interrupted and self.checkpoints.latest_step() != self.step:
                self.finite_losses(window_losses, window_first_step)
                self.save()
        finally:
            signal.signal(signal.SIGINT, previous_handler)
            self.checkpoints.wait_until_finished()
            progress.close()
        if interrupted:
            raise KeyboardInterrupt
        return figures or self.evaluate()

    def finite_losses(self, window: list[jax.Array], first_step: int) -> np.ndarray:
        """The losses of the steps after `first_step`, or TrainError naming the first step
        whose loss is NaN or infinite (the state after it is diverged: never to be saved)."""
        losses = np.asarray(jax.device_get(window))
        if not np.isfinite(losses).all():
            bad = first_step + int(np.argmin(np.isfinite(losses))) + 1
            raise TrainError(
                f"loss became {losses[~np.isfinite(losses)][0]} at step {bad}: "
                f"lower --learning-rate or raise --warmup-steps; the last good "
                f"checkpoint in {self.folder / 'state'} is kept"
            )
        return losses

    def export(self, figures: dict[str, float], seconds: float) -> Path:
        model, _ = nnx.merge(self.graphdef, self.state)
        # What this run trained with, every size resolved (no None "from the preset"), and
        # the preset named only when the model really has that preset's sizes.
        train_config = dataclasses.asdict(self.config)
        train_config.update({name: getattr(self.model_config, name) for name in SIZE_FLAGS})
        train_config["dropout"] = self.model_config.dropout
        train_config["preset"] = size_preset(self.model_config)
        run = {
            "out": self.config.out,
            "init_from": self.config.init_from,
            "steps": self.step,
            "tokens_seen": self.step * self.config.batch_size * self.model_config.block_size,
            "train_seconds": round(seconds, 1),
            "learning_rate": self.config.learning_rate,
            "clean": self.config.clean,
            "offensive_threshold": self.config.offensive_threshold,
            "git_commit": _git_commit(),
            **{k: round(v, 4) for k, v in figures.items()},
        }
        metadata = {
            "sources": self.corpus.sources,
            "data_report": self.corpus.report.to_dict(),
            "train_jokes": self.corpus.n_train_jokes,
            "val_jokes": self.corpus.n_val_jokes,
            "steps": self.step,
            "tokens_seen": self.step * self.config.batch_size * self.model_config.block_size,
            "parameters": self.n_params,
            "train_seconds": round(seconds, 1),
            "devices": [str(d) for d in jax.devices()],
            "git_commit": _git_commit(),
            "train_config": train_config,
            # Every run that made these weights, oldest first: the base model's chain is
            # copied in, so it stays known when the base folder is gone.
            "lineage": [*(self.base_metadata or {}).get("lineage", []), run],
            **{k: round(v, 4) for k, v in figures.items()},
        }
        return save_model(
            model,
            self.corpus.tokenizer,
            self.folder / "model",
            metadata,
            dtype=self.config.export_dtype,
        )


def disk_space_needed(n_params: int) -> int:
    """Bytes a run of a model this size needs in its folder, counted generously: two kept
    checkpoints and a third being written, the exported model (float32 at most), small files."""
    checkpoint = n_params * BYTES_PER_PARAMETER_CHECKPOINT + CHECKPOINT_OVERHEAD_BYTES
    return 3 * checkpoint + n_params * 4 + FOLDER_OVERHEAD_BYTES


def _copy_parameters(source: GPT, target: GPT) -> None:
    """Fine-tuning: start from the trained weights (same shapes, checked at load)."""
    nnx.update(target, nnx.state(source, nnx.Param))


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def plot_loss_curve(folder: Path) -> Path:
    """loss.png: training loss and validation loss against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in (folder / METRICS).read_text().splitlines() if line]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot([r["step"] for r in records], [r["train_loss"] for r in records], label="train")
    val = [r for r in records if "val_loss" in r]
    ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(f"{folder.name}: cross-entropy")
    ax.grid(alpha=0.3)
    ax.legend()
    path = folder / "loss.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


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


def main(argv: list[str] | None = None) -> int:
    reuse_freed_memory()  # before JAX's first computation starts its threads
    config, args = parse_args(argv)
    try:
        initialize_distributed(args)
        if args.resume:
            # A resumed run keeps the configuration it started with; only --steps may
            # change, to extend it.
            saved = Path(config.out) / TRAIN_CONFIG
            if saved.is_file():
                config = TrainConfig(**json.loads(saved.read_text()))
                if args.steps is not None:
                    config.steps = args.steps
        started = time.perf_counter()
        run = Run(config, resume=args.resume)
        if run.is_main:
            print(
                f"model: {run.n_params:,} parameters, {run.model_config}\n"
                f"data: {run.corpus.n_train_jokes:,} training jokes, "
                f"{len(run.corpus.train.tokens):,} tokens; {run.corpus.n_val_jokes:,} validation "
                f"jokes\ndevices: {jax.device_count()} x {jax.devices()[0].platform}, "
                f"{jax.process_count()} process(es); starting at step {run.step}"
            )
        figures = run.train()
        if run.is_main:
            folder = run.export(figures, time.perf_counter() - started)
            plot_loss_curve(run.folder)
            summary = ", ".join(f"{k} {v:.4f}" for k, v in figures.items())
            print(f"exported {folder} ({summary}) in {time.perf_counter() - started:.0f} s")
    except (TrainError, DataError, ConfigError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: progress saved in {config.out}; continue with "
            f"`python train.py --out {config.out} --resume`",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
