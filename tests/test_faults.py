"""Faults during training: killed, killed while saving, interrupted, diverged, no room, no access.

The signals are real: `python train.py` in a subprocess, stopped with SIGKILL (as the
kernel's out-of-memory killer or a preempted machine would) or SIGINT (Ctrl-C). Faults that
must strike at one exact moment (in the middle of a save, at a given step) are injected by
tests/fault_injection.py, which runs training.cli.main unchanged around them. After a kill,
--resume must continue from the last complete checkpoint and give, on CPU, a loss curve
bit-identical to a run that was never stopped.

Every process shares one persistent JAX compilation cache, so only the first one compiles:
the same flags compile the same programs, and a cached program computes the same bits.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from training_runs import JOKES, OTHER_JOKES, TINY, metrics, run, write_jokes

import training.state
from training.folder import METRICS

ROOT = Path(__file__).resolve().parents[1]
STEPS = 32
CHECKPOINT_EVERY = 4
KILL_SEED = 1234  # picks the steps at which the runs below are killed or interrupted
TIMEOUT_S = 300  # a hung run is killed, so it can never stall the suite
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Joke data, the data cache and the JAX compilation cache shared by this module's runs."""
    folder = tmp_path_factory.mktemp("faults")
    write_jokes(folder, JOKES + OTHER_JOKES)
    return folder


def train_flags(workdir: Path, name: str, *extra: str) -> list[str]:
    """A tiny model on the jokes, logging every step, with dropout: its noise must resume too."""
    return [
        *TINY, "--data", str(workdir / "jokes.txt"), "--out", str(workdir / name),
        "--cache-dir", str(workdir / "cache"), "--steps", str(STEPS), "--log-every", "1",
        "--eval-every", str(STEPS // 2), "--checkpoint-every", str(CHECKPOINT_EVERY),
        "--dropout", "0.1", *extra,
    ]  # fmt: skip


def cpu_env(workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
        "JAX_COMPILATION_CACHE_DIR": str(workdir / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def start(workdir: Path, flags: list[str], fault: tuple[str, int] | None = None):
    """train.py (or tests/fault_injection.py with a fault) in the background; output to files."""
    name = Path(flags[flags.index("--out") + 1]).name
    command = [sys.executable, "train.py", *flags]
    if fault:
        injector = str(ROOT / "tests" / "fault_injection.py")
        command = [sys.executable, injector, fault[0], str(fault[1]), "--", *flags]
    # Files, not pipes: a process blocked on a full pipe would look like a hang.
    with open(workdir / f"{name}.out", "a") as out, open(workdir / f"{name}.err", "a") as err:
        return subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT, env=cpu_env(workdir))


def finish(process: subprocess.Popen) -> int:
    try:
        return process.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"train.py still running after {TIMEOUT_S} s: {process.args}")


def output(workdir: Path, name: str) -> tuple[str, str]:
    """Everything the runs into `name` printed: (stdout, stderr)."""
    return (workdir / f"{name}.out").read_text(), (workdir / f"{name}.err").read_text()


def logged_steps(out: Path) -> list[int]:
    """Steps in metrics.jsonl, read while the run may be writing it (a partial line is skipped)."""
    path = out / METRICS
    text = path.read_text() if path.is_file() else ""
    return [json.loads(line)["step"] for line in text.split("\n")[:-1] if line]


def complete_checkpoints(out: Path) -> list[int]:
    """Steps of the checkpoints Orbax finished: only a completed one has its plain step name."""
    state = out / "state"
    names = [p.name for p in state.iterdir()] if state.is_dir() else []
    return sorted(int(name) for name in names if name.isdigit())


def temporary_checkpoints(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "state").iterdir() if ".orbax-checkpoint-tmp" in p.name)


def wait_until(process: subprocess.Popen, out: Path, step: int, checkpoint: int) -> None:
    """Until the run has logged `step` and completed the checkpoint of step `checkpoint` or a
    later one; fail if it ends first."""
    deadline = time.monotonic() + TIMEOUT_S

    def reached() -> bool:
        logged, complete = logged_steps(out), complete_checkpoints(out)
        return bool(logged and complete) and logged[-1] >= step and complete[-1] >= checkpoint

    while not reached():
        assert process.poll() is None, f"the run ended (code {process.returncode}) before {step}"
        assert time.monotonic() < deadline, f"step {step} not reached in {TIMEOUT_S} s"
        time.sleep(0.01)


