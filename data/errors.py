"""The one exception type the data pipeline raises for bad input."""


class DataError(Exception):
    """A problem with the user's data or options, stated in one line that also names the fix.

    The training script prints the message instead of a traceback, so the message must make
    sense on its own: which file or option is wrong, and what to do about it.
    """
