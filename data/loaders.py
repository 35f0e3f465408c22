"""Read joke texts from CSV, TSV, JSON, JSON Lines and plain-text files, gzipped or not.

Scraped joke collections are messy, so a loader never stops at a bad row: it skips the row and
counts it as malformed, and the cleaning report shows the count. A problem with a whole file
(missing, unknown format, no text column) raises DataError with a one-line fix instead.

Bytes that are not valid UTF-8 are decoded with `surrogateescape`, which turns each bad byte into
a lone surrogate character. Such characters cannot be valid text, so any record that contains one
is exactly a record with undecodable bytes, and is counted as malformed.
"""

import contextlib
import csv
import glob
import gzip
import importlib.util
import io
import json
import re
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyjokes

from data.errors import DataError

DEFAULT_CSV_COLUMN = "Joke"
# Field names that hold the joke in the JSON collections we know (stupidstuff.json uses "body").
DEFAULT_JSON_FIELDS = ("body", "joke", "text")
SUPPORTED_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".txt")
GZIP_MAGIC = b"\x1f\x8b"
GLOB_CHARACTERS = ("*", "?", "[")

# Undecodable bytes become lone surrogates (see the module docstring).
_SURROGATE = re.compile("[\ud800-\udfff]")
# One or more blank lines (which may hold spaces): the joke separator of multi-line text files.
_BLANK_LINES = re.compile(r"\n\s*\n")

# A joke table has a few columns; a header with far more is not one (see _csv_values).
MAX_CSV_COLUMNS = 1_000
# Column or field names an error message lists at most.
MAX_NAMES_LISTED = 12

# The source name of `default_corpus()`, as recorded in a model folder's metadata.
BUILT_IN_CORPUS = "built-in: oneliners + pyjokes"


@dataclass
class Source:
    """The jokes of one file: the texts that parsed, and how many records were seen and skipped."""

    path: str
    texts: list[str]
    read: int
    malformed: int


def load_sources(paths: Sequence[str], text_column: str | None = None) -> list[Source]:
    """Load every file named in `paths`, in order.

    An entry may be a file, a glob (expanded in sorted order), or a directory, which stands for
    every file of a supported format under it, sorted (so a README next to the data is skipped).

    `text_column` names the CSV column or JSON field that holds the joke when it is not one of
    the defaults ("Joke" for CSV; "body", "joke" or "text" for JSON).
    """
    if not paths:
        raise DataError("no data files given; pass --data PATH (a file or a glob)")
    files = [file for entry in paths for file in _expand(entry)]
    return [_load_file(file, text_column) for file in files]


def default_corpus() -> Source:
    """The jokes that ship inside the `oneliners` and `pyjokes` packages (a few thousand).

    This lets a fresh clone train without any corpus on disk. The `oneliners` files are read
    from its folder without importing it: its `__init__` imports pkg_resources, which recent
    setuptools no longer has (and a Python 3.12 venv has no setuptools at all).
    """
    values: list[object] = []
    spec = importlib.util.find_spec("oneliners")  # finds the package, does not run it
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the oneliners package is missing; pip install -r requirements.txt")
    data_dir = Path(spec.submodule_search_locations[0]) / "data"
    for path in sorted(data_dir.glob("*.txt.gz")):
        values.extend(_text_file_values(_decode(gzip.decompress(path.read_bytes()))))
    values.extend(pyjokes.get_jokes(language="en", category="all"))
    return _source(BUILT_IN_CORPUS, values)


def _expand(entry: str) -> list[str]:
    """Turn one --data entry into the files it names (a literal path wins over a glob)."""
    path = Path(entry)
    if path.is_file():
        return [entry]
    if path.is_dir():
        files = sorted(str(file) for file in path.rglob("*") if _is_supported(file))
        if not files:
            supported = ", ".join(SUPPORTED_SUFFIXES)
            raise DataError(f"{entry}: no {supported} files in this directory; check the path")
        return files
    if any(character in entry for character in GLOB_CHARACTERS):
        matches = sorted(glob.glob(entry, recursive=True))
        files = [match for match in matches if Path(match).is_file()]
        if not files:
            raise DataError(f"{entry}: no files match this pattern; check the pattern and the path")
        return files
    raise DataError(f"{entry}: file not found; check the path (relative to {Path.cwd()})")


def _load_file(path: str, text_column: str | None) -> Source:
    suffix = _format_suffix(path)
    text = _decode(_read_bytes(path))
    if suffix == ".csv":
        values = _csv_values(text, path, text_column)
    elif suffix == ".tsv":
        values = _tsv_values(text)
    elif suffix == ".txt":
        values = _text_file_values(text)
    else:
        values = _json_values(text, path, text_column)
    return _source(path, values)


def _format_suffix(path: str) -> str:
    suffix = _suffix(path)
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(SUPPORTED_SUFFIXES)
        raise DataError(
            f"{path}: unknown format '{suffix or Path(path).name}'; "
            f"supported: {supported} (each also .gz)"
        )
    return suffix


def _is_supported(path: Path) -> bool:
    return path.is_file() and _suffix(path) in SUPPORTED_SUFFIXES


def _suffix(path: str | Path) -> str:
    """The format part of a file name: ".csv" for both "jokes.csv" and "jokes.csv.gz"."""
    return Path(Path(path).name.lower().removesuffix(".gz")).suffix


