"""No pickle anywhere: unpickling runs arbitrary code, so no project file may read or write one.

Every tracked .py file is parsed (ast, so comments and strings, including this file's own
patterns, never count) and every use of a pickle-based loader or writer is reported as
file:line. Model weights are safetensors, configs and tokenizers JSON, checkpoints Orbax.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Modules that read or write pickles (marshal: code objects; shelve: pickles in a dbm file),
# and profanity_check, whose import unpickles its own model with joblib.
PICKLE_MODULES = {
    "pickle", "_pickle", "cPickle", "joblib", "dill", "cloudpickle", "shelve", "marshal",
    "profanity_check",
}  # fmt: skip
# Functions that unpickle (or pickle) whatever module they are reached through.
PICKLE_FUNCTIONS = {"read_pickle", "to_pickle"}  # pandas
# torch.load unpickles; numpy.load does unless given allow_pickle=False.
TORCH, NUMPY = {"torch"}, {"np", "numpy"}

# The single allowed exception, with the reason it is safe.
ALLOWED = {
    # A one-off converter a developer runs by hand (python -m data.export_offensive_model): it
    # imports alt-profanity-check, whose own pickles (shipped in that pinned package) load on
    # import, and writes the pickle-free data/offensive_model.json that run time reads instead.
    "data/export_offensive_model.py",
}


def _root_name(node: ast.expr) -> str | None:
    """'np' for np.load, 'numpy' for numpy.lib.npyio.load; None when not a plain dotted name."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def pickle_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for every pickle use in a Python source text."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PICKLE_MODULES:
                    found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            names = {alias.name for alias in node.names}
            numpy_load = top == "numpy" and "load" in names
            if top in PICKLE_MODULES or numpy_load or names & (PICKLE_MODULES | PICKLE_FUNCTIONS):
                found.append((node.lineno, f"from {node.module} import {', '.join(sorted(names))}"))
        elif isinstance(node, ast.Attribute):
            root = _root_name(node.value)
            if root in PICKLE_MODULES or node.attr in PICKLE_FUNCTIONS:
                found.append((node.lineno, f"{root}.{node.attr}"))
            elif root in TORCH and node.attr == "load":
                found.append((node.lineno, "torch.load"))
        elif isinstance(node, ast.Call):
            found.extend(_pickle_call(node))
    return sorted(set(found))


def _pickle_call(call: ast.Call) -> list[tuple[int, str]]:
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    allow = keywords.get("allow_pickle")
    if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
        return [(call.lineno, "allow_pickle not False")]  # True, or a value decided at run time
    func = call.func
    numpy_load = isinstance(func, ast.Attribute) and func.attr == "load"
    if numpy_load and _root_name(func) in NUMPY and allow is None:
        return [(call.lineno, "numpy load without allow_pickle=False")]
    if isinstance(func, ast.Name) and func.id in ("__import__", "import_module") and call.args:
        name = call.args[0]
        if isinstance(name, ast.Constant) and str(name.value).split(".")[0] in PICKLE_MODULES:
            return [(call.lineno, f"{func.id}({name.value!r})")]
    return []


def tracked_python_files() -> list[str]:
    result = subprocess.run(
        ["git", "ls-files", "*.py"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return result.stdout.split()


def test_no_tracked_python_file_uses_pickle():
    files = tracked_python_files()
    assert len(files) > 20, files  # the project's files, not an empty listing
    uses = [
        f"{name}:{line}: {what}"
        for name in files
        if name not in ALLOWED
        for line, what in pickle_uses((ROOT / name).read_text(encoding="utf-8"))
    ]
    assert not uses, "pickle use found:\n" + "\n".join(uses)


def test_the_allowed_exception_exists_and_is_the_only_one():
    """An allow-list entry for a file that is gone, or no longer needs it, must be removed."""
    for name in ALLOWED:
        assert name in tracked_python_files(), name
        assert pickle_uses((ROOT / name).read_text(encoding="utf-8")), name


def test_the_scan_finds_each_kind_of_pickle_use():
    """The scanner itself can fail: every pattern below is reported, at its line."""
    lines = [
        "import pickle",
        "import joblib as jl",
        "from dill import loads",
        "import cloudpickle, shelve",
        "from marshal import load",
        "data = pickle.load(f)",
        "model = torch.load('w.pt')",
        "array = np.load('a.npy')",
        "array = numpy.load('a.npy', allow_pickle=True)",
        "array = np.load(path, allow_pickle=flag)",
        "frame = pd.read_pickle('f.pkl')",
        "module = __import__('pickle')",
        "from numpy import load",
        "import profanity_check",
    ]
    found = pickle_uses("\n".join(lines))
    assert sorted({line for line, _ in found}) == list(range(1, len(lines) + 1)), found


def test_safe_look_alikes_are_not_reported():
    source = "\n".join(
        [
            '"""A docstring about pickle.load and np.load(x) and torch.load."""',
            "# import pickle  (a comment)",
            "text = 'import joblib; pickle.loads(b)'",
            "array = np.load('a.npy', allow_pickle=False)",
            "tensors = safetensors.numpy.load_file(path)",
            "config = json.load(f)",
            "jokes = ['a dill pickle walked into a bar']",
        ]
    )
    assert pickle_uses(source) == []


def test_this_file_does_not_trip_on_its_own_patterns():
    assert pickle_uses(Path(__file__).read_text(encoding="utf-8")) == []
