"""Speed of training, generation and the app, against the matmul peak and a PyTorch reference.

    python -m benchmarks                       # the full run (about 10 minutes on 2 cores)
    python -m benchmarks --quick               # fewer rounds (within 5 minutes on 2 cores)
    python -m benchmarks --json results.json   # also write every figure as JSON

What it measures (benchmarks/README.md has the latest table and what it means):

- training: train.py's own step (make_optimizer + make_train_step: forward, loss, gradients,
  clipping, AdamW) at the reference size, the `small` preset with a batch of 32 x 128 tokens;
  tokens per second, milliseconds per step, compile time of the first step, and model FLOPs
  utilisation against the peak of a large float32 matmul measured in the same run;
- the same step in PyTorch eager (benchmarks/torch_reference.py), alternating rounds with JAX
  so that both see the same machine state; their ratio is the median of the pairs;
- generation: milliseconds per token of model.generate.Generator (KV cache, every attention
  map kept, as the app uses it), the first call (compilation), and the same joke without the
  cache (the full forward pass over the context for each token);
- the app: seconds from `python app.py` to a server that answers, then one joke by API.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.app_speed import benchmark_app
from data import Batch
from model.config import PRESETS, GPTConfig
from model.generate import Generator, SamplingSettings
from model.gpt import GPT
from model.host_memory import reuse_freed_memory
from model.sampling import sample_token
from training.config import TrainConfig
from training.optimizer import make_optimizer
from training.steps import make_train_step

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "punchline"
REFERENCE = PRESETS["small"]  # 4 layers, 4 heads, width 256, context 128, vocabulary 4,096
BATCH = 32
JOKE_TOKENS = 64
# Tokens per joke in the training rows (the joke corpora average about 40 with 4,096 entries).
MEAN_JOKE_TOKENS = 40


# ----------------------------------------------------------------------------- machine


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cores() -> int:
    """CPU cores this process may run on (what JAX and torch threads share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": cores(),
        "devices": [str(d) for d in jax.devices()],
        "load_average_1min": os.getloadavg()[0],  # > 0.5 or so: another process shares the CPU
        "python": platform.python_version(),
        "jax": jax.__version__,
        "torch": torch_version(),
    }


# ----------------------------------------------------------------------------- timing


def seconds_per_call(run: Callable[[], Any], calls: int) -> float:
    """Wall-clock seconds per call of `run`, which must block until its work is done."""
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - start) / calls


def matmul_peak_gflops(size: int = 2048, calls: int = 5) -> float:
    """Float32 matmul throughput of the devices JAX uses: the ceiling for training."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, a).block_until_ready()  # compile
    best = min(seconds_per_call(lambda: matmul(a, a).block_until_ready(), 1) for _ in range(calls))
    return 2 * size**3 / best / 1e9


def train_flops_per_token(config: GPTConfig) -> float:
    """Model FLOPs of one training token (forward + backward = 3 x forward).

    Every weight matrix costs 2 FLOPs per weight per token forward (the tied output layer
    included, the embedding lookups not); attention adds 2 x 2 x T x d_model per layer
    forward for the scores and the weighted values over the full T x T square.
    """
    c = config
    weights = c.n_layer * (4 * c.d_model**2 + 2 * c.d_model * c.d_ff) + c.d_model * c.vocab_size
    attention = c.n_layer * 4 * c.block_size * c.d_model
    return 3 * (2 * weights + attention)


# ----------------------------------------------------------------------------- training


class JaxTraining:
    """train.py's compiled step on random tokens: exactly the program training runs."""

    def __init__(self, config: GPTConfig, batch: int, seed: int = 0):
        # AdamW, as the PyTorch side: the classic recipe's optimizer (the model is `config`).
        settings = TrainConfig(recipe="classic", batch_size=batch, steps=1000)
        model = GPT(config, rngs=nnx.Rngs(seed))
        optimizer = nnx.Optimizer(model, make_optimizer(settings), wrt=nnx.Param)
        graphdef, self.state = nnx.split((model, optimizer))
        self._step = make_train_step(graphdef, fused=True)
        rng = np.random.default_rng(seed)
        shape = (batch, config.block_size)
        # Rows of jokes of MEAN_JOKE_TOKENS side by side, as data/packing.py lays them out.
        index = np.broadcast_to(np.arange(config.block_size), shape)
        self.batch = Batch(
            *(
                jnp.asarray(array, jnp.int32)
                for array in (
                    rng.integers(0, config.vocab_size, shape),
                    rng.integers(0, config.vocab_size, shape),
                    index % MEAN_JOKE_TOKENS,
                    1 + index // MEAN_JOKE_TOKENS,
                )
            )
        )
        self.key = jax.random.key(seed)
        self.total_steps = np.int32(settings.steps)  # the schedule's length
        self.tokens_per_step = batch * config.block_size
        start = time.perf_counter()
        self.loss = self.step()  # the first call traces and compiles
        self.compile_seconds = time.perf_counter() - start

    def step(self) -> float:
        self.state, metrics = self._step(self.state, self.batch, self.key, self.total_steps)
        return float(metrics["loss"])  # waits for the step to finish


