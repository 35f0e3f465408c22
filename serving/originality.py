"""Is a finished joke new? The nearest training joke, found by TF-IDF (data/originality.py)."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.clean_mode import is_unfit
from data.corpus import model_data
from data.errors import DataError
from data.originality import JokeIndex, Nearest
from data.originality_index import HashedJokeIndex
from model.checkpoint import load_originality_index

NEW, CLOSE = "new", "close to a known joke"  # the originality verdicts
# In clean mode, how many of the nearest training jokes may stand in for a crude nearest one.
CLEAN_CANDIDATES = 20
TEXT_ABSENT = (
    "The nearest training joke is not shown: the training files are not on this machine "
    "(the model folder's index holds no text)."
)
NONE_CLEAN = (
    "The nearest training jokes are not shown: none of the "
    f"{CLEAN_CANDIDATES} nearest is fit for clean mode."
)


@dataclass(frozen=True)
class Originality:
    """A finished joke against the training jokes: what the page and the API report."""

    verdict: str | None  # NEW or CLOSE; None when there was nothing to compare with
    similarity: float | None  # cosine similarity of TF-IDF vectors, 0 to 1
    joke: str | None  # the nearest training joke (in clean mode, the nearest clean one)
    note: str | None  # why there is no verdict, or no joke under a verdict

    @classmethod
    def unknown(cls, note: str) -> Originality:
        return cls(None, None, None, note)

    def as_json(self) -> dict[str, Any]:
        similarity = None if self.similarity is None else round(self.similarity, 4)
        return dataclasses.asdict(self) | {"similarity": similarity}


def judge(nearest: Nearest) -> Originality:
    """The verdict on one joke from its nearest training joke (see data/originality.py)."""
    similarity = min(1.0, max(0.0, nearest.similarity))  # float32 sums can pass 1 slightly
    if similarity == 0:  # no word in common with any training joke: none is nearer than another
        return Originality(NEW, 0.0, None, None)
    return Originality(CLOSE if nearest.memorised else NEW, similarity, nearest.joke, None)


class OriginalityCheck:
    """Finds the training joke nearest to each finished joke.

    The full index needs the training files, read again from the paths in the model's metadata,
    and some seconds (a minute on a busy 2-core machine for 70,000 jokes): it is built in a
    background thread, so the app serves jokes meanwhile. Where the files are not on the machine
    (a Hugging Face Space has only the model folder), the text-free index the model `folder`
    ships gives the verdict and the similarity without the joke (data/originality_index.py);
    without one either, the check says it is unavailable and why. Only one training joke per
    request ever leaves the server: the nearest one (in clean mode, the nearest clean one).
    """

    def __init__(self, metadata: dict[str, Any], folder: str | Path | None = None):
        self._index: JokeIndex | HashedJokeIndex | None = None
        self._unavailable = ""
        self._built = threading.Event()
        thread = threading.Thread(target=self._build, args=(metadata, folder), daemon=True)
        thread.start()

    def _build(self, metadata: dict[str, Any], folder: str | Path | None) -> None:
        started = time.perf_counter()
        try:
            self._index = JokeIndex(model_data(metadata).train)
        except DataError as error:
            # The message says what is missing, then how to fix it when training: keep the first.
            self._unavailable = str(error).split("; ")[0]
        except Exception as error:  # an unreadable file must not stop the app: say why instead
            self._unavailable = f"the training jokes could not be indexed ({error})"
        if self._index is None and folder is not None:
            self._index = self._shipped_index(Path(folder))
        self._built.set()
        if self._index is None:
            line = self.check("").note
        else:
            done = "indexed" if isinstance(self._index, JokeIndex) else "loaded (no text)"
            line = f"{len(self._index):,} training jokes {done} in"
            line += f" {time.perf_counter() - started:.1f} s"
        print(f"Punchline: {line}", flush=True)

    def _shipped_index(self, folder: Path) -> HashedJokeIndex | None:
        """The folder's text-free index, or None (and why, added to the reason already known)."""
        try:
            arrays = load_originality_index(folder)
            if arrays is not None:
                return HashedJokeIndex(arrays)
        except Exception as error:  # a damaged index must not stop the app either: say why
            self._unavailable += f", and the model folder's index cannot be used: {error}"
        return None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the index is built or known to be unavailable; False on timeout."""
        return self._built.wait(timeout)

    def check(self, text: str, clean: bool = False) -> Originality:
        """Is `text` new? Says so when the index is not built yet or cannot be built.

        In clean mode the joke shown is the nearest of the CLEAN_CANDIDATES nearest that clean
        mode would let through (data/clean_mode.py), or none: the page must not show a crude
        training joke under a clean one. The similarity and the verdict stay those of the
        nearest joke, shown or not: originality is about the nearest joke whatever it is.
        """
        if not self._built.is_set():
            return Originality.unknown("Originality check: still indexing the training jokes.")
        if self._index is None:
            return Originality.unknown(f"Originality check unavailable: {self._unavailable}.")
        if not text.strip():
            return Originality.unknown("Originality check: the joke is empty.")
        neighbours = self._index.neighbours([text], CLEAN_CANDIDATES if clean else 1)[0]
        found = judge(neighbours[0])
        if not found.similarity:  # no word in common with any training joke: none to show
            return found
        if found.joke is None:  # the folder's index, which holds no text
            return dataclasses.replace(found, note=TEXT_ABSENT)
        if clean:
            shown = _nearest_clean(neighbours)
            return dataclasses.replace(found, joke=shown, note=None if shown else NONE_CLEAN)
        return found


def _nearest_clean(neighbours: list[Nearest]) -> str | None:
    """The first of the jokes that share a word with the text that clean mode lets through.

    One at a time, nearest first: the nearest is usually clean, and classifying is not free.
    """
    for nearest in neighbours:
        if nearest.joke and nearest.similarity > 0 and not is_unfit([nearest.joke])[0]:
            return nearest.joke
    return None
