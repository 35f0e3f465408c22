"""training/export.py: the exported model folder says truthfully how it was made (sizes,
preset, lineage), a fine-tuned one too."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from training_runs import JOKES, OTHER_JOKES, run, write_jokes

from data.tokenizer import encode, end_of_joke_id
from model.checkpoint import load_model
from model.config import GPTConfig
from training.config import SIZE_FLAGS, size_preset

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "punchline"


def test_the_shipped_model_metadata_describes_it_truthfully():
    _, _, metadata = load_model(SHIPPED)
    config = json.loads((SHIPPED / "config.json").read_text())
    recorded = metadata["train_config"]
    assert size_preset(GPTConfig.from_dict(config)) == recorded["preset"] == "small"
    for name in SIZE_FLAGS:
        assert recorded[name] == config[name]
    chain = metadata["lineage"]
    assert chain[0]["init_from"] is None  # trained from scratch first, then fine-tuned
    assert chain[-1]["steps"] == metadata["steps"] and len(chain) == 2
    assert sum(r["steps"] for r in chain) == 3500


@pytest.mark.slow
def test_fine_tuning_from_an_exported_model_learns_new_jokes(tmp_path, capsys):
    base_data = write_jokes(tmp_path, JOKES, "base.txt")
    assert run(tmp_path, "--data", str(base_data), "--out", str(tmp_path / "base"),
               "--steps", "40", "--eval-every", "40") == 0  # fmt: skip
    base, tokenizer, _ = load_model(tmp_path / "base" / "model")

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