def torch_training(config: GPTConfig, batch: int, threads: int) -> Callable[[], float] | None:
    """The PyTorch reference step on random tokens, or None if torch is not installed."""
    try:
        import torch

        from benchmarks.torch_reference import make_train_step as make_torch_train_step
    except ImportError:
        return None
    torch.set_num_threads(threads)
    step = make_torch_train_step(config)
    generator = torch.Generator().manual_seed(0)
    shape = (batch, config.block_size)
    x = torch.randint(0, config.vocab_size, shape, generator=generator)
    y = torch.randint(0, config.vocab_size, shape, generator=generator)
    step(x, y)  # first call: allocations, thread pool start
    return lambda: step(x, y)


def benchmark_training(
    config: GPTConfig = REFERENCE,
    batch: int = BATCH,
    rounds: int = 5,
    steps_per_round: int = 5,
    peak_gflops: float | None = None,
) -> dict[str, Any]:
    """JAX (and PyTorch, if installed) training throughput, in alternating rounds."""
    jax_training = JaxTraining(config, batch)
    jax_training.step()  # one more warm step: the first run of a program is slower
    torch_step = torch_training(config, batch, threads=cores())
    jax_times, torch_times = [], []
    for _ in range(rounds):
        jax_times.append(seconds_per_call(jax_training.step, steps_per_round))
        if torch_step is not None:
            torch_times.append(seconds_per_call(torch_step, steps_per_round))
    tokens = jax_training.tokens_per_step
    seconds = statistics.median(jax_times)
    result: dict[str, Any] = {
        "train_config": {**config.to_dict(), "batch_size": batch},
        "train_tokens_per_s": tokens / seconds,
        "train_ms_per_step": 1000 * seconds,
        "train_rounds": rounds,
        "train_steps_per_round": steps_per_round,
        "first_step_compile_s": jax_training.compile_seconds,
        "train_loss_finite": bool(np.isfinite(jax_training.loss)),
    }
    if peak_gflops:
        achieved = train_flops_per_token(config) * tokens / seconds / 1e9
        result |= {"train_gflops": achieved, "train_mfu": achieved / peak_gflops}
    if torch_step is None:
        result |= {"torch_tokens_per_s": None, "train_ratio": None, "torch_note": "not installed"}
        return result
    # JAX/PyTorch speed of each round: both ran back to back on the same machine state.
    ratios = [t / j for j, t in zip(jax_times, torch_times, strict=True)]
    return result | {
        "torch_tokens_per_s": tokens / statistics.median(torch_times),
        "torch_ms_per_step": 1000 * statistics.median(torch_times),
        "torch_threads": cores(),
        "train_ratio": statistics.median(ratios),
        "train_ratio_min": min(ratios),
        "train_ratio_max": max(ratios),
    }


# ----------------------------------------------------------------------------- generation


def generation_model(config: GPTConfig, shipped: bool) -> tuple[GPT, int, str]:
    """The shipped model and its end-of-joke id if asked for and present, else random weights."""
    from data.tokenizer import end_of_joke_id
    from model.checkpoint import load_model

    if shipped and (SHIPPED / "config.json").is_file():
        model, tokenizer, _ = load_model(SHIPPED)
        return model, end_of_joke_id(tokenizer), str(SHIPPED.relative_to(ROOT))
    return GPT(config, rngs=nnx.Rngs(0)), 0, "random weights"


def full_forward_step(model: GPT) -> Callable[[jax.Array, jax.Array, jax.Array], int]:
    """One token without a cache: the whole context through model(..., return_attention=True).

    The context is padded to block_size so that it compiles once; the causal mask keeps the
    padding from changing anything at `position`. The token is then chosen on the host, as
    the generator does.
    """
    graphdef, params = nnx.split(model)

    @jax.jit
    def step(params, tokens: jax.Array, position: jax.Array, key: jax.Array):
        logits, attention = nnx.merge(graphdef, params)(tokens, return_attention=True)
        noise = jax.random.gumbel(key, logits.shape[-1:])
        return logits[0, position], noise, attention[:, :, :, position]

    def next_token(tokens: jax.Array, position: jax.Array, key: jax.Array) -> int:
        logits, noise, _ = step(params, tokens, position, key)
        return sample_token(np.asarray(logits), np.asarray(noise), 0.8, 50, 0.95)

    return next_token


