"""Repair, normalise, filter and de-duplicate jokes, counting every joke dropped and why.

Each joke is first repaired (mojibake and HTML entities, with ftfy), stripped of stray HTML and
Reddit markup, and given tidy whitespace. Then the rules below drop it or keep it; a dropped joke
is counted under the first rule that applies, in this order: empty, too short, too long,
duplicate, offensive (the loaders already counted the malformed rows).
"""

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

import ftfy
import numpy as np
from tqdm import tqdm

from data.errors import DataError
from data.loaders import Source
from data.offensive import OFFENSIVE_THRESHOLD, is_offensive
from data.sensitive import is_sensitive

# Cleaning runs at tens of thousands of jokes a second, so smaller inputs need no progress bar.
PROGRESS_MIN_JOKES = 20_000

# ftfy's default leaves HTML entities alone in any text that contains "<", on the theory that it
# is real HTML; scraped jokes mix "&amp;" with "x < y", so unescape always. Curly quotes are the
# author's typography, not damage, so they are kept.
_FTFY_CONFIG = ftfy.TextFixerConfig(unescape_html=True, uncurl_quotes=False)

_BLOCK_TAGS = "br|p|div|li|tr"
_INLINE_TAGS = "a|b|i|u|s|em|strong|span|font|sup|sub|small|big|center|blockquote|ul|ol|h[1-6]"
# A tag has no attributes, or attributes with "=", so "<i>" matches but "<a long time>" does not.
_TAG_TAIL = r"(?:\s+[^<>]*=[^<>]*)?\s*/?\s*>"
# (pattern, replacement) pairs, applied in order after ftfy has unescaped the HTML entities.
_MARKUP_RULES = [
    # HTML tags that separate lines become line breaks; inline ones vanish.
    (re.compile(rf"<\s*/?\s*(?:{_BLOCK_TAGS}){_TAG_TAIL}", re.IGNORECASE), "\n"),
    (re.compile(rf"<\s*/?\s*(?:{_INLINE_TAGS}){_TAG_TAIL}", re.IGNORECASE), ""),
    # Markdown links keep their text: "[answer](#spoiler)" -> "answer".
    (re.compile(r"\[([^\[\]\n]+)\]\([^()\s]*\)"), r"\1"),
    # Markdown bold and strike-through keep their text. Not inside words, where "**" is censoring.
    (re.compile(r"(?<!\w)\*\*(?=\S)(.+?)(?<=\S)\*\*(?!\w)"), r"\1"),
    (re.compile(r"(?<!\w)~~(?=\S)(.+?)(?<=\S)~~(?!\w)"), r"\1"),
    # Reddit superscript "^(small words)" and "^^word", but not exponents such as "2^10".
    (re.compile(r"(?<!\w)\^\(([^()\n]*)\)"), r"\1"),
    (re.compile(r"(?<!\w)\^+(?=\w)"), ""),
    # Markdown escapes such as "\*" and "\[", and a backslash marking a line break. "\_" stays,
    # since it is also the arm of the shrug emoticon.
    (re.compile(r"\\+([*\[\]#^~>])"), r"\1"),
    (re.compile(r"\\+(?=\s)"), ""),
    # Zero-width spaces, word joiners and byte-order marks (Reddit uses "&#x200B;" as spacing).
    (re.compile("[\u200b\u2060\ufeff]"), ""),
]
# Most jokes contain none of the characters that start markup, and skip the rules above.
_MARKUP_START = re.compile(r"[<\[*~^\\\u200b\u2060\ufeff]")
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")
_NOT_ALPHANUMERIC = re.compile(r"[\W_]+")


@dataclass
class CleaningConfig:
    """Which jokes `clean` keeps."""

    # Anything shorter is a fragment ("lol", a lone emoji), not a joke.
    min_chars: int = 10
    # About 230 tokens at the ~3.5 characters per token of a 4,096-entry vocabulary, so that a
    # whole joke, punchline included, fits in a 256-token context. Training rows hold whole
    # jokes, each from its start (data/packing.py), so the tokens of a longer joke past the
    # context are never learned (with the `small` preset's 128 tokens, about 5% of the kept
    # jokes lose their end). This drops about 6% of the shared corpora's jokes, mostly long
    # stories.
    max_chars: int = 800
    # Drop jokes the offensive-language classifier flags (the --clean flag): those whose
    # offensive probability is above the threshold. Lower is stricter.
    drop_offensive: bool = False
    offensive_threshold: float = OFFENSIVE_THRESHOLD
    # Drop jokes that name a sensitive topic (data/sensitive.py): groups of people, sex, sexual
    # violence, self-harm, drugs, atrocities. --clean sets it with drop_offensive, so that a
    # model trained for clean mode rarely writes what clean mode keeps out.
    drop_sensitive: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.offensive_threshold <= 1:
            raise DataError(
                f"offensive threshold {self.offensive_threshold} must be in (0, 1]; "
                f"the default is {OFFENSIVE_THRESHOLD}, lower drops more jokes"
            )


