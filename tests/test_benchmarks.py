"""The speed benchmarks run and report sane numbers (never timed: speed is for benchmarks/).

Everything runs on a tiny model so the whole file takes seconds; the PyTorch rows are checked
only where torch is installed (CI does not install it).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import math

import pytest

from benchmarks import speed
from model.config import PRESETS, GPTConfig

TINY = GPTConfig(vocab_size=97, block_size=16, n_layer=1, n_head=2, d_model=16, d_ff=32)
HAS_TORCH = importlib.util.find_spec("torch") is not None
REQUIRED_KEYS = {
    "date",
    "machine",
    "train_tokens_per_s",
    "torch_tokens_per_s",
    "train_ratio",
    "train_mfu",
    "gen_ms_per_token",
    "gen_ms_per_token_nocache",
    "first_step_compile_s",
    "app_ready_s",
}


def positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def results() -> dict:
    with pytest.MonkeyPatch.context() as patch:
        # The peak only has to be measured here, not measured well: a small matmul will do.
        small_peak = functools.partial(speed.matmul_peak_gflops, size=256)
        patch.setattr(speed, "matmul_peak_gflops", small_peak)
        return speed.run(quick=True, app=False, config=TINY, batch=4, shipped=False)


def test_flops_per_token_of_the_reference_size_by_hand():
    # Weight matrices: 4 layers x (4 x 256^2 + 2 x 256 x 1024) + the tied 256 x 4096 output.
    weights = 4 * (4 * 256 * 256 + 2 * 256 * 1024) + 256 * 4096
    attention = 4 * 4 * 128 * 256
    assert speed.train_flops_per_token(PRESETS["small"]) == 3 * (2 * weights + attention)


def test_every_figure_is_there_and_finite(results):
    assert results.keys() >= REQUIRED_KEYS
    json.loads(json.dumps(results))  # the JSON the command writes
    for key in ("train_tokens_per_s", "train_ms_per_step", "first_step_compile_s"):
        assert positive(results[key]), key
    for key in ("gen_ms_per_token", "gen_ms_per_token_nocache", "gen_first_call_s"):
        assert positive(results[key]), key
    assert 0 < results["train_mfu"] < 1.5  # measured against the same run's matmul peak
    assert results["train_loss_finite"]
    assert results["app_ready_s"] is None  # not asked for


def test_tokens_per_second_agree_with_the_step_time(results):
    tokens = 4 * TINY.block_size
    expected = tokens / (results["train_ms_per_step"] / 1000)
    assert results["train_tokens_per_s"] == pytest.approx(expected)


def test_generation_never_recompiles_for_other_lengths_or_settings(results):
    assert results["gen_recompilations"] == 0
    assert results["gen_tokens_timed"] > 0


def test_the_machine_is_described(results):
    machine = results["machine"]
    assert machine["cores"] >= 1 and machine["cpu"]
    assert machine["jax"] and machine["devices"]


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (requirements-bench.txt)")
def test_the_pytorch_reference_runs_alternating_with_jax(results):
    assert positive(results["torch_tokens_per_s"])
    assert results["train_ratio_min"] <= results["train_ratio"] <= results["train_ratio_max"]
    assert results["machine"]["torch"]


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (requirements-bench.txt)")
def test_the_pytorch_reference_has_the_same_number_of_parameters():
    from flax import nnx

    from benchmarks.torch_reference import TorchGPT
    from model.gpt import GPT, count_parameters

    config = dataclasses.replace(TINY, positional="learned")
    torch_model = TorchGPT(config)
    assert sum(p.numel() for p in torch_model.parameters()) == count_parameters(
        GPT(config, rngs=nnx.Rngs(0))
    )


def test_without_torch_the_rows_say_so(monkeypatch):
    monkeypatch.setattr(speed, "torch_training", lambda *args, **kwargs: None)
    result = speed.benchmark_training(TINY, batch=2, rounds=1, steps_per_round=1)
    assert result["torch_tokens_per_s"] is None and result["train_ratio"] is None
    assert result["torch_note"] == "not installed"
    assert "torch not installed" in speed.table(result)
