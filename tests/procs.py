"""Process helpers for the kill/orphan tests (Linux /proc; empty answers elsewhere)."""

from __future__ import annotations

from pathlib import Path


def _live(d: Path) -> bool:
    """A process directory of /proc that is neither gone nor a zombie."""
    try:
        return (d / "stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def live_pids(pids: list[int]) -> list[int]:
    """The ``pids`` still running."""
    return [pid for pid in pids if _live(Path(f"/proc/{pid}"))]


def processes_mentioning(text: str) -> list[int]:
    """Running processes whose command line contains ``text``."""
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if text in (d / "cmdline").read_bytes().decode(errors="replace") and _live(d):
                out.append(int(d.name))
        except OSError:
            continue
    return out
