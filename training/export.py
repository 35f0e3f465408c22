"""The end of a run: the model folder RUN/model with its metadata, and the loss curve.

The metadata says how the weights were made: the data, the training settings with every
model size resolved, the figures at the end, and the lineage, every run that made these
weights (a fine-tuned model's chain starts with its base model's runs). A run that kept a
moving average of its weights (--ema-decay) exports whichever of the raw and the averaged
weights validates better, and says which.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
from flax import nnx

from data.originality_index import index_arrays
from model.checkpoint import save_model
from model.snapshots import save_snapshots
from training.average import averaged_model_state
from training.config import SIZE_FLAGS, size_preset
from training.folder import read_records
from training.head_analyses import head_analyses, stream_jokes
from training.snapshots import run_snapshots, with_roles

if TYPE_CHECKING:
    from training.run import Run


def export_model(run: Run, figures: dict[str, float], seconds: float) -> Path:
    """Save the run's model, tokenizer and metadata to RUN/model; the folder's path."""
    model, _ = nnx.merge(run.graphdef, run.state)
    weights = exported_weights(figures)
    if weights == "ema":
        model = nnx.merge(nnx.graphdef(model), averaged_model_state(run.graphdef, run.state))
    figure_fields = exported_figures(figures, weights)
    config, sizes = run.config, run.model_config
    # What this run trained with, every size resolved (no None "from the preset"), and
    # the preset named only when the model really has that preset's sizes.
    train_config = dataclasses.asdict(config)
    train_config.update({name: getattr(sizes, name) for name in SIZE_FLAGS})
    train_config["dropout"] = sizes.dropout
    train_config["preset"] = size_preset(sizes)
    tokens_seen = run.step * config.batch_size * sizes.block_size
    this_run = {
        "out": config.out,
        "init_from": config.init_from,
        "steps": run.step,
        "tokens_seen": tokens_seen,
        "train_seconds": round(seconds, 1),
        "learning_rate": config.learning_rate,
        "clean": config.clean,
        "offensive_threshold": config.offensive_threshold,
        "git_commit": _git_commit(),
        **figure_fields,
    }
    metadata = {
        "sources": run.corpus.sources,
        "data_report": run.corpus.report.to_dict(),
        "train_jokes": run.corpus.n_train_jokes,
        "val_jokes": run.corpus.n_val_jokes,
        "steps": run.step,
        "tokens_seen": tokens_seen,
        "parameters": run.n_params,
        "train_seconds": round(seconds, 1),
        "devices": [str(d) for d in jax.devices()],
        "git_commit": _git_commit(),
        "train_config": train_config,
        # Every run that made these weights, oldest first: the base model's chain is
        # copied in, so it stays known when the base folder is gone.
        "lineage": [*(run.base_metadata or {}).get("lineage", []), this_run],
        **figure_fields,
    }
    tokenizer = run.corpus.tokenizer
    # Each head's mean output on validation jokes (the app's mean ablation), and its role.
    means, roles = head_analyses(model, tokenizer, stream_jokes(run.corpus.val))
    # The training jokes' hashed n-grams, no text: the originality check without the data.
    index = index_arrays(run.corpus.train_jokes)
    # The weights along the way (--snapshots), each with its heads' roles then.
    kept = run_snapshots(run.folder, run.step)
    snapshots = None
    if kept:
        note = f"this model's own run ({config.out}: {run.step} steps)"
        jokes = stream_jokes(run.corpus.val)
        snapshots = with_roles(model, kept, run.step, tokens_seen // max(run.step, 1), jokes, note)
    folder = save_model(
        model,
        tokenizer,
        run.folder / "model",
        metadata,
        config.export_dtype,
        head_means=means,
        originality_index=index,
        head_roles=roles,
    )
    if snapshots is not None:
        save_snapshots(folder, snapshots)
    return folder


def exported_weights(figures: dict[str, float]) -> str:
    """ "ema" when the weights' moving average has the lower validation bits per character,
    else "raw" (also when the run kept no average)."""
    return "ema" if figures.get("ema_val_bpc", math.inf) < figures["val_bpc"] else "raw"


def exported_figures(figures: dict[str, float], weights: str) -> dict[str, Any]:
    """The metadata's figures: which weights were exported, val_* of those weights, and with
    an average both sets, as raw_val_* and ema_val_*."""
    raw = {name: value for name, value in figures.items() if not name.startswith("ema_")}
    ema = {name[4:]: value for name, value in figures.items() if name.startswith("ema_")}
    chosen = ema if weights == "ema" else raw
    fields: dict[str, Any] = {"exported_weights": weights}
    fields.update({name: round(value, 4) for name, value in chosen.items()})
    if ema:
        fields.update({f"raw_{k}": round(v, 4) for k, v in raw.items()})
        fields.update({f"ema_{k}": round(v, 4) for k, v in ema.items()})
    return fields


def plot_loss_curve(folder: Path) -> Path:
    """loss.png: training loss and validation loss against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_records(folder)
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


def _git_commit() -> str:
    """The commit of the code that trained, or "unknown" outside a git checkout."""
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
