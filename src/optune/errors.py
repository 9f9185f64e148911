"""The one exception type for user mistakes.

A `UserError` is caught by the CLI and printed as a single line (no traceback) with a non-zero exit.
Raise it for anything the user can fix: bad config values, missing files, malformed records.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line by the CLI."""
