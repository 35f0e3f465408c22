"""training/config.py: the flags of `python train.py`, their help texts and the presets."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from model.config import PRESETS, GPTConfig
from training import cli
from training.config import RECIPES, TrainConfig, TrainError, model_config, parse_args, unset_config
from training.folder import TRAIN_CONFIG, saved_config

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
    assert "--positional" not in rows or rows["--positional"] == ["rope", "learned"]
    assert rows["--optimizer"] == ["muon", "adamw"]  # modern, classic: the recipe table
    assert rows["--dropout"] == ["0.0", "0.1"]


def test_the_default_recipe_is_the_measured_best_and_classic_is_the_teaching_model():
    modern = parse_args([], cli.__doc__)[0]
    assert modern.recipe == "modern"
    assert (modern.positional, modern.norm, modern.activation) == ("rope", "rmsnorm", "relu2")
    assert (modern.qk_norm, modern.bias, modern.dropout) == (True, False, 0.0)
    assert (modern.optimizer, modern.schedule) == ("muon", "wsd")
    classic = parse_args(["--recipe", "classic"], cli.__doc__)[0]
    teaching = GPTConfig()  # model/config.py's defaults: the classic GPT-2
    for name in ("positional", "norm", "activation", "qk_norm", "bias", "dropout"):
        assert getattr(classic, name) == getattr(teaching, name), name
    assert (classic.optimizer, classic.schedule) == ("adamw", "cosine")
    # A flag wins over its recipe; the rest of the recipe stays.
    mixed = parse_args(["--recipe", "classic", "--positional", "rope", "--optimizer", "muon"],
                       cli.__doc__)[0]  # fmt: skip
    assert (mixed.positional, mixed.optimizer, mixed.norm, mixed.schedule) == (
        "rope", "muon", "layernorm", "cosine"
    )  # fmt: skip
    assert model_config(modern, PRESETS["small"], fine_tuning=False).positional == "rope"


def test_fine_tuning_keeps_the_loaded_models_components_under_either_recipe():
    base = GPTConfig(positional="learned", norm="layernorm", activation="gelu", dropout=0.1)
    for recipe in RECIPES:
        tuned = parse_args(["--recipe", recipe, "--init-from", "some/model"], cli.__doc__)[0]
        assert tuned.positional is None and tuned.activation is None  # not the recipe's
        sizes = model_config(tuned, base, fine_tuning=True)  # no "cannot change" error
        assert (sizes.positional, sizes.norm, sizes.activation, sizes.bias) == (
            "learned", "layernorm", "gelu", True
        )  # fmt: skip
        assert sizes.dropout == RECIPES[recipe]["dropout"]  # training settings do follow it
        assert tuned.optimizer == RECIPES[recipe]["optimizer"]


def test_a_run_saved_before_recipes_existed_resumes_as_the_classic_model(tmp_path):
    old = unset_config()
    del old["recipe"]  # its config.json has no recipe and None for the components
    old.update(optimizer="adamw", schedule="cosine")
    (tmp_path / TRAIN_CONFIG).write_text(json.dumps(old))
    config = saved_config(tmp_path)
    assert (config.recipe, config.positional, config.activation) == (
        "classic", "learned", "gelu"
    )  # fmt: skip
    now = parse_args(["--out", str(tmp_path)], cli.__doc__)[0]
    (tmp_path / TRAIN_CONFIG).write_text(json.dumps(dataclasses.asdict(now)))
    assert saved_config(tmp_path) == now  # a run of today resumes as it started


def test_an_unknown_recipe_is_refused_with_the_choices():
    with pytest.raises(TrainError, match="--recipe 'fast' is unknown: use one of modern, classic"):
        TrainConfig(recipe="fast")


def test_train_py_shows_the_usage_that_help_prints():
    """train.py's docstring repeats the description and examples of --help (cli.py's)."""
    command = ast.get_docstring(ast.parse((ROOT / "train.py").read_text()), clean=False)
    usage = cli.__doc__.split("\n\n")[:2]
    assert command.split("\n\n")[:2] == usage
