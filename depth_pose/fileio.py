"""Atomic file writes, used by every stage that writes results (shards, models, predictions, reports).

A file is written to a temporary name in its own folder, flushed to disk and renamed over the target, so a
reader (or a resumed run) never sees a half-written file.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from depth_pose.errors import InputError

# A write that fails for these reasons is the machine's state, not a bug: one line naming the target.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class OutputWriteError(InputError):
    """An output that cannot be written (full disk, quota, read-only file system, permission): exit 2."""


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[str], object], suffix: str = ".tmp") -> Path:
    """Create ``path`` by calling ``write(tmp_path)`` on a temporary file beside it, fsync, then
    ``os.replace``.

    ``suffix`` is the temporary file's ending (give the real extension when the writer infers the format from
    it, e.g. ``cv2.imwrite``). On any error the temporary file is removed and the target is left untouched; a
    full disk, an exceeded quota, a read-only file system or a refused permission raise
    :class:`OutputWriteError` naming the target (one line from the commands, not a traceback).
    A target that is not a regular file (a FIFO, device or socket, a symlink to one, a directory) raises
    :class:`OutputPathError` before anything is written: a rename would silently make it a regular file.
    """
    path = Path(path)
    refuse_non_regular(path, "output")
    if path.is_dir():
        raise OutputPathError(f"output='{path}' is a directory, not a file; refusing to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as e:  # no file can be made there (a file in the way, a read-only or virtual folder, ...)
        raise OutputWriteError(f"cannot write '{path}': {e.strerror or e}") from e
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; use the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            raise OutputWriteError(f"cannot write '{path}': {e.strerror or e}") from e
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# ---- outputs never touch inputs -------------------------------------------------------------------------

PathLike = str | os.PathLike
Named = Mapping[str, PathLike] | Iterable[tuple[str, PathLike]]  # {name: path} or (name, path) pairs

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class OutputPathError(InputError):
    """An output path that would replace or write into an input, clash with another output, or replace
    something that is not a regular file (exit 2, before any work)."""


def _kind(path: PathLike) -> str | None:
    """What ``path`` is (following symlinks) when it is a FIFO, device or socket; None otherwise."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing, dangling link, unreadable parent: nothing there to destroy
        return None
    return _KINDS.get(stat.S_IFMT(mode))


def refuse_non_regular(path: PathLike, name: str = "output") -> None:
    """Raise :class:`OutputPathError` when ``path`` exists (following symlinks) as a FIFO, device or socket.

    A missing path, a dangling symlink, a regular file and a directory pass (callers that need a file or a
    folder say so themselves).
    """
    kind = _kind(path)
    if kind is not None:
        raise OutputPathError(f"{name}='{path}' is {kind}, not a regular file; refusing to write over it")


def refuse_non_directory(path: PathLike, name: str = "out_dir") -> None:
    """An output folder must be a directory or not exist yet (else :class:`OutputPathError`)."""
    if os.path.lexists(path) and not os.path.isdir(path):
        what = _kind(path) or ("a dangling symlink" if not os.path.exists(path) else "a file")
        raise OutputPathError(f"{name}='{path}' exists and is {what}, not a folder; give an output folder")


def real_path(path: PathLike) -> str:
    """Absolute path with every symlink of its existing part resolved (works for paths not created yet)."""
    return os.path.realpath(os.path.expanduser(os.fspath(path)))


def _inside(child: str, parent: str) -> bool:
    return child != parent and child.startswith(parent.rstrip(os.sep) + os.sep)


def _same(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts, case-insensitive file systems
    except OSError:
        return False


def _pairs(named: Named) -> list[tuple[str, PathLike]]:
    return list(named.items()) if isinstance(named, Mapping) else list(named)


def refuse_unreachable(path: PathLike, name: str = "output") -> None:
    """Raise :class:`OutputPathError` when ``path`` could not be created: its nearest existing ancestor is
    not a folder (a file in the way) or is not writable."""
    p = Path(real_path(path)).parent
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise OutputPathError(f"{name}='{path}' lies under '{p}', which is a file, not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise OutputPathError(f"{name}='{path}': the folder '{p}' is not writable")


def check_outputs(outputs: Named, inputs: Named = ()) -> None:
    """Refuse (:class:`OutputPathError`, one line naming both paths) before any work when an output

    * is an input, lies inside an input folder, or is a folder containing an input (resolved real paths, so
      symlinks and ``..`` cannot hide it; outputs need not exist yet);
    * exists as a FIFO, device or socket (or a symlink to one), or could not be created (a file where a
      folder of its path should be, a folder that is not writable);
    * is the same file as another output (one would overwrite the other).

    ``outputs`` and ``inputs`` are ``{name: path}`` or ``(name, path)`` pairs; the names are what the user
    typed (``out``, ``keypoints``, ``source``) so the message points at the argument to change.
    """
    outs = [(name, p, real_path(p)) for name, p in _pairs(outputs)]
    ins = [(name, p, real_path(p)) for name, p in _pairs(inputs)]
    for oname, o, ro in outs:
        refuse_non_regular(o, oname)
        refuse_unreachable(o, oname)
        for iname, i, ri in ins:
            if _same(ro, ri):
                how = "is the input"
            elif _inside(ro, ri):
                how = "lies inside the input"
            elif _inside(ri, ro):
                how = "contains the input"
            else:
                continue
            raise OutputPathError(
                f"{oname}='{o}' {how} {iname}='{i}'; outputs never touch inputs: write them elsewhere"
            )
    for k, (oname, o, ro) in enumerate(outs):
        for pname, p, rp in outs[:k]:
            if _same(ro, rp):
                raise OutputPathError(
                    f"{oname}='{o}' and {pname}='{p}' are the same file: one output would overwrite the "
                    f"other; give {oname} another name"
                )