def resume(workdir: Path, out: Path) -> str:
    """`train.py --out OUT --resume` to the end; what it (not the run before it) printed."""
    printed_before = len(output(workdir, out.name)[0])
    assert finish(start(workdir, ["--out", str(out), "--resume"])) == 0, output(workdir, out.name)
    return output(workdir, out.name)[0][printed_before:]


def restore(out: Path, step: int) -> tuple[int, list[np.ndarray]]:
    """Load a training checkpoint the way --resume does: (its step, its arrays)."""
    options = ocp.CheckpointManagerOptions(read_only=True)
    with ocp.CheckpointManager((out / "state").absolute(), options=options) as manager:
        assert manager.latest_step() == step
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(), progress=ocp.args.JsonRestore()
            ),
        )
    arrays = [np.asarray(leaf) for leaf in jax.tree.leaves(restored["state"])]
    return restored["progress"]["step"], arrays


def assert_same_curve(resumed: Path, whole: Path) -> None:
    """Step for step, the same training and validation losses, to the last bit."""
    got, want = metrics(resumed), metrics(whole)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert [r["train_loss"] for r in got] == [r["train_loss"] for r in want]
    assert [r.get("val_loss") for r in got] == [r.get("val_loss") for r in want]


@pytest.fixture(scope="module")
def whole(workdir) -> Path:
    """The run that is never stopped: the curve every resumed run must reproduce."""
    assert finish(start(workdir, train_flags(workdir, "whole"))) == 0, output(workdir, "whole")
    return workdir / "whole"


def test_killed_while_saving_then_at_a_random_step_resume_gives_the_uninterrupted_curve(
    workdir, whole
):
    """Two kills, two resumes, one loss curve. (One chain of runs, not two tests: every run
    of train.py costs seconds.)

    1. SIGKILL while the checkpoint of step 8 is written: the checkpoint of step 4 stays
       complete and loadable, step 8's is left a temporary folder. A half-written temporary
       folder of a later step is added, as a kill earlier in a save leaves one.
    2. --resume starts from step 4; this run is SIGKILLed from outside at a random step
       (seeded), once it has completed a checkpoint of its own.
    3. --resume starts from the last complete checkpoint and runs to the end: every loss is
       the uninterrupted run's, to the last bit, and no temporary folder is left.
    """
    out, saving = workdir / "killed", 2 * CHECKPOINT_EVERY
    process = start(workdir, train_flags(workdir, out.name), fault=("kill-while-saving", saving))
    assert finish(process) == -signal.SIGKILL, output(workdir, out.name)[1][-2000:]
    assert complete_checkpoints(out) == [CHECKPOINT_EVERY]
    assert temporary_checkpoints(out) == [f"{saving}.orbax-checkpoint-tmp"]
    step, arrays = restore(out, CHECKPOINT_EVERY)
    assert step == CHECKPOINT_EVERY
    assert all(np.isfinite(a).all() for a in arrays if a.dtype.kind == "f")
    half = out / "state" / f"{STEPS - CHECKPOINT_EVERY}.orbax-checkpoint-tmp"
    shutil.copytree(out / "state" / f"{saving}.orbax-checkpoint-tmp", half)
    for file in sorted(p for p in half.rglob("*") if p.is_file())[::2]:
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])

    printed_before = len(output(workdir, out.name)[0])
    process = start(workdir, ["--out", str(out), "--resume"])
    target = random.Random(KILL_SEED).randint(3 * CHECKPOINT_EVERY + 1, STEPS // 2 + 4)
    wait_until(process, out, target, checkpoint=3 * CHECKPOINT_EVERY)
    process.kill()  # SIGKILL: no handler runs, nothing is saved or cleaned up
    assert finish(process) == -signal.SIGKILL
    assert f"starting at step {CHECKPOINT_EVERY}" in output(workdir, out.name)[0][printed_before:]
    killed_at = logged_steps(out)[-1]
    assert target <= killed_at < STEPS
    last_complete = complete_checkpoints(out)[-1]

    stdout = resume(workdir, out)
    assert f"starting at step {last_complete}" in stdout, (killed_at, stdout)
    assert_same_curve(out, whole)
    assert temporary_checkpoints(out) == []  # each rewritten as the runs passed its step


def test_ctrl_c_during_a_checkpoint_step_saves_it_once_and_exits_cleanly(workdir):
    """Ctrl-C while a checkpoint step trains: that step is saved by the loop, and the save on
    the way out must not save it again (Orbax raises on a step saved twice: a traceback and
    exit code 1). Ctrl-C at other steps: tests/test_training_run.py, then resumed to the same
    curve."""
    out = workdir / "interrupted"
    step = random.Random(KILL_SEED).choice(range(2 * CHECKPOINT_EVERY, STEPS, CHECKPOINT_EVERY))
    flags = train_flags(workdir, out.name)
    assert finish(start(workdir, flags, fault=("sigint-during", step))) == 130
    assert logged_steps(out)[-1] == step  # the step under way is finished, then the run stops
    assert complete_checkpoints(out)[-1] == step and temporary_checkpoints(out) == []
    stderr = output(workdir, out.name)[1]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted: progress saved in {out}; continue with "
        f"`python train.py --out {out} --resume`"
    )


