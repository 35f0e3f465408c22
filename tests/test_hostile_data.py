"""Hostile data files: whatever bytes a --data file holds, loading it gives jokes or one DataError.

Property-based (hypothesis): random bytes, invalid UTF-8, huge lines, binary files, CSV with the
wrong columns, empty files, JSON that is not a list, deeply nested JSON, huge numbers and corrupt
gzip, each under every supported suffix (.csv .tsv .json .jsonl .txt, and each .gz). Every case
must give Sources (malformed rows counted) or a data.errors.DataError with a one-line message
naming the file: never another exception, never a hang. The number of cases tried is written to
test-artifacts/hostile-data.json (and printed with -s).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.cleaning import CleaningConfig, clean
from data.corpus import split_jokes
from data.errors import DataError
from data.loaders import SUPPORTED_SUFFIXES, Source, load_sources

ARTIFACT = Path(__file__).resolve().parents[1] / "test-artifacts" / "hostile-data.json"
CSV_FIELD_LIMIT = 131_072  # the csv module's default field_size_limit: longer cells are rejected
SECONDS_PER_CASE = 10  # CPU seconds; a case takes milliseconds: past this it "hangs"
EXAMPLES = 300  # hypothesis examples per property: together a few seconds on 2 CPU cores
HOSTILE = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a loaded machine is slow, not wrong: SECONDS_PER_CASE catches real hangs
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- what a hostile file can hold ----------------------------------------------------------

texts = st.text(max_size=200)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | texts
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def invalid_utf8(draw: st.DrawFn) -> bytes:
    """Readable text with bytes that are never valid UTF-8 at random places."""
    good = draw(st.text(max_size=300)).encode("utf-8")
    bad = draw(st.lists(st.sampled_from([b"\xff", b"\xfe", b"\xc0", b"\x80", b"\xed\xa0\x80"])))
    for piece in bad:
        cut = draw(st.integers(0, len(good)))
        good = good[:cut] + piece + good[cut:]
    return good


@st.composite
def huge_lines(draw: st.DrawFn) -> bytes:
    """A line longer than the csv module accepts in a cell, among ordinary lines."""
    length = draw(st.integers(CSV_FIELD_LIMIT, 3 * CSV_FIELD_LIMIT))
    line = draw(st.sampled_from(["x", "ha", '"', "\t", ",", "é"])) * length
    lines = draw(st.lists(texts.filter(lambda t: "\n" not in t), max_size=5))
    lines.insert(draw(st.integers(0, len(lines))), line)
    return "\n".join(lines).encode("utf-8")


@st.composite
def csv_with_wrong_columns(draw: st.DrawFn) -> bytes:
    """A header (maybe with a Joke column) and rows with any number of cells, any quoting."""
    cell = st.text(alphabet=st.sampled_from('ab ,"\n\r\tJoke\x00é'), max_size=12)
    header = draw(st.lists(st.sampled_from(["Joke", "id", "text", ""]) | cell, max_size=5))
    rows = draw(st.lists(st.lists(cell, max_size=7), max_size=8))
    return "\n".join(",".join(row) for row in [header, *rows]).encode("utf-8")


@st.composite
def deeply_nested_json(draw: st.DrawFn) -> bytes:
    """Lists or objects nested deeper than Python's recursion limit, maybe among other lines."""
    depth = draw(st.integers(500, 50_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"body":', "}")]))
    nested = opener * depth + "1" + closer * depth
    lines = draw(st.lists(st.sampled_from(['{"body": "a fine joke"}', "[]", "oops"]), max_size=3))
    return "\n".join([nested, *lines]).encode("utf-8")


@st.composite
def huge_numbers(draw: st.DrawFn) -> bytes:
    """An integer of more digits than int() accepts (4,300), alone, in a list or in a record."""
    digits = "9" * draw(st.integers(4_301, 20_000))
    form = draw(st.sampled_from(["{}", "[{}]", '{{"body": {}}}', '{{"body": "ok", "n": {}}}']))
    return form.format(digits).encode("utf-8")


@st.composite
def corrupt_gzip(draw: st.DrawFn) -> bytes:
    """Gzip of some content, then cut short or with bytes overwritten (the magic kept)."""
    packed = bytearray(gzip.compress(draw(st.binary(max_size=500)) + b"a joke\n" * 20))
    if draw(st.booleans()):
        packed = packed[: draw(st.integers(2, len(packed) - 1))]
    else:
        for _ in range(draw(st.integers(1, 4))):
            packed[draw(st.integers(2, len(packed) - 1))] = draw(st.integers(0, 255))
    return bytes(packed)


KINDS: dict[str, st.SearchStrategy[bytes]] = {
    "random bytes": st.binary(max_size=2_000),
    "invalid utf-8": invalid_utf8(),
    "huge line": huge_lines(),
    "binary": st.binary(min_size=1, max_size=2_000).map(lambda b: b"\x00\x01\x1f" + b),
    "csv with wrong columns": csv_with_wrong_columns(),
    "empty": st.sampled_from([b"", b"\n", b" \n\t\n", b"\xef\xbb\xbf", b"\r\n\r\n"]),
    "json that is not a list": json_values.filter(lambda v: not isinstance(v, list)).map(
        lambda v: json.dumps(v).encode("utf-8")
    ),
    "json lines of anything": st.lists(json_values | texts, max_size=6).map(
        lambda values: "\n".join(json.dumps(v) for v in values).encode("utf-8")
    ),
    "deeply nested json": deeply_nested_json(),
    "huge number": huge_numbers(),
    "corrupt gzip": corrupt_gzip(),
}
SUFFIXES = [f"{suffix}{gz}" for suffix in SUPPORTED_SUFFIXES for gz in ("", ".gz")]


@st.composite
def hostile_files(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(kind, file suffix, file bytes); a .gz file holds its content gzipped (unless corrupt)."""
    kind = draw(st.sampled_from(sorted(KINDS)))
    content = draw(KINDS[kind])
    suffix = draw(st.sampled_from(SUFFIXES))
    if suffix.endswith(".gz") and kind != "corrupt gzip":
        content = gzip.compress(content)
    return kind, suffix, content


# --- the checks ------------------------------------------------------------------------------


class Hang(Exception):
    """A case used more than SECONDS_PER_CASE of CPU time."""


@contextlib.contextmanager
def cpu_time_limit(seconds: float) -> Iterator[None]:
    """Raise Hang in the main thread once the process has used `seconds` more CPU time.

    CPU time, not wall time: a machine busy with other work slows a case down without making
    it spin, while a loop that never ends uses CPU time all along.
    """

    def expire(signum, frame):
        raise Hang(f"still running after {seconds} s of CPU time")

    previous = signal.signal(signal.SIGPROF, expire)
    # Again every second after the first: a Hang raised inside a callback that swallows
    # exceptions (the garbage collector's, say) must not let the case run on unwatched.
    signal.setitimer(signal.ITIMER_PROF, seconds, 1)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def check_data_error(error: DataError, path: Path) -> None:
    message = str(error)
    assert "\n" not in message and str(path) in message, message


def check_sources(sources: list[Source], path: Path) -> None:
    (source,) = sources
    assert source.path == str(path)
    assert 0 <= source.malformed <= source.read
    assert len(source.texts) == source.read - source.malformed
    for text in source.texts:
        # Kept texts are real text: encoding raises on the lone surrogates bad bytes decode to.
        assert isinstance(text, str)
        text.encode("utf-8")


@pytest.fixture(scope="module")
def tally() -> Iterator[Counter]:
    """Cases tried, by kind and outcome; written to ARTIFACT when the module ends."""
    counts: Counter = Counter()
    yield counts
    ARTIFACT.parent.mkdir(exist_ok=True)
    record = {"cases": counts["cases"], "by kind": {}, "by outcome": {}}
    for (group, name), value in sorted(item for item in counts.items() if item[0] != "cases"):
        record[group][name] = value
    ARTIFACT.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nhostile data: {counts['cases']} cases tried; see {ARTIFACT}")


def test_every_hostile_file_gives_jokes_or_one_data_error(tmp_path, tally):
    tried_before = tally["cases"]

    @HOSTILE
    @given(hostile_files())
    def load(case: tuple[str, str, bytes]) -> None:
        kind, suffix, content = case
        path = tmp_path / f"data{suffix}"
        path.write_bytes(content)
        with cpu_time_limit(SECONDS_PER_CASE):
            try:
                sources = load_sources([str(path)])
            except DataError as error:
                check_data_error(error, path)
                outcome = "DataError"
            else:
                check_sources(sources, path)
                # Cleaning (ftfy repairs, normalisation, dedupe) takes whatever was loaded.
                jokes, report = clean(sources, CleaningConfig())
                assert report.total.kept == len(jokes) <= report.total.read
                outcome = "Sources"
        tally["cases"] += 1
        tally["by kind", kind] += 1
        tally["by outcome", outcome] += 1

    load()
    assert tally["cases"] - tried_before >= EXAMPLES


def test_the_whole_pipeline_before_tokenizing_survives_hostile_files(tmp_path, tally):
    """split_jokes: load, clean, split; nothing left after cleaning is a DataError too."""
    tried_before = tally["cases"]

    @settings(HOSTILE, max_examples=EXAMPLES // 2)
    @given(hostile_files())
    def split(case: tuple[str, str, bytes]) -> None:
        kind, suffix, content = case
        path = tmp_path / f"data{suffix}"
        path.write_bytes(content)
        with cpu_time_limit(SECONDS_PER_CASE):
            try:
                jokes = split_jokes([str(path)], cleaning=CleaningConfig(min_chars=1))
            except DataError as error:
                # "Nothing left after cleaning" counts the rules, not the file: one line is all.
                assert "\n" not in str(error), str(error)
                outcome = "DataError (split)"
            else:
                assert jokes.train and jokes.val and set(jokes.train).isdisjoint(jokes.val)
                outcome = "jokes (split)"
        tally["cases"] += 1
        tally["by kind", kind] += 1
        tally["by outcome", outcome] += 1

    split()
    assert tally["cases"] - tried_before >= EXAMPLES // 2


# --- the crashes these properties found, kept as plain regression tests ---------------------


@pytest.mark.parametrize(
    ("name", "content", "read", "malformed"),
    [
        # json.loads raised RecursionError: now one malformed record.
        ("deep.json", "[" * 100_000 + "]" * 100_000, 1, 1),
        # int() raised ValueError past 4,300 digits: now a number, i.e. not a joke.
        ("number.json", "[" + "9" * 5_000 + ', "a joke"]', 2, 1),
        # pandas skipped these rows without telling the bad-row callback: now counted.
        ("long.csv", "Joke\nfirst\n" + "x" * (CSV_FIELD_LIMIT + 1) + "\nthird\n", 3, 1),
        ("open-quote.csv", 'Joke\nfirst\n"never closed\nlast\n', 2, 1),
    ],
)
def test_inputs_that_used_to_crash_or_vanish(tmp_path, name, content, read, malformed):
    path = tmp_path / name
    path.write_text(content)
    (source,) = load_sources([str(path)])
    assert (source.read, source.malformed) == (read, malformed)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        # A column name with a line break made the message two lines: it is quoted now.
        ('"a\nb",c', r"no column 'Joke' \(columns: 'a\\nb', c\); pass --text-column"),
        # 131,073 columns took minutes in pandas, and the message listed every one.
        ("," * CSV_FIELD_LIMIT, r"131073 columns in the header line, more than a joke table"),
        ("x," * 40, r"\(columns: x, x\.1, .*, x\.11 and 29 more\); pass --text-column"),
    ],
)
def test_csv_headers_that_used_to_break_the_message_or_hang(tmp_path, header, message):
    path = tmp_path / "table.csv"
    path.write_text(header + "\nsome,cells\n")
    with cpu_time_limit(SECONDS_PER_CASE), pytest.raises(DataError) as caught:
        load_sources([str(path)])
    check_data_error(caught.value, path)
    assert re.search(message, str(caught.value)), str(caught.value)
