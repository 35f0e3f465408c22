"""How a branch differs inside from the joke it forked from: which heads attended differently.

A branch (model/generate.py, `forced`) shares its joke's tokens up to the fork, then takes
another token there. For the first positions from the fork on, each head's attention row in
the two versions is compared by total variation distance:

    shift = 1/2 * sum_k |a_k - b_k|        over the keys k both rows can see

0 means the head spread its attention exactly alike; 1 means the two rows share no weight.
Averaged over those positions, it gives an L x H map of which heads reacted to the change.
Attention that moved says where the head looked, not what it carried there.
"""

from __future__ import annotations

import numpy as np

SHIFT_STEPS = 3  # positions from the fork on that are compared


def fork_position(parent_ids: list[int], branch_ids: list[int]) -> int:
    """The first position where two token sequences differ (the shorter's length if none)."""
    for position, (a, b) in enumerate(zip(parent_ids, branch_ids, strict=False)):
        if a != b:
            return position
    return min(len(parent_ids), len(branch_ids))


def attention_shift(
    parent: np.ndarray, branch: np.ndarray, fork: int, steps: int = SHIFT_STEPS
) -> np.ndarray:
    """(L, H): each head's mean total variation distance between the two versions' attention
    rows at positions fork .. fork + steps - 1 (those both versions reach).

    parent, branch: (L, H, T, T) attention of each version (rows zero beyond the diagonal).
    """
    last = min(parent.shape[-1], branch.shape[-1], fork + steps)
    if last <= fork:
        return np.zeros(parent.shape[:2])
    rows = slice(fork, last)
    keys = slice(0, last)  # row q sees keys 0..q; both rows are zero beyond it
    difference = np.abs(parent[:, :, rows, keys] - branch[:, :, rows, keys])  # (L, H, n, keys)
    return 0.5 * difference.sum(axis=-1).mean(axis=-1)
