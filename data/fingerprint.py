"""Content hashes that name cache entries, so that changed inputs never reuse a stale cache."""

import hashlib
from collections.abc import Iterable

DIGEST_BYTES = 16
LENGTH_BYTES = 8


def fingerprint(header: str, texts: Iterable[str]) -> str:
    """A hex digest of `header` and every text, in order.

    Each text is prefixed with its length, so that no two different lists of texts hash the
    same bytes (["ab", "c"] and ["a", "bc"] differ).
    """
    digest = hashlib.blake2b(header.encode("utf-8"), digest_size=DIGEST_BYTES)
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(LENGTH_BYTES, "little"))
        digest.update(encoded)
    return digest.hexdigest()
