"""Attention over training (serving/training_replay.py, ui/snapshot_*.py): each snapshot
writes the visitor's request with its own weights and nothing is compiled again; the page's
panel and the /snapshots answer show it; a folder without snapshots says how to add them."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from model.checkpoint import (
    SNAPSHOT_INDEX,
    model_from_parameters,
    parameters_to_flat,
    sign,
)
from model.generate import Generator
from model.roles import find_roles
from model.snapshots import Snapshot, Snapshots, quantize, save_snapshots
from serving.api import snapshot_json
from serving.errors import RequestError
from serving.explainer import Explainer
from serving.training_replay import TrainingReplay
from serving.writer import JokeWriter
from ui.snapshot_events import SnapshotHandlers

SENT = ("Why did the", 1.0, 0, 1.0, 8, 5, False)
SCALES = (0.05, 0.5, 1.0)  # the snapshots: the model's weights, shrunk towards 0 early on


@pytest.fixture(scope="module")
def folder(model_folder, writer, tmp_path_factory):
    """A copy of the tiny folder shipping three made-up snapshots."""
    copy = shutil.copytree(model_folder, tmp_path_factory.mktemp("snap") / "model")
    weights = {k: np.asarray(v) for k, v in parameters_to_flat(writer.model).items()}
    jokes = [[writer.end_of_joke, *writer.request(*SENT).prompt_ids]] * 2
    snapshots = []
    for i, scale in enumerate(SCALES):
        tensors, scales = quantize({k: v * scale for k, v in weights.items()})
        shipped = Snapshot(10 * (i + 1), (i + 1) / 3, 100 * (i + 1), tensors, scales, None)
        model = model_from_parameters(writer.model, shipped.weights())
        roles = find_roles(model, jokes, writer.end_of_joke)
        snapshots.append(dataclasses.replace(shipped, roles=roles))
    save_snapshots(copy, Snapshots("a made-up run", snapshots))
    return copy


@pytest.fixture(scope="module")
def replay(folder) -> TrainingReplay:
    return TrainingReplay(Explainer(JokeWriter(folder)))


def test_each_snapshot_writes_the_request_with_its_own_weights(replay):
    writer = replay.explainer.writer
    job = writer.request(*SENT)
    writer.warm_up()  # compile first, as the app does
    replay.explainer.warm_up()
    jitted = [writer.generator._prefill, writer.generator._step, replay.explainer._lens]
    sizes = [f._cache_size() for f in jitted]
    texts = []
    for index, snapshot in enumerate(replay.shipped.snapshots):
        view = replay.view(job, index)
        at_step = model_from_parameters(writer.model, snapshot.weights())
        alone = Generator(at_step, writer.end_of_joke)
        expected = alone.generate(job.prompt_ids, job.settings)
        assert view.joke.generation.token_ids == expected.token_ids  # its weights, not the model's
        np.testing.assert_allclose(view.joke.generation.attention, expected.attention, atol=1e-5)
        assert view.lens.layers[-1].chosen_probability == pytest.approx(
            view.joke.generation.chosen_probabilities[-1], abs=1e-4
        )
        texts.append(view.joke.text)
    assert [f._cache_size() for f in jitted] == sizes  # no snapshot compiled anything
    assert len(set(texts)) > 1  # different weights, different jokes
    history = replay.role_history()
    assert set(history) >= {"previous-token", "induction", "sink"}
    assert all(len(scores) == len(SCALES) for scores in history.values())


def test_the_model_itself_through_the_weights_argument_writes_its_own_joke(writer):
    job = writer.request(*SENT)
    own = writer.generator.parameter_list(writer.model)
    assert (
        writer.write(job, weights=own).generation.token_ids
        == writer.write(job).generation.token_ids
    )


def test_a_bad_snapshot_or_none_shipped_is_refused_with_the_fix(replay, writer, tmp_path):
    job = writer.request(*SENT)
    for bad in (-1, 3, 1.5, "1", None):
        with pytest.raises(RequestError, match=r"snapshot must be a whole number from 0 \(the"):
            replay.view(job, bad)
    bare_folder = Path(shutil.copytree(writer.folder, tmp_path / "bare"))
    for name in (SNAPSHOT_INDEX, *(p.name for p in bare_folder.glob("snapshot-*"))):
        (bare_folder / name).unlink()
    sign(bare_folder)
    bare = TrainingReplay(Explainer(JokeWriter(bare_folder)))
    assert bare.count == 0 and bare.role_history() == {}
    with pytest.raises(RequestError, match=r"python -m training\.snapshots"):
        bare.view(job, 0)
    assert SnapshotHandlers(bare).show_snapshot(None, 0) == ""  # the panel stays empty (and hidden)


def test_the_panel_and_the_api_show_a_snapshot(replay, writer):
    handlers = SnapshotHandlers(replay)
    joke = writer.write(writer.request(*SENT))
    html = handlers.show_snapshot(joke, 1)
    assert "<b>Step 20</b>" in html and "a made-up run" in html
    assert 'class="pl-role-plot"' in html and html.count("<polyline") == len(replay.role_history())
    assert "pl-heads" in html and "pl-lens" in html
    assert "Ask for a joke" in handlers.show_snapshot(None, 0)
    answer = snapshot_json(writer, replay, *SENT, snapshot=2)
    assert answer["step"] == 30 and answer["steps"] == [10, 20, 30]
    assert answer["token_ids"] == replay.view(writer.request(*SENT), 2).joke.generation.token_ids
    assert len(answer["lens"]) == writer.config.n_layer + 1
    assert np.array(answer["attention"]).shape[:2] == (writer.config.n_layer, writer.config.n_head)
    assert jax.tree.leaves(answer["role_history"])
