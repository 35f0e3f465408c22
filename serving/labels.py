"""Token labels: how a token is written on the page and in the API's display fields.

The tokenizer's pieces may be a lone space, a newline or a control character, which would be
invisible or break the layout; `visible_whitespace` gives each one a visible symbol.
"""

from __future__ import annotations

import unicodedata

START_LABEL = "⟨start⟩"  # the end-of-joke token where it opens a joke
END_LABEL = "⟨end⟩"  # the same token among the candidates: the model wanted to stop


def visible_whitespace(text: str) -> str:
    """Spaces as ·, newlines as ↵, tabs as ⇥, other control characters as ␀-style symbols."""
    out = []
    for char in text:
        if char == " ":
            out.append("·")
        elif char == "\n":
            out.append("↵")
        elif char == "\t":
            out.append("⇥")
        elif ord(char) < 32:
            out.append(chr(0x2400 + ord(char)))  # the Unicode "control pictures" block
        elif ord(char) == 127:
            out.append("␡")
        elif unicodedata.category(char) == "Cc":  # C1 controls have no picture: show the code
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def printable(text: str) -> str:
    """Joke text for display: keep newlines and tabs, make other control characters visible."""
    return "".join(visible_whitespace(c) if c not in "\n\t " else c for c in text)
