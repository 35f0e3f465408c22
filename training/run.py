"""One training run: its data, model, compiled steps and state, and the loop that trains it.

`Run(config, resume)` sets everything up (the folder, the base model when fine-tuning, the
data, the devices, the state, restored from the latest checkpoint on --resume); `Run.train()`
trains to `config.steps` (with --time-budget, planned from the run's own pace as it trains:
see training/budget.py), logging, evaluating (with --ema-decay the weights' average too) and
checkpointing on their own schedules, and returns the final validation figures. Ctrl-C
finishes the current step, saves and stops.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from tokenizers import Tokenizer
from tqdm import tqdm

from data import Batch, CleaningConfig, Corpus, prepare_corpus, train_batch, train_windows
from data.tokenizer import decode, end_of_joke_id, load_tokenizer
from model.checkpoint import CheckpointError, load_model
from model.config import PRESETS
from model.generate import Generator, SamplingSettings
from model.gpt import GPT, count_parameters
from training.average import averaged_model_state
from training.budget import StepPlan, chosen_steps, parse_duration, time_evaluation, write_plan
from training.config import TrainConfig, TrainError, model_config
from training.distributed import DataParallel, main_process_first, process_rows
from training.evaluation import validation_figures
from training.folder import append_record, drop_records_after, prepare_folder
from training.optimizer import check_settings, make_optimizer
from training.snapshots import save_snapshot, snapshot_steps
from training.state import Checkpoints, check_disk_space
from training.steps import make_eval_step, make_train_step, model_state


class Run:
    """One training run: its folder, data, compiled steps, state and logs."""

    def __init__(self, config: TrainConfig, resume: bool):
        self.config = config
        self.folder = Path(config.out)
        self.is_main = jax.process_index() == 0
        check_settings(config)
        snapshot_steps(config.snapshots, max(config.steps, 1))  # a bad --snapshots fails now
        self.budget_s = parse_duration(config.time_budget)  # None: train config.steps
        prepare_folder(self.folder, config, resume)
        if resume and self.budget_s is not None and (chosen := chosen_steps(self.folder)):
            config.steps, self.budget_s = chosen, None  # chosen when the run started: keep it
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
        self.parallel = DataParallel(config.batch_size)
        # The fused op pays off where a kernel backs it; XLA:CPU runs the plain formula faster.
        fused = config.fused_attention
        self.fused_attention = jax.default_backend() != "cpu" if fused is None else fused

        model = GPT(self.model_config, rngs=nnx.Rngs(config.seed))
        if base_model is not None:
            # Fine-tuning: start from the trained weights (same shapes, checked at load).
            nnx.update(model, nnx.state(base_model, nnx.Param))
        self.start_optimizer(model)
        self.eval_step = make_eval_step(nnx.graphdef(model), self.fused_attention)
        self.generator = Generator(model, end_of_joke_id(self.corpus.tokenizer))
        self.n_params = count_parameters(model)
        self.step = 0
        self.checkpoints = Checkpoints(self.folder)
        if resume:
            self.restore()

    def start_optimizer(self, model: GPT) -> None:
        """A fresh optimizer for `model`, the training state of the pair and its compiled step."""
        optimizer = nnx.Optimizer(model, make_optimizer(self.config), wrt=nnx.Param)
        self.graphdef, state = nnx.split((model, optimizer))
        self.state = jax.device_put(state, self.parallel.replicated)
        self.train_step = make_train_step(self.graphdef, self.fused_attention)

    # --- the base model, the data and the checkpoints

    def load_base(self, resume: bool) -> tuple[GPT | None, Tokenizer | None]:
        """The model to fine-tune (--init-from) and the tokenizer to keep, if any."""
        base_model = tokenizer = None
        self.base_metadata: dict[str, Any] | None = None
        if self.config.init_from:
            try:
                base_model, tokenizer, self.base_metadata = load_model(self.config.init_from)
            except CheckpointError as error:
                raise TrainError(f"--init-from: {error}") from None
        elif self.config.tokenizer_from:
            try:
                _, tokenizer, _ = load_model(self.config.tokenizer_from)
            except CheckpointError as error:
                raise TrainError(f"--tokenizer-from: {error}") from None
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
                drop_sensitive=config.clean and config.clean_topics,
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

    def save(self) -> None:
        self.checkpoints.save(self.step, self.state)

    def restore(self) -> None:
        restored = self.checkpoints.restore(like=self.state)
        if restored is None:
            return  # killed before the first checkpoint: start again from step 0
        self.state, self.step = restored
        if self.is_main:
            drop_records_after(self.folder, self.step)

    # --- evaluation and logging

    def evaluate(
        self, state: nnx.State | None = None, max_tokens: int | None = None
    ) -> dict[str, float]:
        """Validation loss (nats/token), perplexity and bits per character of a training
        state (the run's own by default), and with --ema-decay of its weights' average too
        (the same figures, prefixed ema_)."""
        state = self.state if state is None else state

        def figures(weights: nnx.State) -> dict[str, float]:
            return validation_figures(
                self.eval_step,
                weights,
                self.corpus.val,
                self.config.batch_size,
                self.model_config.block_size,
                max_tokens or self.config.eval_tokens or None,
                place=lambda rows: self.parallel.shard(process_rows(rows)),
            )

        result = figures(model_state(state))
        averaged = averaged_model_state(self.graphdef, state)
        if averaged is not None:
            result.update({f"ema_{name}": value for name, value in figures(averaged).items()})
        return result

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
            append_record(self.folder, record)

    def local_batch(self, step: int) -> Batch:
        """This process's rows of the training batch of `step`, each array (rows, T)."""
        draw = train_batch if self.config.rows == "jokes" else train_windows
        return draw(
            self.corpus.train,
            step,
            self.config.batch_size,
            self.model_config.block_size,
            self.config.seed,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )

    def advance(self, state: nnx.State, step: int) -> tuple[nnx.State, dict[str, jax.Array]]:
        """`state` after the training step `step` (its batch and dropout noise depend on the
        seed and the step alone), and the step's metrics. `state` is donated: use the result."""
        batch = Batch(*(self.parallel.shard(rows) for rows in self.local_batch(step)))
        key = jax.random.fold_in(jax.random.key(self.config.seed), step)  # dropout noise
        return self.train_step(state, batch, key, np.int32(self.config.steps))

    # --- the loop

    def train(self) -> dict[str, float]:
        config = self.config
        check_disk_space(self.folder, self.n_params, average=config.ema_decay > 0)
        started = time.perf_counter()
        # A new budgeted run plans its step count as it goes (training/budget.py).
        plan = None if self.budget_s is None else StepPlan(self.budget_s, config, config.steps)
        evaluating_s = 0.0  # seconds spent evaluating, which a budget's pace leaves out
        tokens_per_step = config.batch_size * self.model_config.block_size
        snapshots_at = set(snapshot_steps(config.snapshots, config.steps))
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
                self.state, metrics = self.advance(self.state, self.step)
                window_losses.append(metrics["loss"])
                self.step += 1
                progress.update(1)
                if plan is not None and plan.started is None:  # the step compiled: time from here
                    jax.block_until_ready(self.state)
                    plan.start(self.step, time.perf_counter() - started)
                    evaluating = time.perf_counter()
                    plan.eval_s = time_evaluation(self)
                    evaluating_s += time.perf_counter() - evaluating
                last = self.step == config.steps
                if self.step in snapshots_at and self.is_main:
                    save_snapshot(self.folder, self.step, nnx.merge(self.graphdef, self.state)[0])
                # Three independent schedules: a step may log, evaluate or checkpoint alone.
                log_now = self.step % config.log_every == 0 or last
                eval_now = self.step % config.eval_every == 0 or last
                if log_now or eval_now:
                    losses = self.finite_losses(window_losses, window_first_step)  # waits
                    planning = plan is not None and not plan.fixed and log_now and not last
                    if planning and self.step > plan.started[0]:  # a step timed since
                        spent = time.perf_counter() - started
                        config.steps = plan.plan(self.step, spent - evaluating_s, spent)
                        snapshots_at = set(snapshot_steps(config.snapshots, config.steps))
                        progress.total = config.steps
                        if self.is_main:
                            write_plan(self.folder, plan)
                            if plan.fixed:
                                tqdm.write(
                                    f"time budget {plan.budget_s:.0f} s: "
                                    f"{plan.step_s * 1000:.1f} ms a step, {plan.eval_s:.1f} s an "
                                    f"evaluation: training for {config.steps} steps"
                                )
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
                        evaluating = time.perf_counter()
                        figures = self.evaluate()
                        record.update(figures)
                        if self.is_main:
                            for text in self.samples():
                                tqdm.write(f"  sample: {text[:200]!r}")
                        evaluating_s += time.perf_counter() - evaluating
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
