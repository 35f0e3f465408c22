"""The tools that add what a model folder ships beside its weights, read again from its data:
python -m training.head_analyses and python -m training.originality_index (both over
training/folder_data.py), on a copy of the tiny app model's folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from data.corpus import model_data
from data.originality_index import HashedJokeIndex
from model.checkpoint import (
    load_head_means,
    load_head_roles,
    load_model,
    load_originality_index,
    optional_files,
    sign,
)
from training.head_analyses import main as head_analyses_main
from training.originality_index import main as originality_index_main


@pytest.fixture
def bare_folder(tmp_path: Path, model_folder: Path) -> Path:
    """The tiny model's folder without any of its optional files, as an old export."""
    folder = tmp_path / "model"
    shutil.copytree(model_folder, folder)
    for name in optional_files(folder):
        (folder / name).unlink()
    sign(folder)
    return folder


def test_both_tools_add_their_files_signed_and_readable(bare_folder, capsys):
    assert head_analyses_main([str(bare_folder)]) == 0
    assert originality_index_main([str(bare_folder)]) == 0
    printed = capsys.readouterr().out
    assert "head roles" in printed and "originality_index.npz written" in printed
    model, _, metadata = load_model(bare_folder)  # every new file is in the manifest
    c = model.config
    means = load_head_means(bare_folder, c)
    assert means.shape == (c.n_layer, c.n_head, c.d_head) and np.isfinite(means).all()
    roles = load_head_roles(bare_folder, c)
    assert len(roles.roles) == c.n_layer and roles.scores["diffuse"].shape == (c.n_layer, c.n_head)
    index = HashedJokeIndex(load_originality_index(bare_folder))
    assert len(index) == len(model_data(metadata).train)


def test_data_that_is_gone_is_one_line_and_the_folder_is_left_alone(bare_folder, capsys):
    manifest = (bare_folder / "manifest.json").read_text()
    missing = str(bare_folder.parent / "moved.txt")
    for tool in (head_analyses_main, originality_index_main):
        assert tool([str(bare_folder), "--data", missing]) == 1
        error = capsys.readouterr().err
        assert error.startswith("error: ") and error.count("\n") == 1 and "moved.txt" in error
    assert (bare_folder / "manifest.json").read_text() == manifest
