"""experiments/integrated_gradients.py on the tiny model folder: it finds cases, measures every
rule against the fine reference and writes a table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.integrated_gradients import RULES, main


def test_the_experiment_measures_every_rule(model_folder: Path, tmp_path: Path, capsys):
    out = tmp_path / "ig.json"
    assert main([str(model_folder), "--jokes", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["cases"] == 2  # the made-up jokes reach only the first position (12 of 64)
    rows = {row["rule"]: row for row in result["rows"]}
    assert list(rows) == [name for name, *_ in RULES]
    for row in rows.values():
        assert 0 <= row["gap_median"] <= row["gap_p90"]
        assert 0 <= row["scores_median"] <= row["scores_p90"]
    # More equally spaced points follow the reference more closely.
    assert rows["24 equally spaced"]["scores_p90"] < rows["8 equally spaced"]["scores_p90"]
    assert rows["24 equally spaced"]["forward_passes"] == 3 * 24 + 2
    printed = capsys.readouterr().out
    assert "2 cases, against 256 equally spaced points" in printed
    assert "| 7 placed after 9 looks (the default) | 30 |" in printed
