"""Errors in what the user asked for (a path, a set, a config value), as opposed to bugs, and the exit codes.

The command-line entry points (:mod:`depth_pose.cli.shell`) print these as one ``dp-<tool>: error: ...`` line
and exit with :data:`EXIT_USAGE`; anything else keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator

EXIT_OK = 0  # everything done
EXIT_USAGE = 2  # unusable input: arguments, files, config
EXIT_PARTIAL = 3  # done, but some inputs were left out (listed on stderr)
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C (128 + SIGINT, the shells' convention); what was finished is kept


class InputError(ValueError):
    """An argument, file or dataset the user gave cannot be used; the message says which and why."""


class SetTooLargeError(InputError, MemoryError):
    """A dataset would not fit in the training device's memory (raised before anything is copied)."""


def chain(err: BaseException) -> Iterator[BaseException]:
    """``err``, then what it was raised from or during (``__cause__``, else ``__context__``), each once: where
    a wrapper (Hydra's ``instantiate``, a re-raise) keeps the user's mistake."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__
