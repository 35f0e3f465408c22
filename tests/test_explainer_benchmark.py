"""The explainer's benchmark runs and reports every figure (never timed: speed is for
benchmarks/): on the tiny model folder, --quick, its JSON in a temporary folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks import explainer_speed
from model.generate import prefill_lengths


def test_the_benchmark_reports_every_analysis_and_length(model_folder: Path, tmp_path: Path):
    path = tmp_path / "explainer_speed.json"
    argv = ["--checkpoint", str(model_folder), "--quick", "--json", str(path)]
    assert explainer_speed.main(argv) == 0
    results = json.loads(path.read_text())

    assert results.keys() >= {"date", "machine", "warm_up_s", "mode", "worst_median_ms"}
    block_size = json.loads((model_folder / "config.json").read_text())["block_size"]
    lengths = [str(n) for n in prefill_lengths(block_size) if n >= 16]
    assert list(results["lengths"]) == lengths
    for padded, row in results["lengths"].items():
        assert int(padded) // 2 < row["tokens"] <= int(padded), padded
        assert row["written"] >= 1
        for name in explainer_speed.SINGLE_STEP + explainer_speed.REPORTED:
            for figure in ("median_ms", "p90_ms"):
                assert math.isfinite(row[name][figure]) and row[name][figure] > 0, (padded, name)
    assert results["recompilations"] == 0, results["recompiled"]
    payload = results["payload"]
    assert set(payload["bytes"]) == {
        "generate", "lens", "knockout", "importance", "flow", "attribution", "branch"
    }  # fmt: skip
    assert results["within_goal"] == (results["missed_goal"] == [])
    assert all(size > 0 for size in payload["bytes"].values())
    assert 0 < payload["generate_attention_bytes"] < payload["bytes"]["generate"]