def test_a_nan_loss_stops_naming_its_step_and_keeps_the_last_good_checkpoint(workdir):
    """Checkpoints every 3 steps but loss checks every 10: the NaN of step 5 must still stop
    the run before step 6's (diverged) state is saved over the good one of step 3."""
    out = workdir / "diverged"
    flags = train_flags(workdir, out.name, "--log-every", "10", "--checkpoint-every", "3")
    assert finish(start(workdir, flags, fault=("nan-at", 5))) == 1
    stderr = output(workdir, out.name)[1]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in stderr and len(errors) == 1, stderr[-2000:]
    assert re.fullmatch(
        rf"error: loss became nan at step 5: lower --learning-rate or raise --warmup-steps; "
        rf"the last good checkpoint in {re.escape(str(out / 'state'))} is kept",
        errors[0],
    ), errors[0]
    assert complete_checkpoints(out) == [3] and temporary_checkpoints(out) == []
    step, arrays = restore(out, 3)
    assert step == 3 and all(np.isfinite(a).all() for a in arrays if a.dtype.kind == "f")


# --- before training: the folder and the disk (in this process: these fail before compiling)


@pytest.mark.parametrize("where", ["under a file", "is a file"])
def test_an_out_folder_that_cannot_be_written_is_one_line_before_anything_runs(
    tmp_path, capsys, where
):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    out = blocker / "run" if where == "under a file" else blocker
    assert run(tmp_path, "--out", str(out), "--steps", "1") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert re.fullmatch(
        rf"error: cannot write to {re.escape(str(out))} \(.+\): choose another --out", err[0]
    )
    assert not (tmp_path / "cache").exists()  # stopped before even reading the data


def test_too_little_disk_space_is_one_line_before_training(tmp_path, capsys, monkeypatch):
    data = write_jokes(tmp_path, JOKES)
    out = tmp_path / "run"
    monkeypatch.setattr(
        training.state.shutil,
        "disk_usage",
        lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 10**6, 10**6),
    )
    assert run(tmp_path, "--data", str(data), "--out", str(out), "--steps", "5") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert re.fullmatch(
        rf"error: {re.escape(str(out))} has 1 MB free but checkpoints need about \d+ MB: "
        rf"free some space or choose another --out",
        err[0],
    ), err[0]
    assert logged_steps(out) == [] and complete_checkpoints(out) == []


def test_the_disk_space_check_covers_what_a_run_writes(whole):
    """What the check asks for is at least what a run writes at its peak: every file of the
    finished run, with a third checkpoint being written beside the two it keeps."""

    def size(folder: Path) -> int:
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

    checkpoints = [whole / "state" / str(step) for step in complete_checkpoints(whole)]
    assert len(checkpoints) == 2  # max_to_keep
    written = size(whole) - size(whole / "state") + 3 * max(map(size, checkpoints))
    parameters = json.loads((whole / "model" / "metadata.json").read_text())["parameters"]
    needed = training.state.disk_space_needed(parameters)
    assert written <= needed <= 3 * written, (written, needed)
