import gzip
import json
import random
from pathlib import Path

import pytest

from data.errors import DataError
from data.loaders import Source, default_corpus, load_sources

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.exists(), reason="the shared joke corpora (../shared/data) are not here"
)
# Joke counts per file, from ../shared/data/README.md.
README_COUNTS = {
    "short-jokes/funjokes.csv": 9_985,
    "short-jokes/funtweets.csv": 18_502,
    "short-jokes/joke-db.csv": 4_694,
    "short-jokes/onelinefun.csv": 2_950,
    "short-jokes/reddit-cleanjokes.csv": 1_622,
    "short-jokes/thejokecafe.csv": 7_733,
    "stupidstuff.json": 3_773,
    "rjokes-dev.tsv.gz": 43_246,
}
COUNT_TOLERANCE = 0.01


def write(path: Path, content: str | bytes) -> str:
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return str(path)


def load_one(path: str, text_column: str | None = None) -> Source:
    (source,) = load_sources([path], text_column)
    return source


def data_error(paths: list[str], text_column: str | None = None) -> str:
    with pytest.raises(DataError) as caught:
        load_sources(paths, text_column)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_csv_reads_the_joke_column(tmp_path):
    source = load_one(write(tmp_path / "a.csv", 'ID,Joke\n1,"First, with a comma"\n2,Second\n'))
    assert source == Source(str(tmp_path / "a.csv"), ["First, with a comma", "Second"], 2, 0)


def test_csv_keeps_multi_line_cells(tmp_path):
    source = load_one(write(tmp_path / "a.csv", 'ID,Joke\n1,"Line one\nLine two"\n'))
    assert source.texts == ["Line one\nLine two"]


def test_csv_text_column_option(tmp_path):
    path = write(tmp_path / "a.csv", "id,setup,text\n1,short,the joke itself\n")
    assert load_one(path, text_column="text").texts == ["the joke itself"]


def test_csv_without_joke_column_names_columns_and_suggests_the_longest(tmp_path):
    path = write(tmp_path / "a.csv", "id,text\n1,a rather long joke text\n2,another long joke\n")
    message = data_error([path])
    assert "no column 'Joke'" in message
    assert "columns: id, text" in message
    assert message.endswith("pass --text-column text")


def test_csv_bad_rows_are_skipped_and_counted(tmp_path):
    content = b'ID,Joke\n1,"good one"\n2,"too",many,cells\n3\n4,"bad \xff byte"\n'
    source = load_one(write(tmp_path / "a.csv", content))
    assert source.texts == ["good one"]
    assert (source.read, source.malformed) == (4, 3)


def test_tsv_splits_on_the_first_tab_only(tmp_path):
    path = write(tmp_path / "a.tsv", "3\tA joke\twith a stray tab\n0\tAnother\n")
    assert load_one(path).texts == ["A joke\twith a stray tab", "Another"]


def test_tsv_lines_without_tab_or_numeric_score_are_malformed(tmp_path):
    path = write(tmp_path / "a.tsv.gz", "1\tgood\nno tab here\nhigh\tbad score\n2.5\talso good\n\n")
    source = load_one(path)
    assert source.texts == ["good", "also good"]
    assert (source.read, source.malformed) == (4, 2)


@pytest.mark.parametrize("field", ["body", "joke", "text"])
def test_json_list_with_a_default_text_field(tmp_path, field):
    records = [{"id": 1, field: "one"}, {"id": 2, field: "two\nlines"}]
    assert load_one(write(tmp_path / "a.json", json.dumps(records))).texts == ["one", "two\nlines"]


def test_json_wrong_types_and_missing_fields_are_malformed(tmp_path):
    records = [{"body": "fine"}, {"body": 42}, {"body": None}, {"title": "no body"}, 7, "bare"]
    source = load_one(write(tmp_path / "a.json", json.dumps(records)))
    assert source.texts == ["fine", "bare"]
    assert (source.read, source.malformed) == (6, 4)


def test_json_text_column_option_and_missing_field_error(tmp_path):
    path = write(tmp_path / "a.json", json.dumps([{"id": 1, "punchline": "the joke"}]))
    assert load_one(path, text_column="punchline").texts == ["the joke"]
    message = data_error([path])
    assert "no field 'body'" in message
    assert message.endswith("pass --text-column punchline")


