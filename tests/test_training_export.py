"""training/export.py: the exported model folder says truthfully how it was made (sizes,
preset, lineage), a fine-tuned one too."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from training_runs import JOKES, OTHER_JOKES, metrics, run, write_jokes

import training.export
from data.tokenizer import encode, end_of_joke_id
from model.checkpoint import (
    load_head_means,
    load_head_roles,
    load_model,
    load_originality_index,
)
from model.config import GPTConfig
from model.gpt import GPT
from training.config import SIZE_FLAGS, size_preset

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "punchline"


def test_the_shipped_model_metadata_describes_it_truthfully():
    _, _, metadata = load_model(SHIPPED)
    config = json.loads((SHIPPED / "config.json").read_text())
    recorded = metadata["train_config"]
    # The small preset's sizes (its components are the recipe's, not the preset's).
    assert size_preset(GPTConfig.from_dict(config)) == "small"
    assert size_preset(dataclasses.replace(GPTConfig.from_dict(config), d_model=192)) == "custom"
    for name in SIZE_FLAGS:
        assert recorded[name] == config[name]
    assert (config["positional"], config["norm"], config["activation"]) == (
        "rope", "rmsnorm", "swiglu"
    )  # fmt: skip
    chain = metadata["lineage"]
    assert len(chain) == 1 and chain[0]["init_from"] is None  # one run, from scratch
    assert chain[0]["steps"] == metadata["steps"] == 2400
    # Trained without the sensitive topics, as the app's clean mode shows jokes.
    assert recorded["clean"] and recorded["clean_topics"]
    model, _, _ = load_model(SHIPPED)  # its mean head outputs, for the app's mean ablation
    assert load_head_means(SHIPPED, model.config).shape == (4, 4, 64)
    assert load_head_roles(SHIPPED, model.config) is not None  # and its heads' roles


@pytest.mark.slow
def test_fine_tuning_from_an_exported_model_learns_new_jokes(tmp_path, capsys):
    base_data = write_jokes(tmp_path, JOKES, "base.txt")
    assert run(tmp_path, "--data", str(base_data), "--out", str(tmp_path / "base"),
               "--steps", "40", "--eval-every", "40") == 0  # fmt: skip
    base, tokenizer, _ = load_model(tmp_path / "base" / "model")
    # The export ships each head's mean output on validation jokes, for mean ablation.
    means = load_head_means(tmp_path / "base" / "model", base.config)
    assert means.shape == (2, base.config.n_head, base.config.d_head) and np.abs(means).max() > 0
    assert load_originality_index(tmp_path / "base" / "model") is not None  # no text in it

    new_data = write_jokes(tmp_path, OTHER_JOKES, "new.txt")
    loss_before = _mean_loss(base, tokenizer, OTHER_JOKES)
    assert run(tmp_path, "--data", str(new_data), "--out", str(tmp_path / "tuned"),
               "--init-from", str(tmp_path / "base" / "model"), "--steps", "60",
               "--learning-rate", "3e-3", "--warmup-steps", "5",
               "--eval-every", "60") == 0  # fmt: skip
    tuned, tuned_tokenizer, tuned_metadata = load_model(tmp_path / "tuned" / "model")
    # The metadata tells the truth: sizes resolved, the preset named only if it fits (the
    # TINY flags make a custom model), and the whole chain of runs, oldest first.
    recorded = tuned_metadata["train_config"]
    assert recorded["preset"] == "custom" and recorded["d_model"] == 64
    assert recorded["n_layer"] == 2 and recorded["dropout"] == 0.0
    chain = tuned_metadata["lineage"]
    assert [r["init_from"] for r in chain] == [None, str(tmp_path / "base" / "model")]
    assert [r["steps"] for r in chain] == [40, 60]
    assert [r["out"] for r in chain] == [str(tmp_path / "base"), str(tmp_path / "tuned")]
    # The position table of the base model fixes its context: a longer one cannot work.
    longer = run(tmp_path, "--data", str(new_data), "--out", str(tmp_path / "longer"),
                 "--init-from", str(tmp_path / "base" / "model"), "--block-size", "96")  # fmt: skip
    assert longer == 1
    assert "--block-size cannot change when fine-tuning" in capsys.readouterr().err
    assert tuned_tokenizer.to_str() == tokenizer.to_str()  # fine-tuning keeps the tokenizer
    assert _mean_loss(tuned, tokenizer, OTHER_JOKES) < 0.5 * loss_before


@pytest.mark.slow
def test_a_run_that_averages_its_weights_exports_the_chosen_ones_and_says_which(
    tmp_path, monkeypatch
):
    # Which weights validate better is decided by export.exported_weights (tested on its
    # own); here it says "ema", and the exported folder must hold the average and say so.
    monkeypatch.setattr(training.export, "exported_weights", lambda figures: "ema")
    data = write_jokes(tmp_path, JOKES)
    out = tmp_path / "averaged"
    assert run(tmp_path, "--data", str(data), "--out", str(out), "--steps", "20",
               "--ema-decay", "0.999", "--learning-rate", "1e-2", "--warmup-steps", "0",
               "--eval-every", "10") == 0  # fmt: skip
    records = [r for r in metrics(out) if "val_bpc" in r]
    assert all("ema_val_bpc" in r for r in records)  # every evaluation reads both weights
    model, _, metadata = load_model(out / "model")
    assert metadata["exported_weights"] == "ema"
    assert metadata["val_bpc"] == metadata["ema_val_bpc"] == round(records[-1]["ema_val_bpc"], 4)
    assert metadata["raw_val_bpc"] == round(records[-1]["val_bpc"], 4)
    # 20 steps at a decay of 0.999 leave the average within about 2% of the way from the
    # initial weights to the trained ones, which moved by about 20 steps of 1e-2 each.
    initial = nnx.state(GPT(model.config, rngs=nnx.Rngs(0)), nnx.Param)
    moved = max(
        float(np.abs(np.asarray(a) - np.asarray(b)).max())
        for a, b in zip(
            jax.tree.leaves(nnx.state(model, nnx.Param)), jax.tree.leaves(initial), strict=True
        )
    )
    assert 0 < moved < 0.02 * 20 * 1e-2


def _mean_loss(model, tokenizer, jokes: list[str]) -> float:
    end = end_of_joke_id(tokenizer)
    losses = []
    for joke in jokes:
        ids = [end, *encode(tokenizer, joke), end][: model.config.block_size + 1]
        logits, _ = model(jnp.asarray([ids[:-1]]))
        targets = np.asarray(ids[1:])
        log_probs = np.asarray(logits[0]) - np.log(np.exp(np.asarray(logits[0])).sum(-1))[:, None]
        losses.append(-log_probs[np.arange(len(targets)), targets].mean())
    return float(np.mean(losses))
