"""The errors grporec raises on purpose, apart from the ones it does not expect.

`commandline.run` prints a `UserError` (bad configuration, data, model directory, setting; a training run
that cannot go on) and any `OSError` (a missing, unreadable or full file) as one line and exits 1;
`UsageError` exits 2. Anything else that escapes (a `ValueError` from inside torch, an
`IndexError` in grporec) is a bug: its traceback is printed with a request to report it. Every
module raises these instead of bare `ValueError` / `RuntimeError`, so the two kinds never mix.
"""
from __future__ import annotations


class UserError(ValueError):
    """Something the user can fix; the message names the key, file or row, and what to change."""


class SettingsError(UserError):
    """A configuration value the run cannot use (a count below its minimum, an unknown name, ...)."""


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (e.g. too many non-finite steps); the message says what to change."""


class UsageError(Exception):
    """A command used wrongly (exit status 2)."""
