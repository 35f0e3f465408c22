"""Damaged or hostile model folders: each is refused at load time with one line naming the file.

Every damage is tried twice: as it is (the manifest's sha256 catches it) and with the manifest
re-signed to match, as someone editing the folder on purpose would do, so that the deeper checks
of model.checkpoint.load_model are exercised too. `python -m model.generate` must then exit
non-zero with exactly one `error: ...` line on stderr and no traceback.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from flax import nnx
from test_checkpoint import TEXTS, refresh_manifest

from data.tokenizer import train_tokenizer
from model.checkpoint import CONFIG, MANIFEST, TOKENIZER, WEIGHTS, CheckpointError, load_model
from model.checkpoint import save_model as export
from model.config import GPTConfig
from model.generate import main as generate_main
from model.gpt import GPT

ROOT = Path(__file__).resolve().parents[1]


def _edit_json(path: Path, edit: Callable[[object], object]) -> None:
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def truncate_weights(folder: Path) -> None:
    path = folder / WEIGHTS
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_header_byte(folder: Path) -> None:
    """The first byte of the JSON header (after its 8-byte length): '{' becomes 'z'."""
    path = folder / WEIGHTS
    data = bytearray(path.read_bytes())
    data[8] ^= 0x01
    path.write_bytes(bytes(data))


def flip_exponent_byte(folder: Path) -> None:
    """One byte of one float32 weight made 0x7F: its exponent becomes all ones (inf or NaN).

    The exponent is the low 7 bits of the top byte plus the top bit of the byte below, so the
    first weight whose lower byte has that bit set is chosen (a layer-norm 1.0 has it).
    """
    path = folder / WEIGHTS
    data = bytearray(path.read_bytes())
    start = 8 + struct.unpack("<Q", data[:8])[0]  # tensors follow the header, 4-byte aligned
    offset = next(i for i in range(start, len(data), 4) if data[i + 2] & 0x80)
    data[offset + 3] = 0x7F
    path.write_bytes(bytes(data))


def drop_config_key(folder: Path) -> None:
    _edit_json(folder / CONFIG, lambda c: {k: v for k, v in c.items() if k != "n_head"})


def widen_config(folder: Path) -> None:
    _edit_json(folder / CONFIG, lambda c: {**c, "d_ff": c["d_ff"] * 2})


def claim_a_thousand_blocks(folder: Path) -> None:
    """Building even the shapes of 1,000 blocks would take many minutes: must fail at once."""
    _edit_json(folder / CONFIG, lambda c: {**c, "n_layer": 1000})


def config_value_of_the_wrong_type(folder: Path) -> None:
    _edit_json(folder / CONFIG, lambda c: {**c, "rope_base": "big"})


def tokenizer_of_another_size(folder: Path) -> None:
    train_tokenizer(TEXTS, vocab_size=280).save(str(folder / TOKENIZER))


def token_id_past_the_embedding(folder: Path) -> None:
    """Same token count, but one id (1,000,000) beyond the embedding table's rows."""

    def edit(tokenizer: dict) -> dict:
        vocab = tokenizer["model"]["vocab"]
        vocab[max(vocab, key=vocab.get)] = 1_000_000
        return tokenizer

    _edit_json(folder / TOKENIZER, edit)


def manifest_not_an_object(folder: Path) -> None:
    (folder / MANIFEST).write_text("[]")


def manifest_without_the_weights(folder: Path) -> None:
    _edit_json(folder / MANIFEST, lambda m: {k: v for k, v in m.items() if k != WEIGHTS})


@dataclass(frozen=True)
class Damage:
    damage: Callable[[Path], None]
    edited: str  # the file the damage changes: the manifest check names it
    named: str  # the file the deeper check names once the manifest is re-signed
    message: str  # regex of that deeper check's message


