"""One process per directory: a second holder fails at once naming the first one's PID; a kill frees the lock."""

import os
import signal
import subprocess
import sys

import pytest

from optune.errors import UserError
from optune.store.lock import LOCK, DirLock, holder, is_locked, release_all
from tests.conftest import REPO

# a second process that only imports optune.store.lock (no torch): it locks, says so, and waits to be killed
HOLD = ("import sys, time; from optune.store.lock import DirLock; DirLock.acquire(sys.argv[1]); "
        "print('held', flush=True); time.sleep(600)")
TRY = "import sys; from optune.store.lock import DirLock; DirLock.acquire(sys.argv[1]); print('got it')"


def python(code: str, *args, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_second_process_fails_naming_the_holder_and_a_kill_frees_it(tmp_path):
    holder_proc = python(HOLD, str(tmp_path))
    try:
        assert holder_proc.stdout.readline().strip() == "held"
        assert is_locked(tmp_path) and holder(tmp_path) == str(holder_proc.pid)
        with pytest.raises(UserError, match=f"in use by another optune process \\(PID {holder_proc.pid}\\)"):
            DirLock.acquire(tmp_path)
        other = python(TRY, str(tmp_path))
        _, err = other.communicate(timeout=60)
        assert other.returncode == 1 and f"PID {holder_proc.pid}" in err
    finally:
        holder_proc.send_signal(signal.SIGKILL)
        holder_proc.wait()
    assert (tmp_path / LOCK).exists() and not is_locked(tmp_path)  # the kernel dropped it with the process
    lock = DirLock.acquire(tmp_path)
    assert holder(tmp_path) == str(os.getpid())
    lock.release()
    assert not (tmp_path / LOCK).exists()


def test_release_all_drops_every_lock_and_a_released_lock_can_be_retaken(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    DirLock.acquire(a)
    DirLock.acquire(b)
    with pytest.raises(UserError):  # even this process cannot take it twice
        DirLock.acquire(a)
    release_all()
    assert not is_locked(a) and not is_locked(b)
    DirLock.acquire(a).release()


def test_a_file_unlinked_by_a_releasing_holder_is_not_trusted(tmp_path):
    """A process that opened the lock file just before its holder released (and unlinked) it must not run
    beside a third process that creates a fresh lock file: it re-checks the path after locking."""
    first = DirLock.acquire(tmp_path)
    stale = os.open(tmp_path / LOCK, os.O_RDWR)
    first.release()
    third = DirLock.acquire(tmp_path)  # a fresh file at the path
    import fcntl

    fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the old inode is free, but it is not the lock any more
    assert os.fstat(stale).st_ino != os.stat(tmp_path / LOCK).st_ino
    with pytest.raises(UserError):
        DirLock.acquire(tmp_path)
    os.close(stale)
    third.release()


def test_a_directory_that_cannot_hold_a_lock_file_is_one_line():
    from pathlib import Path

    with pytest.raises(UserError, match="cannot lock run directory /sys/kernel: "):  # not writable even by root
        DirLock.acquire(Path("/sys/kernel"), "run directory")
