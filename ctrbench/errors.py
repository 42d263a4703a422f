"""Errors a user can cause (a bad config value, a missing file). The CLI prints them as one line,
without a traceback, and exits with status 2."""


class UserError(Exception):
    """A problem with the user's input; the message names the value and what was expected."""


class ConfigError(UserError):
    """A config value that is missing, of the wrong type or out of range."""


class DataError(UserError):
    """A missing, malformed or stale data file or processed dataset."""


class TrainingDiverged(UserError):
    """The loss or a gradient became NaN or infinite."""
