"""What one request may ask for, and how many may wait: the caps of a public demo.

Kept apart from the code that enforces them so that benchmarks and tests read the same
numbers without loading the model or Gradio.
"""

MAX_PROMPT_CHARS = 1_000
MAX_SEED = 2**31 - 1
RANDOM_SEEDS = 1_000_000  # random seeds stay below this, so they are easy to retype
# Clean mode writes a flagged joke again with the next seed, this many jokes in all. With the
# shipped model at the default settings 2.4% of jokes are flagged and 1,000 requests never
# needed more than three (benchmarks/clean_rate.py), so five tries find a clean joke all but
# always, and a request never costs more than five jokes' time.
CLEAN_TRIES = 5
# Requests that may wait for the model. One joke takes well under a second, so the last of
# them waits some seconds; beyond that a visitor is told at once that the app is busy.
QUEUE_SIZE = 32
