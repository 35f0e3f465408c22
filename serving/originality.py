"""Is a finished joke new? The nearest training joke, found by TF-IDF (data/originality.py)."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Any

from data.corpus import model_data
from data.errors import DataError
from data.originality import JokeIndex, Nearest

NEW, CLOSE = "new", "close to a known joke"  # the originality verdicts


@dataclass(frozen=True)
class Originality:
    """A finished joke against the training jokes: what the page and the API report."""

    verdict: str | None  # NEW or CLOSE; None when there was nothing to compare with
    similarity: float | None  # cosine similarity of TF-IDF vectors, 0 to 1
    joke: str | None  # the nearest training joke
    note: str | None  # why there is no verdict

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

    The index needs the training files, read again from the paths in the model's metadata, and
    some seconds (a minute on a busy 2-core machine for 70,000 jokes): it is built in a
    background thread, so the app serves jokes meanwhile. Where the files are not on the machine
    (a Hugging Face Space has only the model folder) the check says it is unavailable and why.
    Only one training joke per request ever leaves the server: the nearest one.
    """

    def __init__(self, metadata: dict[str, Any]):
        self._index: JokeIndex | None = None
        self._unavailable = ""
        self._built = threading.Event()
        thread = threading.Thread(target=self._build, args=(metadata,), daemon=True)
        thread.start()

    def _build(self, metadata: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            self._index = JokeIndex(model_data(metadata).train)
        except DataError as error:
            # The message says what is missing, then how to fix it when training: keep the first.
            self._unavailable = str(error).split("; ")[0]
        except Exception as error:  # an unreadable file must not stop the app: say why instead
            self._unavailable = f"the training jokes could not be indexed ({error})"
        finally:
            self._built.set()
        if self._index is None:
            line = self.check("").note
        else:
            line = f"{len(self._index):,} training jokes indexed in"
            line += f" {time.perf_counter() - started:.1f} s"
        print(f"Punchline: {line}", flush=True)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the index is built or known to be unavailable; False on timeout."""
        return self._built.wait(timeout)

    def check(self, text: str) -> Originality:
        """Is `text` new? Says so when the index is not built yet or cannot be built."""
        if not self._built.is_set():
            return Originality.unknown("Originality check: still indexing the training jokes.")
        if self._index is None:
            return Originality.unknown(f"Originality check unavailable: {self._unavailable}.")
        if not text.strip():
            return Originality.unknown("Originality check: the joke is empty.")
        return judge(self._index.nearest([text])[0])
