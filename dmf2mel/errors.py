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


class NonFinitePrediction(UserError):
    """A model predicted NaN or infinite values where a score was asked for: a failure of the model, never left out.

    Attributes ``subject``, ``stimulus`` (the recording), ``n_values`` (non-finite values) and ``rows`` (the first and
    last row holding one) say where; ``model`` is filled in by callers that know which model or run predicted it.
    """

    def __init__(self, subject: str, stimulus: str, n_values: int, rows: tuple[int, int], n_rows: int, model=None):
        self.subject, self.stimulus, self.n_values, self.rows, self.n_rows = subject, stimulus, n_values, rows, n_rows
        self.model = model
        where = f"{model}, " if model else ""
        super().__init__(
            f"predicted mel ({where}{subject} / {stimulus}) has {n_values} NaN or infinite values in rows "
            f"{rows[0]}-{rows[1]} of {n_rows}: the model failed on that recording. It is not scored without them; "
            "score its windows as failures (r = 0) with non_finite='fail' (evaluate --non-finite fail), or find why "
            "the model fails there"
        )

    def for_model(self, model: str) -> "NonFinitePrediction":
        """The same error naming ``model`` (e.g. the run folder)."""
        return NonFinitePrediction(self.subject, self.stimulus, self.n_values, self.rows, self.n_rows, model)
