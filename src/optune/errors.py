"""The exception types for what a user can fix, and the command's exit status for each.

A `UserError` is caught by the CLI and printed as a single line (no traceback) with exit status 2 (a usage
error). Raise it for anything the user can fix: bad config values, missing files, malformed records.
A `RunFailed` is a run that stopped midway (a server failed after its retries, the disk refused a write):
its message names the cause and the exact command that resumes it, and the CLI exits with 3.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line by the CLI."""

    exit_code = 2
    """The CLI's exit status for it: 2, a usage error."""


class RunFailed(UserError):
    """A run that stopped midway; every file it wrote is complete, so it resumes once the cause is fixed."""

    exit_code = 3
    """The CLI's exit status for it: 3, failed midway and resumable."""


class Damaged(UserError):
    """A file of a finished step is unreadable: resuming cannot redo it in place, so this is exit 2, not the
    resumable exit 3 of `RunFailed`; its message names the file and what to remove."""
