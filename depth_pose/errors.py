"""Errors in what the user asked for (a path, a set, a config value), as opposed to bugs.

The command-line entry points print these as one ``dp-<tool>: error: ...`` line and exit with code 2; anything
else keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """An argument, file or dataset the user gave cannot be used; the message says which and why."""


class SetTooLargeError(InputError, MemoryError):
    """A dataset would not fit in the training device's memory (raised before anything is copied)."""