@dataclass
class SourceCounts:
    """What happened to the records of one source: read = malformed + every drop + kept."""

    path: str
    read: int = 0
    malformed: int = 0
    empty: int = 0
    too_short: int = 0
    too_long: int = 0
    duplicate: int = 0
    offensive: int = 0
    sensitive: int = 0
    kept: int = 0


COUNT_NAMES = tuple(f.name for f in fields(SourceCounts) if f.name != "path")


@dataclass
class CleaningReport:
    """Per-source counts of read, dropped (by rule) and kept jokes."""

    sources: list[SourceCounts] = field(default_factory=list)

    @property
    def total(self) -> SourceCounts:
        sums = {name: sum(getattr(row, name) for row in self.sources) for name in COUNT_NAMES}
        return SourceCounts(path="total", **sums)

    def to_dict(self) -> dict:
        return {"sources": [asdict(row) for row in self.sources], "total": asdict(self.total)}

    def to_markdown(self) -> str:
        """A table with a row per source and a total row, e.g. for a training log or README."""
        header = ["source", *(name.replace("_", " ") for name in COUNT_NAMES)]
        lines = [_markdown_row(header), _markdown_row(["---"] * len(header))]
        named_rows = [(f"`{row.path}`", row) for row in self.sources]
        for name, row in [*named_rows, ("**total**", self.total)]:
            lines.append(_markdown_row([name, *(f"{getattr(row, n):,}" for n in COUNT_NAMES)]))
        return "\n".join(lines)


def clean(sources: Sequence[Source], config: CleaningConfig) -> tuple[list[str], CleaningReport]:
    """Repair and filter the jokes of all sources; a joke seen in an earlier source wins."""
    report = CleaningReport()
    candidates: list[tuple[str, SourceCounts]] = []  # each surviving joke and its source's row
    seen_keys: set[str] = set()
    total = sum(len(source.texts) for source in sources)
    progress = tqdm(total=total, desc="cleaning", unit=" jokes", disable=total < PROGRESS_MIN_JOKES)
    for source in sources:
        counts = SourceCounts(path=source.path, read=source.read, malformed=source.malformed)
        report.sources.append(counts)
        for raw in source.texts:
            progress.update()
            text = normalize_text(raw)
            if not text:
                counts.empty += 1
            elif len(text) < config.min_chars:
                counts.too_short += 1
            elif len(text) > config.max_chars:
                counts.too_long += 1
            elif (key := dedupe_key(text)) in seen_keys:
                counts.duplicate += 1
            else:
                seen_keys.add(key)
                candidates.append((text, counts))
    progress.close()
    texts = [text for text, _ in candidates]
    # The classifier runs once over all survivors: it is vectorised, and fast only in bulk.
    offensive = (
        is_offensive(texts, config.offensive_threshold)
        if config.drop_offensive
        else np.zeros(len(texts), dtype=bool)
    )
    sensitive = is_sensitive(texts) if config.drop_sensitive else np.zeros(len(texts), dtype=bool)
    kept = []
    for (text, counts), flagged, topic in zip(candidates, offensive, sensitive, strict=True):
        if flagged:
            counts.offensive += 1
        elif topic:
            counts.sensitive += 1
        else:
            counts.kept += 1
            kept.append(text)
    return kept, report


def normalize_text(text: str) -> str:
    """Repair encoding damage and markup, and tidy whitespace, keeping line breaks.

    Runs of spaces and tabs become one space; lines are stripped; paragraph breaks survive as a
    single blank line.
    """
    text = ftfy.fix_text(text, _FTFY_CONFIG)
    if _MARKUP_START.search(text):
        for pattern, replacement in _MARKUP_RULES:
            text = pattern.sub(replacement, text)
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def dedupe_key(text: str) -> str:
    """The text with case, whitespace and punctuation removed: equal keys are the same joke.

    A text with no letters or digits at all (only emoji, say) is its own key, so that such
    jokes are not all taken for one another.
    """
    return _NOT_ALPHANUMERIC.sub("", text.casefold()) or text


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