def benchmark_generation(
    model: GPT, end_of_joke: int, jokes: int = 3, tokens: int = JOKE_TOKENS
) -> dict[str, Any]:
    """Milliseconds per token of a joke with every attention map, with and without the cache."""
    settings = SamplingSettings(max_new_tokens=tokens)
    start = time.perf_counter()
    generator = Generator(model, end_of_joke)
    generator.generate([], settings)
    first_call = time.perf_counter() - start
    compiled = generator._step._cache_size()

    positions = 0
    start = time.perf_counter()
    for seed in range(jokes):
        joke = generator.generate([], SamplingSettings(max_new_tokens=tokens, seed=seed))
        positions += len(joke.token_ids)  # one decode step per token, the start token included
    cached = (time.perf_counter() - start) / positions
    # Other lengths, prompts and settings must reuse the compiled step.
    for seed, prompt, length in ((7, [end_of_joke] * 5, 3), (8, [], model.config.block_size)):
        varied = SamplingSettings(temperature=0.0, top_k=0, top_p=0.5, max_new_tokens=length)
        generator.generate(prompt, SamplingSettings(**{**varied.__dict__, "seed": seed}))
    recompilations = generator._step._cache_size() - compiled

    step = full_forward_step(model)
    context = jnp.full((1, model.config.block_size), end_of_joke, jnp.int32)
    key = jax.random.key(0)
    step(context, jnp.int32(0), key)  # compile
    start = time.perf_counter()
    for position in range(tokens):
        token = step(context, jnp.int32(position), jax.random.fold_in(key, position))
        context = context.at[0, position + 1].set(token)
    uncached = (time.perf_counter() - start) / tokens
    return {
        "gen_ms_per_token": 1000 * cached,
        "gen_ms_per_token_nocache": 1000 * uncached,
        "gen_first_call_s": first_call,
        "gen_recompilations": recompilations,
        "gen_tokens_timed": positions,
    }


# ----------------------------------------------------------------------------- report


def run(
    quick: bool,
    app: bool = True,
    config: GPTConfig = REFERENCE,
    batch: int = BATCH,
    shipped: bool = True,
) -> dict[str, Any]:
    """Every benchmark; `config`, `batch` and shipped=False let a test run them on a tiny model."""
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine(),
    }
    print(f"{results['machine']['cpu']}, {cores()} cores, jax {jax.__version__}", flush=True)
    results["matmul_peak_gflops"] = matmul_peak_gflops()
    rounds, steps = (3, 3) if quick else (7, 5)
    peak = results["matmul_peak_gflops"]
    results |= benchmark_training(config, batch, rounds, steps, peak_gflops=peak)
    print(f"training: {results['train_tokens_per_s']:,.0f} tokens/s", flush=True)
    model, end_of_joke, source = generation_model(config, shipped)
    results["gen_model"] = source
    results |= benchmark_generation(model, end_of_joke, jokes=2 if quick else 5)
    print(f"generation: {results['gen_ms_per_token']:.2f} ms/token", flush=True)
    results["app_ready_s"] = None
    if app and shipped and (SHIPPED / "config.json").is_file():
        results |= benchmark_app(SHIPPED, JOKE_TOKENS)
    return results


def table(results: dict[str, Any]) -> str:
    """The figures as a Markdown table (the same one benchmarks/README.md shows)."""

    def number(key: str, digits: int = 0, scale: float = 1.0) -> str:
        value = results.get(key)
        return "n/a" if value is None else f"{value * scale:,.{digits}f}"

    torch_note = results.get("torch_note")
    ratio = (
        f"{number('train_ratio', 2)}x (min {number('train_ratio_min', 2)}, "
        f"max {number('train_ratio_max', 2)})"
        if results.get("train_ratio")
        else f"n/a (torch {torch_note})"
    )
    rows = [
        ("matmul peak (float32, 2048^3)", f"{number('matmul_peak_gflops')} GFLOP/s"),
        ("JAX training", f"{number('train_tokens_per_s')} tokens/s"),
        ("JAX training step", f"{number('train_ms_per_step', 1)} ms"),
        ("JAX model FLOPs utilisation", f"{number('train_mfu', 1, 100)}% of the matmul peak"),
        ("PyTorch eager training", f"{number('torch_tokens_per_s')} tokens/s"),
        ("JAX / PyTorch (median of alternating rounds)", ratio),
        ("first training step (trace + compile)", f"{number('first_step_compile_s', 1)} s"),
        ("generation, KV cache, all attention maps", f"{number('gen_ms_per_token', 2)} ms/token"),
        ("generation, no cache", f"{number('gen_ms_per_token_nocache', 2)} ms/token"),
        ("generation, first call (compilation)", f"{number('gen_first_call_s', 1)} s"),
        ("recompilations for other lengths/settings", number("gen_recompilations")),
        ("app: process start to answering server", f"{number('app_ready_s', 1)} s"),
        ("app: its model load and writer's warm-up", f"{number('app_warmup_s', 1)} s"),
        ("app: start to explainer compiled", f"{number('app_explainer_ready_s', 1)} s"),
        ("app: one 64-token joke by API", f"{number('app_joke_s', 2)} s"),
        ("app: start with a persistent compilation cache", f"{number('app_ready_cached_s', 1)} s"),
        ("app: its writer's warm-up with that cache", f"{number('app_warmup_cached_s', 1)} s"),
        ("app: explainer compiled, that cache", f"{number('app_explainer_ready_cached_s', 1)} s"),
    ]
    lines = ["| measure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    reuse_freed_memory()  # before JAX's first computation starts its threads
    description = __doc__.split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=description)
    parser.add_argument("--quick", action="store_true", help="fewer rounds: within 5 minutes")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--no-app", action="store_true", help="skip the app's cold start")
    args = parser.parse_args(argv)
    results = run(args.quick, app=not args.no_app)
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