DAMAGES = {
    "truncated weights": Damage(truncate_weights, WEIGHTS, WEIGHTS, r"cannot be read"),
    "flipped header byte": Damage(flip_header_byte, WEIGHTS, WEIGHTS, r"cannot be read"),
    "flipped exponent byte": Damage(
        flip_exponent_byte, WEIGHTS, WEIGHTS, r"holds NaN or infinite values"
    ),
    "config missing a key": Damage(
        drop_config_key, CONFIG, CONFIG, r"missing config keys \['n_head'\]"
    ),
    "config shapes not the weights'": Damage(
        widen_config, CONFIG, WEIGHTS, r"feed_forward\.\w+\.kernel has shape .* but config\.json"
    ),
    "config claims 1000 blocks": Damage(
        claim_a_thousand_blocks, CONFIG, WEIGHTS, r"holds 2 transformer blocks but config\.json"
    ),
    "config value of the wrong type": Damage(
        config_value_of_the_wrong_type, CONFIG, CONFIG, r"rope_base='big' should be a float"
    ),
    "tokenizer of another size": Damage(
        tokenizer_of_another_size, TOKENIZER, TOKENIZER, r"has \d+ tokens but config\.json says"
    ),
    "token id past the embedding": Damage(
        token_id_past_the_embedding, TOKENIZER, TOKENIZER, r"has token id 1000000 but the model"
    ),
    # Damage to the manifest itself is only ever "as it is".
    "manifest not an object": Damage(manifest_not_an_object, MANIFEST, MANIFEST, r"must map"),
    "manifest without the weights": Damage(
        manifest_without_the_weights, MANIFEST, MANIFEST, r"must map exactly"
    ),
}
# (damage, re-signed?): every damage as it is, and, unless it is the manifest's, re-signed.
CASES = [
    (name, resign)
    for name, damage in DAMAGES.items()
    for resign in ((False,) if damage.edited == MANIFEST else (False, True))
]


def case_id(case: tuple[str, bool]) -> str:
    return f"{case[0]}{', re-signed' if case[1] else ''}"


def expected(name: str, resign: bool) -> tuple[str, str]:
    """(the file the error must name, regex of the error) for one case."""
    damage = DAMAGES[name]
    if damage.edited != MANIFEST and not resign:
        return damage.edited, r"does not match its sha256 in manifest\.json"
    return damage.named, damage.message


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[tuple[str, bool], Path]:
    """One damaged copy of a small exported model per case."""
    root = tmp_path_factory.mktemp("damaged")
    tokenizer = train_tokenizer(TEXTS, vocab_size=300)
    config = GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=32, n_layer=2,
                       n_head=2, d_model=32, d_ff=64)  # fmt: skip
    pristine = export(GPT(config, rngs=nnx.Rngs(0)), tokenizer, root / "pristine", {})
    load_model(pristine)  # the undamaged folder loads: the failures below are the damage's
    made = {}
    for index, (name, resign) in enumerate(CASES):
        folder = shutil.copytree(pristine, root / f"case{index}")
        DAMAGES[name].damage(folder)
        if resign:
            refresh_manifest(folder)
        made[name, resign] = folder
    return made


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_load_model_refuses_the_damage_naming_the_file(folders, case):
    folder = folders[case]
    file, message = expected(*case)
    with pytest.raises(CheckpointError) as caught:
        load_model(folder)
    text = str(caught.value)
    assert str(folder / file) in text, text
    assert "\n" not in text
    assert re.search(message, text), text


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_the_sampling_command_prints_one_error_line(folders, case, capfd):
    """model.generate's main, in this process: its exit code and everything it writes to the
    stderr file descriptor (capfd also sees what C libraries write there)."""
    file, message = expected(*case)
    assert generate_main(["--checkpoint", str(folders[case]), "-n", "1"]) == 1
    out, err = capfd.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert str(folders[case] / file) in lines[0] and re.search(message, lines[0]), lines[0]
    assert out == ""


@pytest.mark.slow
def test_the_sampling_command_as_a_process_prints_one_error_line(folders):
    """The same main as a real `python -m model.generate`: interpreter start, exit code and all.

    One case (the config that would take minutes to build) stands for the rest: each process
    costs seconds of CPU, and tests/test_checkpoint.py runs a manifest case as one too.
    """
    case = ("config claims 1000 blocks", True)
    file, message = expected(*case)
    result = subprocess.run(
        [sys.executable, "-m", "model.generate", "--checkpoint", str(folders[case]), "-n", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert str(folders[case] / file) in lines[0] and re.search(message, lines[0]), lines[0]
    assert result.stdout == ""
