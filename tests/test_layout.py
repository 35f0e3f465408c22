"""The layout of the code: dependencies run one way, and the entry points stay thin.

data → model → training / serving → ui → app. Every import in every file is read (those inside
functions too), so a shortcut across the layers fails here rather than in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each package may import from this repository (besides itself).
ALLOWED = {
    "data": {"data"},
    "model": {"data", "model"},
    "training": {"data", "model", "training"},
    "serving": {"data", "model", "serving"},
    "ui": {"data", "model", "serving", "ui"},
}
LOCAL = {*ALLOWED, "app", "train", "evaluate", "benchmarks", "experiments", "tests"}
ENTRY_POINT_LINES = 80  # app.py and train.py only compose
MODULE_LINES = 400  # one concern per file


def source_files() -> list[Path]:
    """Every Python file of the project that is not a test."""
    skipped = {".venv", "tests", "test-artifacts", "runs"}
    return sorted(
        path
        for path in ROOT.rglob("*.py")
        if not skipped & set(path.relative_to(ROOT).parts[:-1]) and path.parent != ROOT / ".venv"
    )


def imported(path: Path) -> set[str]:
    """The top-level names of every module `path` imports (absolute imports)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_files_are_found():
    found = {path.relative_to(ROOT).as_posix() for path in source_files()}
    assert {"app.py", "train.py", "ui/layout.py", "serving/writer.py", "model/gpt.py"} <= found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_layers_below_it(package):
    crossings = {
        path.relative_to(ROOT).as_posix(): sorted((imported(path) & LOCAL) - ALLOWED[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {name: bad for name, bad in crossings.items() if bad} == {}


def test_nothing_imports_the_entry_points():
    importers = [
        p.relative_to(ROOT).as_posix() for p in source_files() if {"app", "train"} & imported(p)
    ]
    assert importers == []


def test_only_the_page_imports_gradio():
    importers = {p.relative_to(ROOT).as_posix() for p in source_files() if "gradio" in imported(p)}
    assert {name.split("/")[0] for name in importers} <= {"ui", "app.py"}


def test_the_entry_points_are_thin_and_no_module_is_long():
    lengths = {
        p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in source_files()
    }
    assert lengths["app.py"] <= ENTRY_POINT_LINES and lengths["train.py"] <= ENTRY_POINT_LINES
    assert {name: n for name, n in lengths.items() if n > MODULE_LINES} == {}


def test_the_space_runs_the_pinned_gradio_on_a_tested_python():
    """The README's front matter is the Space's config: its Gradio is the pinned one."""
    readme = (ROOT / "README.md").read_text()
    front = dict(
        line.split(": ", 1) for line in readme.split("---")[1].strip().splitlines() if ": " in line
    )
    pins = dict(
        line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )  # fmt: skip
    assert front["sdk"] == "gradio" and front["sdk_version"] == pins["gradio"]
    assert front["app_file"] == "app.py" and front["python_version"].strip('"') in {"3.11", "3.12"}
