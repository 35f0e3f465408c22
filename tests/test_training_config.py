"""training/config.py: the flags of `python train.py`, their help texts and the presets."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from training import cli
from training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--data",
        "--preset",
        "--out",
        "--steps",
        "--resume",
        "--init-from",
        "--learning-rate",
        "--positional",
        "--clean",
        "--coordinator",
        "--optimizer {adamw,muon}",
        "--muon-learning-rate",
        "--schedule {cosine,wsd}",
        "--cooldown-fraction",
        "--ema-decay",
        "--time-budget",
    ):
        assert flag in text


def test_every_setting_has_its_help_text_on_its_field(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["help"], f.name
        assert " ".join(f.metadata["help"].split()) in text  # what --help prints, unwrapped


def test_help_shows_what_each_preset_sets(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "(default: preset)" not in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if "--" in line[:4]}
    assert rows["--d-model"] == ["128", "256", "384"]  # tiny, small, base (model/config.py)
    assert rows["--steps"] == ["300", "3000", "10000"]
    assert rows["--learning-rate"] == ["0.002", "0.001", "0.0006"]
    assert rows["--positional"] == ["learned", "learned", "learned"]


def test_train_py_shows_the_usage_that_help_prints():
    """train.py's docstring repeats the description and examples of --help (cli.py's)."""
    command = ast.get_docstring(ast.parse((ROOT / "train.py").read_text()), clean=False)
    usage = cli.__doc__.split("\n\n")[:2]
    assert command.split("\n\n")[:2] == usage
