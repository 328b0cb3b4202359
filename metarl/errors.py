"""Errors a user can fix, and only those: the ``metarl`` command prints them as one line and exits with status 2.

Anything else that escapes a command is a bug and shows its traceback (exit status 1). Both classes subclass
the built-in error that Python code would expect (``ValueError``, ``FileNotFoundError``), so library users can
catch them either way.
"""

from __future__ import annotations


class UserError(ValueError):
    """A bad input the user can fix (a config value, an unknown id, a corrupt or mismatched run); the message
    says what was wrong and how to fix it."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named, or that a run needs, does not exist."""


class TrainingDiverged(UserError):
    """A training iteration produced a non-finite loss or parameter; the run stopped before saving it."""
