"""Snapshots (training/snapshots.py, model/checkpoint.py): a run keeps float16 weights at the
fractions asked for, exports them with their head roles, and a damaged set is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from training_runs import JOKES, OTHER_JOKES, run, write_jokes

from model.checkpoint import SNAPSHOT_INDEX, CheckpointError, load_model, parameters_to_flat, sign
from model.snapshots import load_snapshots
from training.config import TrainError
from training.snapshots import snapshot_steps

pytestmark = pytest.mark.slow


def test_the_steps_are_the_fractions_of_the_run():
    assert snapshot_steps("0.01,0.03,0.1,0.3,0.6,1", 1000) == [10, 30, 100, 300, 600, 1000]
    assert snapshot_steps("0.01,0.02,1", 20) == [1, 20]  # at least step 1, each once
    assert snapshot_steps("", 100) == []
    for bad in ("0", "1.5", "half", "0.1;0.2"):
        with pytest.raises(TrainError, match="--snapshots"):
            snapshot_steps(bad, 100)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("snapshots")
    data = write_jokes(tmp, JOKES + OTHER_JOKES)
    out = tmp / "run"
    assert run(tmp, "--data", str(data), "--out", str(out), "--steps", "20",
               "--snapshots", "0.1,0.5,1", "--eval-every", "100") == 0  # fmt: skip
    return out


def test_a_run_keeps_and_exports_its_snapshots_with_their_roles(exported):
    kept = sorted(p.name for p in (exported / "snapshots").iterdir())
    assert kept == ["step-000002.safetensors", "step-000010.safetensors", "step-000020.safetensors"]
    model, _, _ = load_model(exported / "model")  # signed in the manifest with the rest
    shipped = load_snapshots(exported / "model", model)
    assert [s.step for s in shipped.snapshots] == [2, 10, 20]
    assert [s.fraction for s in shipped.snapshots] == [0.1, 0.5, 1.0]
    assert "20 steps" in shipped.note
    c = model.config
    for snapshot in shipped.snapshots:
        assert snapshot.roles.scores["diffuse"].shape == (c.n_layer, c.n_head)
        for name, stored in snapshot.tensors.items():  # int8 matrices, float16 vectors
            assert stored.dtype == (np.int8 if stored.ndim == 2 else np.float16), name
    # The last snapshot is the exported weights, compact: within half a step of each scale.
    final = {k: np.asarray(v) for k, v in parameters_to_flat(model).items()}
    last = shipped.snapshots[-1]
    for name, weights in last.weights().items():
        # Half an int8 step of the column's scale, plus float16's rounding on the way.
        bound = 0.5 * last.scales.get(name, 0.0) + np.abs(final[name]) * 2**-10 + 1e-6
        assert np.all(np.abs(weights - final[name]) <= bound), name
    # Earlier ones differ: the weights moved.
    first = shipped.snapshots[0].weights()
    assert any(not np.allclose(first[n], final[n], atol=1e-3) for n in final)


def test_damaged_snapshots_are_refused_naming_the_fix(exported, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for path in (exported / "model").iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    index = json.loads((folder / SNAPSHOT_INDEX).read_text())
    index["snapshots"][1]["step"] = 11  # no weights for that step
    (folder / SNAPSHOT_INDEX).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        load_model(folder)
    sign(folder)  # as if edited on purpose: the contents are still checked
    model, _, _ = load_model(folder)
    with pytest.raises(CheckpointError) as error:
        load_snapshots(folder, model)
    assert "unusable snapshots" in str(error.value) and "python -m training.snapshots" in str(
        error.value
    )


def test_a_run_from_scratch_can_keep_a_folders_tokenizer(exported, tmp_path):
    data = write_jokes(tmp_path, JOKES)
    out = tmp_path / "again"
    assert run(tmp_path, "--data", str(data), "--out", str(out), "--steps", "2", "--snapshots",
               "", "--tokenizer-from", str(exported / "model")) == 0  # fmt: skip
    same = (exported / "model" / "tokenizer.json").read_text()
    assert (out / "model" / "tokenizer.json").read_text() == same
    assert not (out / "snapshots").exists()
