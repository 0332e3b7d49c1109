"""Errors a user can cause and fix: the command line prints them without a traceback."""


class UserError(Exception):
    """Bad input from the user: an argument, a file, a folder. The message says what and why."""


class DataError(UserError, ValueError):
    """A data file has the wrong shape, dtype, values or name. The message names the file."""


class TrainingFailed(UserError, RuntimeError):
    """A training run failed or was interrupted; the message says which run, when and why, in one sentence."""
