"""What the page keeps per visitor, and how its events queue: shared by ui/events.py and
ui/explain_events.py."""

from __future__ import annotations

from ui.endpoints import WRITING

# Writing (a joke, a branch, a rewrite) goes one at a time: XLA already spreads a single
# generation over both CPU cores. Clicks have their own, larger limit and never wait
# behind a joke being written.
VIEWING = {"concurrency_limit": 4, "concurrency_id": "views", "api_visibility": "private"}
VIEWING |= {"show_progress": "hidden", "trigger_mode": "always_last"}
PAGE_WRITING = {**WRITING, "api_visibility": "private", "show_progress": "hidden"}
PICK_WRITTEN = "Select a token the model wrote (orange) to see {what}."


Heads = list[tuple[int, int]]
