"""Checks of user input at the boundary, in the manner of MNE-Python's ``_validate_type`` and ``_check_option``.

Each check returns the value it accepted and otherwise raises an error of :mod:`dmf2mel.errors` -- a
:class:`ValueError` (:class:`~dmf2mel.errors.UserError`) or, for a wrong type, also a :class:`TypeError`
(:class:`~dmf2mel.errors.UserTypeError`) -- whose message starts with the parameter's Python name, lists what is
allowed and shows what was received::

    >>> check_option("profile", "fast", ("quick", "paper"))
    Traceback (most recent call last):
    dmf2mel.errors.UserError: profile must be one of 'quick', 'paper'; got 'fast'

The error's ``parameter`` attribute holds that name, so the command line can speak of its own flags instead
(``--profile must be one of ...``) while a notebook user reads the argument they passed.
"""

from __future__ import annotations

import errno
import math
import operator
import tempfile
from pathlib import Path
from typing import Any, Collection

import torch

from dmf2mel.errors import DataError, UserError, UserTypeError


def check_type(value: Any, types: type | tuple[type, ...], name: str, expected: str | None = None) -> Any:
    """``value`` if it is an instance of ``types``, else :class:`~dmf2mel.errors.UserTypeError`.

    ``expected`` describes the allowed types in words (default: their names).
    """
    if isinstance(value, types):
        return value
    if expected is None:
        names = [t.__name__ for t in (types if isinstance(types, tuple) else (types,))]
        expected = " or ".join(names)
    raise UserTypeError(f"{name} must be {expected}; got {type(value).__name__} {value!r}", parameter=name)


def check_option(name: str, value: Any, allowed: Collection) -> Any:
    """``value`` if it is one of ``allowed``, else :class:`~dmf2mel.errors.UserError` listing them."""
    if value in allowed:
        return value
    choices = ", ".join(repr(option) for option in allowed)
    raise UserError(f"{name} must be one of {choices}; got {value!r}", parameter=name)


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an ``int`` (numpy integers too, never a bool or a float), at least ``minimum``."""
    if isinstance(value, bool):
        raise UserTypeError(f"{name} must be an integer; got bool {value!r}", parameter=name)
    try:
        number = operator.index(value)
    except TypeError:
        raise UserTypeError(
            f"{name} must be an integer; got {type(value).__name__} {value!r}", parameter=name
        ) from None
    if minimum is not None and number < minimum:
        raise UserError(f"{name} must be an integer >= {minimum}; got {number}", parameter=name)
    return number


def check_positive_number(name: str, value: Any) -> float:
    """``value`` as a ``float`` if it is a real number, finite and above 0 (a learning rate, a duration)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise UserTypeError(f"{name} must be a number > 0; got {type(value).__name__} {value!r}", parameter=name)
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise UserError(f"{name} must be a finite number > 0; got {number!r}", parameter=name)
    return number


def check_divides(name: str, value: int, other_name: str, other: int, owner: str) -> None:
    """Raise :class:`~dmf2mel.errors.UserError` unless ``value`` divides ``other`` (e.g. heads and model width)."""
    if other % value:
        raise UserError(f"{owner}: {name}={value} must divide {other_name}={other}", parameter=name)


def check_folder(name: str, path: Any) -> Path:
    """``path`` as a :class:`~pathlib.Path` unless it exists and is not a folder (an output folder to create or fill)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{name}: {path} exists and is not a folder", parameter=name)
    return path


def check_writable(name: str, folder: Any) -> Path:
    """``folder`` as a :class:`~pathlib.Path` if a file can be created in it (or, when it does not exist yet, in the
    nearest folder above it that does), else :class:`~dmf2mel.errors.UserError`.

    Called before a command computes anything, so a read-only output folder is reported at once, not after an hour.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{name}: {existing} exists and is not a folder", parameter=name)
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".dmf2mel-write-test-"):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason += ": the folder is read-only for this user"
        raise UserError(
            f"{name}: cannot write to {folder} ({reason} in {existing}); choose a folder you can write to",
            parameter=name,
        ) from None
    return folder


def check_device(name: str, device: Any) -> str:
    """``device`` if it is ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` with that GPU present, else a
    :class:`~dmf2mel.errors.UserError` saying what is allowed and what is available here."""
    check_type(device, str, name, "a string such as 'cpu' or 'cuda'")
    kind, _, number = device.partition(":")
    if (
        kind not in ("cpu", "cuda")
        or (kind == "cpu" and number)
        or (kind == "cuda" and number and not number.isdigit())
    ):
        raise UserError(f"{name} must be 'cpu', 'cuda' or 'cuda:N' (lower case); got {device!r}", parameter=name)
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise UserError(f"{name} {device!r}: no CUDA GPU is available here (use 'cpu')", parameter=name)
        if number and int(number) >= count:
            raise UserError(f"{name} {device!r}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}", name)
    return device


def check_eeg(eeg: Any, n_chans: int, owner: str) -> torch.Tensor:
    """``eeg`` if it is a floating-point ``(batch, time, n_chans)`` tensor with at least one time step.

    Raises :class:`~dmf2mel.errors.DataError` naming the model (``owner``), the expected shape and the one found.
    """
    expected = f"(batch, time, {n_chans})"
    if not isinstance(eeg, torch.Tensor):
        raise DataError(f"{owner}: eeg must be a torch.Tensor of shape {expected}, got {type(eeg).__name__}", "eeg")
    if eeg.ndim != 3 or eeg.shape[-1] != n_chans:
        raise DataError(f"{owner}: eeg must have shape {expected}, got {tuple(eeg.shape)}", "eeg")
    if not eeg.is_floating_point():
        raise DataError(f"{owner}: eeg must be a floating-point tensor, got dtype {eeg.dtype}", "eeg")
    if eeg.shape[1] < 1:
        raise DataError(f"{owner}: eeg must have at least one time step, got shape {tuple(eeg.shape)}", "eeg")
    return eeg


__all__ = [
    "check_device",
    "check_divides",
    "check_eeg",
    "check_folder",
    "check_int",
    "check_option",
    "check_positive_number",
    "check_type",
    "check_writable",
]
