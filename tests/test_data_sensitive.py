"""Clean mode's second check: the sensitive-topic lexicon (data/sensitive.py), and the two
checks together (data/clean_mode.py)."""

from __future__ import annotations

import json

import pytest

from data.clean_mode import is_unfit
from data.errors import DataError
from data.sensitive import LEXICON_PATH, is_sensitive, lexicon, sensitive_topics

# The two jokes the issue found in clean mode, and one per category.
FLAGGED = {
    "Why did the chicken cross the road? To get a gun and a black guy.": ["identity groups"],
    "What do you call a baby that survived? A failed abortion.": ["atrocities"],
    "Why was the RAPIST late? Traffic.": ["sexual violence"],
    "My wife wants more  sex in the kitchen.": ["sexual content"],
    "I told my doctor I was suicidal.": ["self-harm"],
    "What did the crackhead say?": ["drugs"],
    "Why did Hitler's dog bark?": ["atrocities"],
}
# Words that contain a flagged word, or share its start, but are harmless.
KEPT = [
    "Why did the grapes cross the rapids? To visit Essex.",
    "I have to crack a joke about my hearing aids.",
    "The therapist said the analysis was sextant-shaped.",
    "Why did the chicken cross the road? To get to the other side.",
]


@pytest.mark.parametrize(("text", "topics"), sorted(FLAGGED.items()))
def test_a_joke_naming_a_sensitive_topic_is_flagged_with_its_category(text, topics):
    assert sensitive_topics(text) == topics


def test_only_whole_words_match_and_harmless_lookalikes_pass():
    assert is_sensitive(KEPT) == [False] * len(KEPT)


def test_every_term_of_the_lexicon_matches_itself_in_a_sentence():
    spec = json.loads(LEXICON_PATH.read_text())
    assert spec["sources"] and set(spec["categories"]) == set(lexicon())
    for category, terms in spec["categories"].items():
        for term in terms:
            sentence = f"Then {term.removesuffix('*').upper()} walked in."
            assert category in sensitive_topics(sentence), (category, term)


def test_clean_mode_keeps_out_offensive_words_and_sensitive_topics():
    texts = ["You are a stupid fucking idiot.", *FLAGGED, *KEPT]
    assert is_unfit(texts) == [True] * (1 + len(FLAGGED)) + [False] * len(KEPT)
    assert is_unfit([]) == []


def test_a_damaged_lexicon_is_reported_by_name(tmp_path):
    broken = tmp_path / "sensitive_topics.json"
    broken.write_text("{not json")
    with pytest.raises(DataError, match=r"sensitive_topics\.json cannot be read"):
        lexicon(broken)
    broken.write_text(json.dumps({"format": "other", "categories": {}}))
    with pytest.raises(DataError, match="not a punchline-sensitive-topics-v1 file"):
        lexicon(broken)
