"""Errors a user can cause and fix: the command line prints them without a traceback.

Every one is a :class:`ValueError` (a wrong type also a :class:`TypeError`), so code that catches the builtin
exceptions catches these too. When the error is about one argument, ``parameter`` names it as the Python function
calls it (``seed``, ``held_out``); the command line shows the matching flag instead (``--seed``, ``--held-out``).
The checks that raise them live in :mod:`dmf2mel.validation`.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user: an argument, a file, a folder. The message says what and why.

    Parameters
    ----------
    message : str
    parameter : str, optional
        The Python parameter at fault, when there is one; the message then starts with its name.
    """

    def __init__(self, message: str, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter


class UserTypeError(UserError, TypeError):
    """An argument of the wrong type (e.g. a string where a number is expected)."""


class DataError(UserError):
    """A data file has the wrong shape, dtype, values or name. The message names the file."""


class TrainingFailed(UserError, RuntimeError):
    """A training run failed or was interrupted; the message says which run, when and why, in one sentence."""
