"""Atomic file writes, used by every stage that writes results (shards, models, predictions, reports).

A file is written to a temporary name in its own folder, flushed to disk and renamed over the target, so a
reader (or a resumed run) never sees a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[str], object], suffix: str = ".tmp") -> Path:
    """Create ``path`` by calling ``write(tmp_path)`` on a temporary file beside it, fsync, then
    ``os.replace``.

    ``suffix`` is the temporary file's ending (give the real extension when the writer infers the format from
    it, e.g. ``cv2.imwrite``). On any error the temporary file is removed and the target is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; use the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
