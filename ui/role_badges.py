"""The head-role badges of the layers x heads grid: each head's role, found on probe texts
(model/roles.py), with a thumbnail of its pattern and its score, every score in the tooltip,
and for every role a "try it" link that writes a joke putting the role to work."""

from __future__ import annotations

from urllib.parse import urlencode

import numpy as np

from model.roles import KINDS, REPEAT_KINDS, HeadRoles
from ui.rendering import _attr, colours, png_data_uri

# Each role's badge and what it means, for the tooltip (model/roles.py scores them).
ROLE_BADGES = {
    "previous-token": ("prev", "looks at the token just before"),
    "induction": ("induct", "finds an earlier copy of this token and looks at what followed it"),
    "duplicate-token": ("dup", "looks at earlier copies of the same token"),
    "self": ("self", "looks at its own token"),
    "diffuse": ("diffuse", "spreads its attention evenly"),
    None: ("mixed", "no one pattern above its bar"),
}
THUMBNAIL_PIXELS = 2  # each thumbnail cell drawn as 2 x 2 pixels (scaled further by CSS)
# "Try it": opening words that put a role to work (a link that writes a joke from them): for
# copying roles a repeated phrase or word, for the others a long enough line to see the
# pattern across.
TRY_PROMPTS = {
    "previous-token": "Why did the chicken cross the road?",
    "induction": "Knock knock. Who's there? Lettuce. Knock knock. Who's",
    "duplicate-token": "A pun, a pun, a pun walks into a bar",
    "self": "My dog, my cat and my goldfish walk into a bar",
    "diffuse": "I told my wife she was drawing her eyebrows too high. She looked",
}


def role_badges(roles: HeadRoles) -> list[list[str]]:
    """The badge of every head, [L][H] HTML: its role and that role's score (with a thumbnail
    of its pattern on the probe that scored it) and a "sink" mark with its score; every score
    in its tooltip. Built once a model."""
    layers, heads = roles.sinks.shape
    badges = []
    for layer in range(layers):
        row = []
        for head in range(heads):
            role = roles.roles[layer][head]
            badge, meaning = ROLE_BADGES[role]
            scores = ", ".join(f"{kind} {roles.scores[kind][layer, head]:.2f}" for kind in KINDS)
            probe = "repeated random tokens" if role in REPEAT_KINDS else "validation jokes"
            sink = roles.sinks[layer, head]
            tip = (
                f"{badge}: {meaning}"
                + (" (scored on " + probe + ")" if role else "")
                + (". Sink: parks most of its attention on the start token" if sink else "")
                + f". Scores: {scores}. The picture: its pattern on {probe}."
            )
            cells = np.kron(roles.thumbnails[layer, head], np.ones((THUMBNAIL_PIXELS,) * 2))
            image = png_data_uri(colours(cells))
            try_it = ""
            if role is not None:  # every role has its prompt
                prompt = TRY_PROMPTS[role]
                hint = f"Write a joke from: {prompt} (then click its tokens to see the head work)"
                try_it = (
                    f' <a class="pl-try" href="?{urlencode({"prompt": prompt})}" '
                    f'title="{_attr(hint)}">try it</a>'
                )
            # On the badge: the role's score (a mixed head has no role to score), and the sink's.
            label = badge if role is None else f"{badge} {roles.scores[role][layer, head]:.2f}"
            if sink:
                label += f" · sink {roles.scores['sink'][layer, head]:.2f}"
            row.append(
                f'<span class="pl-role pl-role-{badge}" title="{_attr(tip)}">'
                f'<img src="{image}" alt="">{label}{try_it}</span>'
            )
        badges.append(row)
    return badges
