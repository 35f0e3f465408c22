"""The one error the service raises for a request it will not serve.

The message is one line that names the problem and the fix; `title` is a short heading for
it. The page turns a RequestError into Gradio's error in one place (ui/gradio_internals.py),
so the service itself never needs to know how it is shown.
"""

from __future__ import annotations


class RequestError(ValueError):
    """A request that cannot be served as sent: bad values, flagged words, no clean joke."""

    def __init__(self, message: str, title: str = "Invalid input"):
        super().__init__(message)
        self.message = message
        self.title = title
