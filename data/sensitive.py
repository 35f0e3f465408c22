"""Sensitive topics: the second check of clean mode, beside the offensive-language classifier.

The classifier (data/offensive.py) flags profanity. A joke about a group of people, rape,
abortion or the Holocaust can use no swear word at all and pass it. Clean mode is for a public
page, so it also keeps out jokes that *name* such a topic, found by a small lexicon kept as
data (sensitive_topics.json, with its sources): slurs, identity groups, sexual content, sexual
violence, self-harm, drugs and atrocities. No maintained word list of topics (rather than of
swear words) exists in the package registries.

A term matches as a whole word or phrase, ignoring case; a trailing `*` matches any ending
("rapist*" matches "rapists"). Flagging is by topic, not intent: a gentle joke that names
one of these topics is kept out too, which clean mode accepts (README, Reliability, has the
measured rates).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path

from data.errors import DataError

LEXICON_PATH = Path(__file__).with_name("sensitive_topics.json")
LEXICON_FORMAT = "punchline-sensitive-topics-v1"


def term_pattern(term: str) -> str:
    """One lexicon term as a regular expression: its words with any run of spaces between
    them, and any word ending after a trailing `*` (word boundaries go around all terms)."""
    stem = term.removesuffix("*")
    words = r"\s+".join(re.escape(word) for word in stem.split())
    return words + (r"\w*" if term.endswith("*") else "")


@functools.cache
def lexicon(path: Path = LEXICON_PATH) -> dict[str, re.Pattern[str]]:
    """{category: one compiled pattern matching any of its terms}, read once."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(
            f"{path} cannot be read ({error}); restore it from the repository"
        ) from None
    if spec.get("format") != LEXICON_FORMAT:
        raise DataError(f"{path}: not a {LEXICON_FORMAT} file; restore it from the repository")
    # One alternation per category between word boundaries: 4x faster than a lookaround
    # around each term, and the same matches (every term starts and ends with a word character).
    return {
        category: re.compile(rf"\b(?:{'|'.join(term_pattern(t) for t in terms)})\b", re.IGNORECASE)
        for category, terms in spec["categories"].items()
    }


def sensitive_topics(text: str) -> list[str]:
    """The categories of the lexicon that `text` names, in the lexicon's order."""
    return [category for category, pattern in lexicon().items() if pattern.search(text)]


def is_sensitive(texts: Sequence[str]) -> list[bool]:
    """For each text: does it name a sensitive topic?"""
    return [bool(sensitive_topics(text)) for text in texts]
