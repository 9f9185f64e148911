"""One process per directory: an exclusive `flock` on DIR/.optune-lock, held for the life of a run.

The kernel drops the lock when its holder exits or is killed, so a crashed run never leaves a stale lock;
the file itself (it holds the holder's PID, for the error message) is removed on a clean exit and is
harmless when left by a kill. Only the writing process locks: under `accelerate launch` that is the main
process, the others only read the directory.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from optune.errors import UserError

LOCK = ".optune-lock"

_held: dict[int, DirLock] = {}
"""Locks this process holds, by id, so a command can drop all of them however it ends (`release_all`)."""


class DirLock:
    """An exclusive lock on a directory; `release()` (or process exit) gives it up."""

    def __init__(self, root: Path, fd: int):
        self.root = Path(root)
        self.fd: int | None = fd

    @classmethod
    def acquire(cls, root: Path, what: str = "directory") -> DirLock:
        """Lock `root` or raise a one-line UserError naming the holder's PID."""
        root = Path(root)
        try:
            fd = _locked_fd(root / LOCK)
        except OSError as err:  # e.g. a read-only file system
            raise UserError(f"cannot lock {what} {root}: {os.strerror(err.errno or 0)}") from err
        if fd is None:
            raise UserError(f"{what} {root} is in use by another optune process (PID {holder(root)}); "
                            "wait for it to finish or stop it")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        lock = cls(root, fd)
        _held[id(lock)] = lock
        return lock

    def moved(self, root: Path) -> None:
        """The directory was renamed (a run built under a temp name); the lock file went with it."""
        self.root = Path(root)

    def release(self) -> None:
        if self.fd is None:
            return
        # unlink while still holding it: a process that opened the old file before this point finds, once it
        # gets the lock, that the path no longer names its file and starts over (see _locked_fd)
        try:
            os.unlink(self.root / LOCK)
        except OSError:
            pass  # the directory is gone (a run that failed to start) or not writable any more
        os.close(self.fd)
        self.fd = None
        _held.pop(id(self), None)


def _locked_fd(path: Path) -> int | None:
    """An fd of `path` holding its exclusive lock, or None if another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)  # locked a file its holder unlinked on release: lock the one now at the path


def holder(root: Path) -> str:
    """The PID written in root's lock file ("unknown" while its holder has not written it yet)."""
    try:
        pid = (Path(root) / LOCK).read_text().strip()
    except OSError:
        pid = ""
    return pid or "unknown"


def is_locked(root: Path) -> bool:
    """Whether another process holds root's lock now (a lock file left by a killed process is not held)."""
    path = Path(root) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def release_all() -> None:
    """Drop every lock this process holds (the CLI calls it when a command ends, however it ends)."""
    for lock in list(_held.values()):
        lock.release()