def test_json_lines_with_a_broken_line(tmp_path):
    lines = [json.dumps({"joke": "first"}), "{not json", json.dumps({"joke": "second"})]
    source = load_one(write(tmp_path / "a.jsonl.gz", "\n".join(lines) + "\n"))
    assert source.texts == ["first", "second"]
    assert (source.read, source.malformed) == (3, 1)


def test_text_file_one_joke_per_line(tmp_path):
    source = load_one(write(tmp_path / "a.txt", "first joke\r\nsecond joke\n"))
    assert source.texts == ["first joke", "second joke"]


def test_text_file_with_blank_lines_holds_one_joke_per_paragraph(tmp_path):
    path = write(tmp_path / "a.txt", "first line\nof joke one\n\n  \n\njoke two\n")
    assert load_one(path).texts == ["first line\nof joke one", "joke two"]


def test_gzip_is_recognised_by_content(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(gzip.compress(b"ID,Joke\n1,zipped\n"))
    assert load_one(str(path)).texts == ["zipped"]


def test_globs_expand_sorted_and_several_paths_load_in_order(tmp_path):
    for name in ["b.txt", "a.txt", "c.csv"]:
        write(tmp_path / name, f"joke from {name}\n" if name.endswith(".txt") else "Joke\nx\n")
    sources = load_sources([str(tmp_path / "*.txt"), str(tmp_path / "c.csv")])
    assert [Path(source.path).name for source in sources] == ["a.txt", "b.txt", "c.csv"]


def test_a_directory_stands_for_its_supported_files(tmp_path):
    write(tmp_path / "README.md", "# not jokes")
    (tmp_path / "nested").mkdir()
    write(tmp_path / "nested" / "b.tsv.gz", "1\tzipped joke\n")
    write(tmp_path / "a.txt", "plain joke\n")
    sources = load_sources([str(tmp_path)])
    assert [Path(source.path).relative_to(tmp_path).as_posix() for source in sources] == [
        "a.txt",
        "nested/b.tsv.gz",
    ]


def test_missing_file_glob_without_match_and_empty_directory_are_errors(tmp_path):
    assert "file not found" in data_error([str(tmp_path / "absent.csv")])
    assert "no files match" in data_error([str(tmp_path / "*.csv")])
    write(tmp_path / "notes.md", "no jokes here")
    assert "no .csv, .tsv, .json, .jsonl, .txt files" in data_error([str(tmp_path)])
    assert "no data files" in data_error([])


def test_unknown_format_lists_the_supported_ones(tmp_path):
    message = data_error([write(tmp_path / "jokes.xlsx", "whatever")])
    assert "unknown format '.xlsx'" in message
    assert ".csv, .tsv, .json, .jsonl, .txt" in message


def test_damaged_gzip_is_an_error(tmp_path):
    path = tmp_path / "a.txt.gz"
    path.write_bytes(gzip.compress(b"some jokes\n" * 100)[:40])
    assert "damaged gzip" in data_error([str(path)])


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".txt"])
def test_binary_files_never_crash(tmp_path, suffix):
    noise = random.Random(0).randbytes(5_000)
    path = write(tmp_path / f"noise{suffix}", noise)
    try:
        source = load_one(path)
    except DataError as error:  # a clear, one-line refusal is fine; a traceback is not
        assert "\n" not in str(error)
    else:
        assert source.read == len(source.texts) + source.malformed
        assert source.malformed > 0


def test_empty_file_has_no_records(tmp_path):
    for name in ["a.csv", "a.tsv", "a.json", "a.txt"]:
        assert load_one(write(tmp_path / name, "")) == Source(str(tmp_path / name), [], 0, 0)


def test_default_corpus_ships_thousands_of_jokes():
    source = default_corpus()
    assert len(source.texts) > 4_000
    assert source.read == len(source.texts) + source.malformed


@requires_shared_data
def test_every_shared_corpus_loads_with_the_readme_counts():
    sources = load_sources([str(SHARED_DATA)])
    counts = {
        Path(source.path).relative_to(SHARED_DATA).as_posix(): len(source.texts)
        for source in sources
    }
    assert counts.keys() == README_COUNTS.keys()
    for name, expected in README_COUNTS.items():
        assert counts[name] == pytest.approx(expected, rel=COUNT_TOLERANCE), name