def _read_bytes(path: str) -> bytes:
    """The file's bytes, decompressed when they are gzip (recognised by content, not name)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror}); check the file") from None
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: damaged gzip file ({error}); download it again") from error


def _decode(raw: bytes) -> str:
    # utf-8-sig drops a byte-order mark, which spreadsheet programs like to add.
    return raw.decode("utf-8-sig", errors="surrogateescape")


def _source(path: str, values: Sequence[object]) -> Source:
    """Keep the values that are clean text; count everything else as malformed."""
    texts = [value for value in values if isinstance(value, str) and not _SURROGATE.search(value)]
    return Source(path=path, texts=texts, read=len(values), malformed=len(values) - len(texts))


def _csv_values(text: str, path: str, text_column: str | None) -> list[object]:
    """One value per CSV row: the text cell, or None for a row that does not parse."""
    # pandas takes time and memory per column, so a header of a hundred thousand commas (a
    # binary or otherwise hostile file) would take minutes: refuse it before parsing.
    with contextlib.suppress(csv.Error, StopIteration):  # no header line, or pandas says why
        columns = len(next(csv.reader(io.StringIO(text))))
        if columns > MAX_CSV_COLUMNS:
            raise DataError(
                f"{path}: {columns} columns in the header line, more than a joke table has "
                f"(at most {MAX_CSV_COLUMNS}); check that this is a CSV file of jokes"
            )
    try:
        # The python engine copes with NUL characters and lone surrogates in cells. Bad rows are
        # counted from its warnings, not with an on_bad_lines callback: rows that the csv module
        # itself rejects (a cell over its size limit, a quote still open at the end of the file)
        # never reach a callback and would vanish uncounted; "warn" reports every skipped row.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            table = pd.read_csv(
                io.StringIO(text),
                dtype=str,
                keep_default_na=False,
                engine="python",
                on_bad_lines="warn",
                index_col=False,
            )
    except pd.errors.EmptyDataError:
        return []
    except pd.errors.ParserError as error:
        reason = str(error).splitlines()[0]
        message = f"{path}: not a readable CSV file ({reason}); fix or re-export it"
        raise DataError(message) from error
    bad_rows = 0
    for warning in caught:
        if str(warning.message).startswith("Skipping line"):
            bad_rows += 1
        else:  # not about a bad row: let it through as it would have come
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    column = text_column or DEFAULT_CSV_COLUMN
    if column not in table.columns:
        names = [str(name) for name in table.columns]
        raise DataError(
            _missing_field_message(path, "column", column, names, table.to_dict("records"))
        )
    # A row with too few cells gets NaN (not a str) in the text column: counted as malformed.
    return [*table[column].tolist(), *([None] * bad_rows)]


def _tsv_values(text: str) -> list[object]:
    """One value per `score<TAB>joke` line; the joke may itself contain tabs."""
    values: list[object] = []
    # Split on "\n" only: str.splitlines would also split on characters such as U+2028 that
    # can occur inside a joke.
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if not line:
            continue
        score, tab, joke = line.partition("\t")
        values.append(joke if tab and _is_number(score) else None)
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _json_values(text: str, path: str, text_column: str | None) -> list[object]:
    """One value per record of a JSON list, or per line of a JSON Lines file."""
    try:
        document = _parse_json(text)
    except (json.JSONDecodeError, RecursionError):
        records = [_json_line(line) for line in text.split("\n") if line.strip()]
    else:
        records = document if isinstance(document, list) else [document]
    objects = [record for record in records if isinstance(record, dict)]
    field = text_column or next(
        (name for name in DEFAULT_JSON_FIELDS if any(name in item for item in objects)),
        DEFAULT_JSON_FIELDS[0],
    )
    if objects and not any(field in item for item in objects):
        names = list(dict.fromkeys(name for item in objects for name in item))
        raise DataError(_missing_field_message(path, "field", field, names, objects))
    # A bare string in the list is taken as a joke; anything else without the field is malformed.
    return [record.get(field) if isinstance(record, dict) else record for record in records]


def _json_line(line: str) -> object:
    try:
        return _parse_json(line)
    except (json.JSONDecodeError, RecursionError):  # nested deeper than Python's stack
        return None


def _parse_json(text: str) -> object:
    """json.loads, except that integers are read as floats.

    Only strings are jokes, so no number is ever kept; but int() raises ValueError on an
    integer of more than 4,300 digits, while float() never fails (it gives inf).
    """
    return json.loads(text, parse_int=float)


def _text_file_values(text: str) -> list[str]:
    """Jokes of a text file: one per line, or one per paragraph if there are blank lines."""
    text = text.replace("\r\n", "\n").strip()
    if not text:
        return []
    if _BLANK_LINES.search(text):
        return _BLANK_LINES.split(text)
    return text.split("\n")


def _missing_field_message(
    path: str, kind: str, wanted: str, names: list[str], records: list[dict]
) -> str:
    """Name the missing column or field, list the ones there are, and suggest the likeliest."""
    if not names or any(_SURROGATE.search(str(name)) for name in names):
        return f"{path}: no {kind} {wanted!r}, nor any readable {kind} names; check the file format"

    def mean_text_length(name: str) -> float:
        values = [record.get(name) for record in records]
        return sum(len(value) for value in values if isinstance(value, str)) / max(len(values), 1)

    def shown(name: str) -> str:
        # A name holding a line break or another control character is quoted, escaped: the
        # message must stay on one line.
        return name if name.isprintable() else repr(name)

    # The joke is usually the longest text in a record, so that is the column to suggest.
    likeliest = max(names, key=mean_text_length)
    listed = ", ".join(shown(str(name)) for name in names[:MAX_NAMES_LISTED])
    if len(names) > MAX_NAMES_LISTED:
        listed += f" and {len(names) - MAX_NAMES_LISTED} more"
    return (
        f"{path}: no {kind} {wanted!r} ({kind}s: {listed}); pass --text-column {shown(likeliest)}"
    )
