"""Choose the model by measurement: train several variants on the same budget, compare them.

Each row is one `train.py` run with the same data, seed, batch size and budget: 15 minutes of
training by default (`--time-budget`; each row's steps follow from its own step time, so a
costlier component pays for itself), or the same steps for every row (`--steps`, e.g. on a
GPU). One component, the optimizer, the schedule or the size changes (see VARIANTS). The result
is a markdown table of validation bits per character, `ablation.json` and a plot of the
validation curves, all in `--out`.

    python -m experiments.ablation --data ../shared/data/short-jokes/*.csv \\
        ../shared/data/stupidstuff.json ../shared/data/rjokes-dev.tsv.gz --clean

A finished row is not trained again, so an interrupted ablation resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from model.config import PRESETS
from model.host_memory import reuse_freed_memory
from training.folder import METRICS


@dataclass(frozen=True)
class Variant:
    """One row: a name, what it changes, and the train.py flags that change it."""

    name: str
    change: str
    flags: tuple[str, ...]


# The modern recipe of the small-GPT speed records, every piece at once (Llama/Qwen3 shape).
MODERN = (
    *("--positional", "rope", "--norm", "rmsnorm", "--activation", "swiglu", "--qk-norm"),
    *("--no-bias", "--optimizer", "muon", "--schedule", "wsd", "--dropout", "0"),
)
# Every row starts from the classic recipe at the small preset's size (learned positions,
# LayerNorm, GELU, biases, AdamW with cosine decay, dropout 0.1) and changes one thing, but the
# last ones, which combine. Every row but small-windows trains on whole jokes, each from its
# own start (data/packing.py); every row is validated joke by joke, and the windows figure of
# earlier releases is in each run's metrics.
VARIANTS = (
    Variant("small-learned", "the classic default", ()),
    Variant(
        "small-windows",
        "rows of stream windows at random offsets (earlier releases), not whole jokes",
        ("--rows", "windows"),
    ),
    Variant(
        "small-sinusoidal",
        "sinusoidal positions (embeddings scaled)",
        ("--positional", "sinusoidal"),
    ),
    Variant("small-rope", "rotary positions (RoPE)", ("--positional", "rope")),
    Variant("small-rmsnorm", "RMSNorm", ("--norm", "rmsnorm")),
    Variant("small-swiglu", "SwiGLU feed-forward", ("--activation", "swiglu")),
    Variant("small-relu2", "ReLU² feed-forward", ("--activation", "relu2")),
    Variant("small-qk-norm", "QK-norm", ("--qk-norm",)),
    Variant("small-muon", "Muon for the block matrices", ("--optimizer", "muon")),
    Variant("small-wsd", "warmup-stable-decay schedule", ("--schedule", "wsd")),
    Variant("small-ema", "weight average (EMA 0.99)", ("--ema-decay", "0.99")),
    Variant("small-dropout-0", "no dropout", ("--dropout", "0")),
    Variant("small-vocab-2048", "2,048-entry vocabulary", ("--vocab-size", "2048")),
    Variant(
        "small-modern",
        "RoPE, RMSNorm, SwiGLU, QK-norm, no biases, Muon, warmup-stable-decay, no dropout "
        "(the shipped recipe)",
        MODERN,
    ),
    Variant(
        "small-modern-relu2",
        "small-modern with ReLU² for SwiGLU (train.py's default recipe, --recipe modern)",
        (*MODERN, "--activation", "relu2"),
    ),
    Variant(
        "small-modern-no-qk-norm",
        "small-modern without QK-norm (QK-norm alone did not help)",
        (*MODERN, "--no-qk-norm"),
    ),
    Variant("tiny", "2 layers, width 128", ("--preset", "tiny")),
)


# What every row starts from: train.py's classic recipe (its default is the measured best).
BASE = ("--preset", "small", "--recipe", "classic")
# A row killed part-way (a session's end) goes on from its last checkpoint, not from step 0.
CHECKPOINT_EVERY = 250


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.ablation",
        description="Train each model variant on the same budget and compare validation "
        "bits per character.",
    )
    parser.add_argument("--data", nargs="*", default=[], help="joke files, as for train.py")
    parser.add_argument("--clean", action="store_true", help="drop offensive jokes (as train.py)")
    parser.add_argument(
        "--time-budget",
        default="15m",
        help="training time per variant, as train.py's --time-budget (default: 15m)",
    )
    parser.add_argument(
        "--steps", type=int, help="the same optimizer steps for every variant, instead of a time"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="blocks per step")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak, for every row")
    parser.add_argument("--warmup", type=int, default=30, help="warmup steps, for every row")
    parser.add_argument("--eval-every", type=int, default=500, help="steps between evaluations")
    parser.add_argument("--out", default="runs/ablation", help="folder for runs and results")
    parser.add_argument(
        "--only", nargs="*", choices=[v.name for v in VARIANTS], help="run only these variants"
    )
    return parser.parse_args(argv)


def run_variant(variant: Variant, args: argparse.Namespace, folder: Path) -> list[dict]:
    """Train one variant (unless a finished run is already there); its metric records."""
    metrics = folder / METRICS
    if not (folder / "model" / "metadata.json").is_file():  # exported: the row is finished
        budget = ["--steps", str(args.steps)] if args.steps else ["--time-budget", args.time_budget]
        flags = [*BASE, *budget]
        flags += ["--batch-size", str(args.batch_size), "--eval-every", str(args.eval_every)]
        flags += ["--learning-rate", str(args.learning_rate), "--warmup-steps", str(args.warmup)]
        flags += ["--checkpoint-every", str(CHECKPOINT_EVERY), "--samples", "0"]
        flags += ["--out", str(folder), *(["--data", *args.data] if args.data else [])]
        flags += ["--clean"] if args.clean else []
        resume = ["--resume"] if metrics.exists() else []
        command = [sys.executable, "train.py", *flags, *variant.flags, *resume]
        print(f"\n== {variant.name}: {' '.join(command[1:])}", flush=True)
        subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[1])
    return [json.loads(line) for line in metrics.read_text().splitlines() if line]


def summarize(variant: Variant, records: list[dict], folder: Path) -> dict:
    """The row of the table: the final validation figures and what the run cost."""
    final = [r for r in records if "val_bpc" in r][-1]
    metadata = json.loads((folder / "model" / "metadata.json").read_text())
    return {
        "variant": variant.name,
        "change": variant.change,
        "parameters": metadata["parameters"],
        "steps": metadata["steps"],
        "tokens_seen": metadata["tokens_seen"],
        "train_seconds": metadata["train_seconds"],
        "val_loss": round(final["val_loss"], 4),
        "val_bpc": round(final["val_bpc"], 4),
        "curve": [(r["step"], r["val_bpc"]) for r in records if "val_bpc" in r],
    }


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| variant | change | parameters | steps | val loss | val bits/char | train time |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    best = min(row["val_bpc"] for row in rows)
    for row in rows:
        bpc = f"{row['val_bpc']:.3f}"
        lines.append(
            f"| {row['variant']} | {row['change']} | {row['parameters'] / 1e6:.2f}M "
            f"| {row['steps']:,} "
            f"| {row['val_loss']:.3f} | {f'**{bpc}**' if row['val_bpc'] == best else bpc} "
            f"| {row['train_seconds'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    colors = plt.get_cmap("tab20").colors  # one colour a row, up to 20 rows
    for row, color in zip(rows, colors, strict=False):
        steps, bpc = zip(*row["curve"], strict=True)
        ax.plot(steps, bpc, "o-", color=color, label=f"{row['variant']} ({row['val_bpc']:.3f})")
    ax.set_xlabel("step")
    ax.set_ylabel("validation bits per character")
    ax.set_title("Ablation: same data, seed and budget per variant")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")  # beside the curves
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    reuse_freed_memory()  # before JAX's first computation starts its threads
    args = parse_args(argv)
    out = Path(args.out)
    chosen = [v for v in VARIANTS if not args.only or v.name in args.only]
    rows = []
    for variant in chosen:
        folder = out / variant.name
        rows.append(summarize(variant, run_variant(variant, args, folder), folder))
    table = markdown_table(rows)
    rows_of = f"{args.batch_size} x {PRESETS['small'].block_size} tokens"
    budget = f"{args.steps} steps of {rows_of}" if args.steps else f"{args.time_budget}, {rows_of}"
    print(f"\nAblation ({budget} per variant)\n\n{table}")
    (out / "ablation.md").write_text(f"Budget: {budget} per variant.\n\n{table}\n")
    (out / "ablation.json").write_text(json.dumps(rows, indent=2))
    plot(rows, out / "ablation.png")
    print(f"\nwrote {out / 'ablation.md'}, {out / 'ablation.json'} and {out / 'ablation.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
