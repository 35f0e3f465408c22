"""What clean mode keeps off the page: offensive language or a sensitive topic.

Two checks, because each misses what the other catches: the classifier (data/offensive.py)
flags swear words and insults, the lexicon (data/sensitive.py) jokes that name groups of
people, sex, sexual violence, self-harm, drugs or atrocities without swearing.
"""

from __future__ import annotations

from collections.abc import Sequence

from data.offensive import is_offensive
from data.sensitive import is_sensitive


def is_unfit(texts: Sequence[str]) -> list[bool]:
    """For each text: would clean mode keep it out?"""
    if not texts:
        return []
    offensive = is_offensive(list(texts))
    return [bool(a) or b for a, b in zip(offensive, is_sensitive(texts), strict=True)]
