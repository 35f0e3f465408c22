"""`python -m benchmarks.time_to_quality --quick` runs end to end on made-up jokes and a tiny
model, a few seconds a side, and reports sane curves; it never asserts a speed.

The reference side needs torch (requirements-bench.txt); without it, the project side is
still checked and the reference must say "not installed".
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import itertools
import json
import math
import sys
from pathlib import Path

import pytest

from benchmarks import time_to_quality as ttq

HAS_TORCH = importlib.util.find_spec("torch") is not None
TINY_SIZES = {"n-layer": 1, "n-head": 2, "d-model": 32, "d-ff": 64, "block-size": 32}
TINY_FLAGS = [
    word
    for flag, value in {**TINY_SIZES, "batch-size": 8, "vocab-size": 400, "warmup-steps": 0}.items()
    for word in (f"--{flag}", str(value))
]
KEYS = {"date", "machine", "settings", "data", "project", "reference", "goal"}


@pytest.fixture(scope="module")
def quick_run(synthetic_jokes: list[str], tmp_path_factory) -> tuple[dict, Path, str]:
    folder = tmp_path_factory.mktemp("time-to-quality")
    jokes = folder / "jokes.txt"
    jokes.write_text("\n".join(synthetic_jokes) + "\n")
    out = folder / "results" / "ttq.json"
    argv = ["--quick", "--data", str(jokes), "--project-minutes", "0.15"]
    argv += ["--reference-minutes", "0.05", "--eval-every", "3", "--eval-tokens", "1024"]
    argv += ["--json", str(out), "--", *TINY_FLAGS, "--cache-dir", str(folder / "cache")]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert ttq.main(argv) == 0
    return json.loads(out.read_text()), out, printed.getvalue()


def finite_curve(curve: list[dict]) -> bool:
    return all(math.isfinite(p["bpc"]) and math.isfinite(p["loss"]) and p["bpc"] > 0 for p in curve)


def test_the_json_has_its_keys_and_the_plot_is_beside_it(quick_run):
    results, out, printed = quick_run
    assert results.keys() >= KEYS
    assert out.with_suffix(".png").stat().st_size > 0
    assert results["settings"]["quick"] and results["settings"]["preset"] == "tiny"
    assert results["machine"]["cores"] >= 1
    assert results["data"]["val_jokes_evaluated"] > 0 and results["data"]["vocab_size"] <= 400
    assert "| training s |" in printed and "Goal:" in printed


def test_the_project_curve_is_finite_and_falls(quick_run):
    project = quick_run[0]["project"]
    curve = project["curve"]
    assert len(curve) >= 2 and finite_curve(curve)
    assert curve[0]["seconds"] == 0 and curve[0]["step"] == 0
    assert all(a["seconds"] <= b["seconds"] for a, b in itertools.pairwise(curve))
    assert curve[-1]["step"] >= 1 and curve[-1]["bpc"] < curve[0]["bpc"]
    # The project's own recipe: the preset's settings with the flags given, sizes included.
    assert project["recipe"]["preset"] == "tiny" and project["model"]["d_model"] == 32
    assert project["steps_planned"] >= 1 and project["step_ms"] > 0


def test_the_reference_curve_or_its_note(quick_run):
    results = quick_run[0]
    reference, goal = results["reference"], results["goal"]
    assert goal["project_bpc"] == results["project"]["curve"][-1]["bpc"]
    if not HAS_TORCH:
        assert reference == {"note": "not installed", "curve": []} and goal["met"] is None
        return
    curve = reference["curve"]
    assert len(curve) >= 2 and finite_curve(curve) and curve[-1]["step"] >= 1
    assert reference["model"]["bias"] is False and reference["model"]["dropout"] == 0.0
    assert reference["model"]["d_model"] == 32 and reference["recipe"]["batch_size"] == 32
    assert isinstance(goal["met"], bool) and goal["reference_bpc"] == curve[-1]["bpc"]


def test_without_torch_the_reference_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "benchmarks.torch_reference", None)  # import fails
    assert ttq.train_reference(None, ttq.NanoGPTRecipe(), 1.0, 1.0, None) == {
        "note": "not installed",
        "curve": [],
    }
    point = {"seconds": 0.0, "step": 0, "bpc": 3.0, "loss": 2.0}
    results = {
        "settings": {"project_minutes": 5, "reference_minutes": 10},
        "project": {"curve": [point]},
        "reference": {"note": "not installed", "curve": []},
    }
    results["goal"] = ttq.verdict(results)
    assert results["goal"]["met"] is None and "n/a, torch not installed" in ttq.table(results)


def test_nanogpt_schedule_warms_up_then_decays_to_its_minimum():
    lr = ttq.nanogpt_lr(ttq.NanoGPTRecipe(), steps=1000)
    assert lr(0) == pytest.approx(1e-3 / 51) and lr(49) == pytest.approx(1e-3 * 50 / 51)
    assert lr(50) == pytest.approx(1e-3) and lr(1000) == pytest.approx(1e-4)
    assert lr(5000) == pytest.approx(1e-4) and lr(300) > lr(600)


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (requirements-bench.txt)")
def test_the_reference_reads_each_joke_of_a_row_as_if_alone():
    import torch

    from benchmarks.torch_reference import TorchGPT, summed_nll
    from model.config import GPTConfig

    config = GPTConfig(vocab_size=50, block_size=12, n_layer=1, n_head=2, d_model=16, d_ff=32)
    model = TorchGPT(config).eval()
    tokens = torch.randint(0, 50, (1, 12), generator=torch.Generator().manual_seed(0))
    positions = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 2]])
    segments = torch.tensor([[1, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0]])  # two jokes, then padding
    with torch.no_grad():
        packed = model(tokens, positions, segments)
        alone = model(tokens[:, 5:9])  # the second joke by itself, from position 0
        nll, count = summed_nll(model, tokens, tokens, positions, segments)
    torch.testing.assert_close(packed[:, 5:9], alone, atol=1e-5, rtol=1e-5)
    assert count == 9 and math.isfinite(float(nll))


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (requirements-bench.txt)")
def test_the_reference_refuses_components_it_does_not_have():
    from benchmarks.torch_reference import TorchGPT
    from model.config import GPTConfig

    config = GPTConfig(vocab_size=50, block_size=12, n_layer=1, n_head=2, d_model=16, d_ff=32)
    with pytest.raises(ValueError, match="'norm': 'rmsnorm'"):
        TorchGPT(dataclasses.replace(config, norm="rmsnorm"))
