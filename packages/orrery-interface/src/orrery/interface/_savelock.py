"""Private: one saver at a time per artifact path, and the debris of killed saves.

A save holds an exclusive, non-blocking lock on a hidden sibling file
``.<name>.orrery-lock`` for its whole duration. The operating system releases
the lock when the process dies (even by ``kill -9``), so a lock never outlives
its saver; the file itself is removed by the saver that holds it. While holding
the lock, a saver knows that every temporary or backup directory of the same
target was left by a save that died, and removes it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from .errors import ArtifactError

if sys.platform == "win32":  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


BACKUP_TAG = ".orrery-old-"
TEMP_TAG = ".orrery-tmp-"
LOCK_TAG = ".orrery-lock"


def temp_prefix(target: Path) -> str:
    """Prefix of the temporary directories of a save to ``target``."""
    return f".{target.name}{TEMP_TAG}"


def backup_prefix(target: Path) -> str:
    """Prefix of the backup directories of a save to ``target``."""
    return f".{target.name}{BACKUP_TAG}"


def debris(target: Path) -> list[Path]:
    """Temporary and backup directories of ``target`` (sorted by name)."""
    parent = target.parent
    if not parent.is_dir():
        return []
    prefixes = (temp_prefix(target), backup_prefix(target))
    return sorted(parent / n for n in os.listdir(parent) if n.startswith(prefixes))


@contextlib.contextmanager
def save_lock(target: Path) -> Iterator[None]:
    """Hold the save lock of ``target``; remove stale debris once it is held.

    Raises:
        ArtifactError: when another save to the same path holds the lock.
    """
    lock = target.parent / f".{target.name}{LOCK_TAG}"
    for _ in range(100):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise ArtifactError(
                f"path: another save to {str(target)!r} is in progress; this save was not "
                "written (the other one will be complete when it returns)"
            )
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file after we opened it: retry
    else:  # pragma: no cover - would need 100 lost races in a row
        raise ArtifactError(f"path: could not lock {str(target)!r} for saving")
    try:
        for stale in debris(target):
            shutil.rmtree(stale, ignore_errors=True)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)
