"""Errors the CLI turns into one clear line on stderr and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: say which field or flag, what was expected, what to do."""
