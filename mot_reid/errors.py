"""The one exception type for mistakes a user can make (bad path, bad config, bad data).

The CLI turns it into one line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""
