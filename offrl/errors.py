"""Errors users can act on.

Every error raised for bad input is an `OffrlInputError` whose message is one sentence naming
the file, field or flag and what was expected. The CLI prints it and exits with code 2.
"""


class OffrlInputError(ValueError):
    """Bad input from the user: a file, a field of a file, a config value or a flag."""


class DatasetError(OffrlInputError):
    """A dataset file or array is missing, malformed or inconsistent."""


class ConfigError(OffrlInputError):
    """A configuration value or command-line flag is not acceptable."""
