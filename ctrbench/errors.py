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


class CorruptFile(DataError):
    """A file whose bytes no longer match the checksum recorded when it was written, or that cannot
    be read back at all. ``path``, ``expected`` and ``found`` say which file and what differed."""

    def __init__(self, message: str, path=None, expected: str | None = None, found: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.path, self.expected, self.found = path, expected, found
        self.reason = reason or message  # what is wrong, without the advice on what to do


class WriteFailed(UserError, OSError):
    """Writing a file failed (a full disk, a read-only or vanished folder, no permission). The
    target was left as it was; the message names it and the reason. Also an ``OSError`` (with the
    original ``errno``), so code that handles OS errors still sees one."""

    def __init__(self, message: str, errno_: int | None = None, path=None) -> None:
        OSError.__init__(self, message)
        self.errno = errno_
        self.path = path
