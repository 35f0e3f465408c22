from pathlib import Path

import pytest

from data.cleaning import (
    COUNT_NAMES,
    CleaningConfig,
    SourceCounts,
    clean,
    dedupe_key,
    normalize_text,
)
from data.errors import DataError
from data.loaders import Source, load_sources
from data.offensive import OFFENSIVE_THRESHOLD, offensive_probability

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.exists(), reason="the shared joke corpora (../shared/data) are not here"
)
# ../shared/data/README.md: "after whitespace normalisation and exact de-duplication about
# 90,700 jokes". Cleaning here also merges case and punctuation variants, so a few fewer.
README_DEDUPLICATED = 90_700
DEDUPLICATED_TOLERANCE = 0.03

OFFENSIVE_JOKE = "Shut up, you stupid fucking idiot, nobody laughs at you."


def source(texts: list[str], path: str = "test.txt", malformed: int = 0) -> Source:
    return Source(path=path, texts=texts, read=len(texts) + malformed, malformed=malformed)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("donâ€™t panic", "don’t panic"),
        ("fish &amp; chips", "fish & chips"),
        ("he said &quot;hi&quot; &amp; &#39;bye&#39; as 1 < 2", "he said \"hi\" & 'bye' as 1 < 2"),
        ("  a \t  lot\u00a0of   space  ", "a lot of space"),
        ("line one  \r\n  line two", "line one\nline two"),
        ("para one\n\n\n\n\npara two", "para one\n\npara two"),
        ("knock knock<br>who's there<br/>", "knock knock\nwho's there"),
        ('<b>bold</b> <a href="x">link</a> and <a long time>', "bold link and <a long time>"),
        ("**so** ~~not~~ funny", "so not funny"),
        ("[the answer](#spoiler) is ^^tiny ^(and small)", "the answer is tiny and small"),
        ("\\*grabs shirt\\* then a\u200bb", "*grabs shirt* then ab"),
        ("f**k, 2^10 bytes, ¯\\_(ツ)_/¯ and <3", "f**k, 2^10 bytes, ¯\\_(ツ)_/¯ and <3"),
        ("a\x00b\x07c", "abc"),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_dedupe_key_ignores_case_whitespace_and_punctuation():
    assert dedupe_key("Why? Because!") == dedupe_key("why because")
    assert dedupe_key("why  because ...") == dedupe_key("WHY BECAUSE")
    assert dedupe_key("why because") != dedupe_key("why not")
    # Texts without letters or digits are their own keys instead of all colliding on "".
    assert dedupe_key("😂😂") != dedupe_key("🙃")


def test_each_rule_counts_the_jokes_it_drops():
    texts = [
        "A kept joke about a duck.",
        "   ",
        "short",
        "x" * 81,
        "a kept joke about a DUCK!",
        "A kept joke about a duck.",
        OFFENSIVE_JOKE,
        "Another keeper, about geese.",
    ]
    config = CleaningConfig(min_chars=10, max_chars=80, drop_offensive=True)
    jokes, report = clean([source(texts, malformed=2)], config)
    assert jokes == ["A kept joke about a duck.", "Another keeper, about geese."]
    expected = SourceCounts("test.txt", read=10, malformed=2, empty=1, too_short=1, too_long=1)
    expected.duplicate, expected.offensive, expected.kept = 2, 1, 2
    assert report.sources == [expected]


def test_jokes_naming_a_sensitive_topic_are_dropped_and_counted_when_asked():
    texts = ["Why did the Nazi cross the road?", "Why did the duck cross the road?"]
    jokes, report = clean([source(texts)], CleaningConfig(drop_sensitive=True))
    assert jokes == texts[1:] and report.total.sensitive == 1 and report.total.kept == 1
    kept, report = clean([source(texts)], CleaningConfig())
    assert kept == texts and report.total.sensitive == 0


def test_offensive_jokes_stay_without_drop_offensive():
    jokes, report = clean([source([OFFENSIVE_JOKE])], CleaningConfig())
    assert jokes == [OFFENSIVE_JOKE]
    assert report.total.offensive == 0


def test_a_joke_is_dropped_by_the_first_rule_only():
    # Empty beats short, short beats duplicate: nothing is counted twice.
    jokes, report = clean([source(["", "", "tiny", "tiny"])], CleaningConfig(min_chars=10))
    assert jokes == []
    assert (report.total.empty, report.total.too_short, report.total.duplicate) == (2, 2, 0)


def test_first_occurrence_wins_across_sources_in_order():
    first = source(["The same old joke, told well."], path="first.csv")
    second = source(["the same old joke told well", "A new one, just for you."], path="second.csv")
    jokes, report = clean([first, second], CleaningConfig())
    assert jokes == ["The same old joke, told well.", "A new one, just for you."]
    assert [row.duplicate for row in report.sources] == [0, 1]
    assert [row.kept for row in report.sources] == [1, 1]


def test_report_totals_markdown_and_dict():
    sources = [
        source(["One joke, fairly short.", "x"], "a.csv"),
        source(["Two jokes here."], "b.csv"),
    ]
    _, report = clean(sources, CleaningConfig())
    assert report.total == SourceCounts("total", read=3, too_short=1, kept=2)
    lines = report.to_markdown().splitlines()
    assert len(lines) == 2 + len(sources) + 1  # header, rule, a row per source, total
    assert lines[0] == "| source | " + " | ".join(n.replace("_", " ") for n in COUNT_NAMES) + " |"
    assert lines[2].startswith("| `a.csv` | 2 |")
    assert lines[-1].startswith("| **total** | 3 |")
    as_dict = report.to_dict()
    assert [row["path"] for row in as_dict["sources"]] == ["a.csv", "b.csv"]
    assert as_dict["total"]["kept"] == 2


@requires_shared_data
def test_shared_corpora_clean_to_about_the_readme_count():
    sources = load_sources([str(SHARED_DATA)])
    without_length_limits = CleaningConfig(min_chars=1, max_chars=10**9)
    jokes, report = clean(sources, without_length_limits)
    assert len(jokes) == pytest.approx(README_DEDUPLICATED, rel=DEDUPLICATED_TOLERANCE)
    for row in [*report.sources, report.total]:
        dropped = sum(getattr(row, name) for name in COUNT_NAMES if name not in ("read", "kept"))
        assert row.read == dropped + row.kept


def test_a_lower_offensive_threshold_drops_borderline_jokes_too():
    texts = [OFFENSIVE_JOKE, "A kept joke about a duck.", "The duck was drunk again."]
    probabilities = offensive_probability(texts)
    # Between the two thresholds: kept at the default 0.5, dropped at a threshold just below it.
    borderline = float(probabilities[2])
    assert probabilities[0] > OFFENSIVE_THRESHOLD > borderline > probabilities[1]
    strict = CleaningConfig(drop_offensive=True, offensive_threshold=borderline - 0.01)
    default, _ = clean([source(texts)], CleaningConfig(drop_offensive=True))
    stricter, report = clean([source(texts)], strict)
    assert default == texts[1:] and stricter == [texts[1]]
    assert report.total.offensive == 2


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_an_offensive_threshold_outside_0_to_1_is_refused(threshold):
    with pytest.raises(DataError, match=r"offensive threshold .* must be in \(0, 1\]"):
        CleaningConfig(offensive_threshold=threshold)
