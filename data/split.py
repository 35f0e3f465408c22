"""Split jokes into training and validation sets by a hash of each joke's text.

A joke's side depends on nothing but its own text, so the split is the same on every run and
machine, and adding a new source never moves an existing joke across. The hash is taken of the
de-duplication key, so near-identical variants of a joke (case, punctuation) land on the same
side and cannot leak from training into validation.
"""

import hashlib

from data.cleaning import dedupe_key
from data.errors import DataError

DEFAULT_VAL_FRACTION = 0.05
HASH_BYTES = 8
HASH_RANGE = 2 ** (8 * HASH_BYTES)


def split_train_val(
    jokes: list[str], val_fraction: float = DEFAULT_VAL_FRACTION
) -> tuple[list[str], list[str]]:
    """(train, val): each joke goes to validation when its hash falls in the first val_fraction.

    So that both sides exist even for a handful of jokes, an empty side receives the one joke
    whose hash lies closest to it. Only tiny corpora need this, and for them a joke's side can
    change as jokes are added.
    """
    if not 0 < val_fraction < 1:
        raise DataError(
            f"validation fraction {val_fraction} is not between 0 and 1; pass e.g. 0.05"
        )
    if len(jokes) < 2:
        raise DataError(
            f"{len(jokes)} joke(s) cannot be split into training and validation; add more"
        )
    positions = [_hash_position(joke) for joke in jokes]
    in_val = [position < val_fraction for position in positions]
    if not any(in_val):
        in_val[positions.index(min(positions))] = True
    if all(in_val):
        in_val[positions.index(max(positions))] = False
    train = [joke for joke, val in zip(jokes, in_val, strict=True) if not val]
    val = [joke for joke, val in zip(jokes, in_val, strict=True) if val]
    return train, val


def _hash_position(joke: str) -> float:
    """Where the joke's hash falls in [0, 1)."""
    digest = hashlib.blake2b(dedupe_key(joke).encode("utf-8"), digest_size=HASH_BYTES).digest()
    return int.from_bytes(digest, "big") / HASH_RANGE
