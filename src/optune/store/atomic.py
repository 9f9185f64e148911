"""Files that are complete or absent: temp file (or directory) beside the target, fsync, rename.

A kill leaves at most hidden temporaries (`clean_temporaries` removes them); a write the file system
refuses (disk full, read-only, no permission) raises `WriteError`, one line, with nothing half-written.
`create_dir` makes a whole directory appear at once, locked for its creator (optune.store.lock).
optune.store re-exports all of this; import it from there.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from optune.errors import UserError
from optune.store.lock import LOCK, DirLock, is_locked

MARKER = ".optune-run"
KEEP = (MARKER, LOCK)
"""Hidden names that are not temporaries."""
STAGING = ".new-"
"""A directory being created is filled under `.NAME.new-PID-XXXX` beside NAME (see `create_dir`)."""

# what a full, read-only or failing file system reports: the user can fix these, so they are one line
_FS_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


class WriteError(UserError):
    """The file system refused a write (disk full, read-only, no permission); nothing half-written is left."""


def _raise_refused(path: Path, err: BaseException, verb: str = "write") -> None:
    """Turn a file-system refusal into a one-line WriteError naming `path` (not a temp name inside it);
    anything else propagates as it is."""
    cause = err.__cause__ if isinstance(err, WriteError) else err
    if isinstance(cause, OSError) and cause.errno in _FS_ERRNOS:
        raise WriteError(f"cannot {verb} {path}: {os.strerror(cause.errno)}") from cause


def _umask() -> int:
    """The process umask (read without changing it where /proc allows; temp files ignore it, targets must not)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mkdtemp(prefix: str, folder: Path) -> Path:
    """A temp directory that gets the permissions a plain mkdir would (mkdtemp makes it 0700)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=folder))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[IO], object], text: bool = False, mode: int | None = None) -> None:
    """`write(f)` into a temp file in the same directory (binary, or UTF-8 text), fsync, then rename over the target.

    `mode` (e.g. 0o600) is set on the temp file before anything is written, so the content is never readable
    with looser permissions. A write the file system refuses raises `WriteError` and leaves no temp file.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.fchmod(fd, mode if mode is not None else 0o666 & ~_umask())  # mkstemp makes it 0600
        with os.fdopen(fd, "w", encoding="utf-8") if text else os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        _raise_refused(path, err)
        raise


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> None:
    atomic_write(path, lambda f: f.write(text), text=True, mode=mode)


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=1) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def atomic_save_dir(target: Path, save: Callable[[Path], object]) -> None:
    """Fill a temp directory with `save(tmp)`, fsync it, and rename it to target: never a partial directory."""
    target = Path(target)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _mkdtemp(f".{target.name}.", target.parent)
        save(tmp)
        _fsync_tree(tmp)
        _replace_dir(tmp, target)
    except BaseException as err:
        _raise_refused(target, err)
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(src: Path, target: Path) -> None:
    """Rename directory src to target. An existing target is first renamed aside and removed after, so a
    kill leaves the old directory, the new one, or (between the renames) neither plus hidden leftovers."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old)
    os.replace(src, target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_save_files(folder: Path, save: Callable[[Path], object]) -> None:
    """`save(tmp)` into a temp directory inside `folder`, fsync, then move each entry into `folder` (each
    move atomic). For a directory whose own rename cannot be the commit because its files sit beside
    others: the caller writes its commit file after this returns."""
    folder = Path(folder)
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder))
        save(tmp)
        _fsync_tree(tmp)
        for name in sorted(os.listdir(tmp)):
            if (tmp / name).is_dir():
                _replace_dir(tmp / name, folder / name)
            else:
                os.replace(tmp / name, folder / name)
        _fsync_dir(folder)
    except BaseException as err:
        _raise_refused(folder, err)
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    """Data and names of everything under root on disk before it is renamed into view."""
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


# the names this module's temporaries get: .NAME.XXXXXXXX, .NAME.old-XXXXXXXX, .export-XXXXXXXX (tempfile's
# 8 random characters); other hidden names (.gitignore, .ipynb_checkpoints) are the user's and stay
_TEMPORARY = re.compile(r"\.(.+\.(old-)?|export-)[a-z0-9_]{8}")


def clean_temporaries(root: Path) -> None:
    """Remove leftovers of writes interrupted by a kill (this module's hidden temp files and directories)."""
    for path in sorted(Path(root).rglob(".*")):
        if path.name in KEEP or not _TEMPORARY.fullmatch(path.name) or not path.exists():
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def check_new_dir(root: Path, what: str = "output_dir") -> None:
    """A directory can be created at root: nothing (or an empty directory) is there, and its parent is writable.

    Raises one line naming the problem; called before anything expensive so a bad path fails at once.
    """
    root = Path(root)
    if root.exists() or root.is_symlink():
        if not root.is_dir():
            raise UserError(f"{what} {root} is a file, not a directory")
        if any(root.iterdir()):
            if (root / MARKER).is_file():
                raise UserError(f"{what} {root} already holds an optune run; resume it with --resume {root} "
                                "or choose another output_dir")
            raise UserError(f"{what} {root} already exists and is not empty; choose another output_dir")
    parent = _existing_ancestor(root, what)
    try:
        # named like a creation's temp directory, so one left by a kill right here is cleaned up the same way
        os.rmdir(tempfile.mkdtemp(prefix=f".{root.name}{STAGING}{os.getpid()}-", dir=parent))
    except OSError as err:
        raise UserError(f"{what} {root}: cannot write to {parent}: {os.strerror(err.errno or 0)}") from None


def _existing_ancestor(root: Path, what: str) -> Path:
    """The nearest existing ancestor of root (root's parent when root exists), which must be a directory."""
    node = root.absolute().parent
    while not node.exists():
        node = node.parent
    if not node.is_dir():
        raise UserError(f"{what} {root}: {node} is a file, not a directory")
    return node


def create_dir(root: Path, fill: Callable[[Path], object], what: str = "output_dir") -> DirLock:
    """Create root with `fill(tmp)` all at once: it either does not exist or is complete. Returns its lock.

    The directory is filled under a locked temp name beside root and renamed into place (onto nothing or an
    empty directory). A creation killed half-way leaves only that hidden temp directory, which the next
    `create_dir` beside it removes once no live process holds it.
    """
    root = Path(root)
    if root.is_symlink():
        root = Path(os.path.realpath(root))  # replace the empty directory it points to, not the link
    check_new_dir(root, what)
    made = _make_parents(root.parent)
    _clean_stale_creations(root)
    tmp = lock = None
    try:
        tmp = _mkdtemp(f".{root.name}{STAGING}{os.getpid()}-", root.parent)
        lock = DirLock.acquire(tmp, what)
        fill(tmp)
        _fsync_tree(tmp)
        os.rename(tmp, root)
    except BaseException as err:
        if lock is not None:
            lock.release()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(made):
            _rmdir_if_empty(folder)
        if isinstance(err, OSError) and err.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise UserError(f"{what} {root} was created by another process meanwhile; choose another "
                            "output_dir") from None
        _raise_refused(root, err, "create")
        raise
    lock.moved(root)
    try:
        _fsync_dir(root.parent)
    except BaseException as err:  # root is complete now: it stays (resumable), unlocked
        lock.release()
        _raise_refused(root.parent, err)
        raise
    return lock


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p folder; returns the directories it made, outermost first (removed again if creation fails)."""
    missing = []
    node = folder.absolute()
    while not node.exists():
        missing.append(node)
        node = node.parent
    missing.reverse()
    for node in missing:
        try:
            node.mkdir()
        except FileExistsError:
            pass
        except OSError as err:
            _raise_refused(node, err)
            raise
    return missing


def _rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _clean_stale_creations(root: Path) -> None:
    """Remove temp directories of creations of root that were killed (their process is gone)."""
    for tmp in root.parent.glob(f".{root.name}{STAGING}*"):
        pid = tmp.name[len(root.name) + len(STAGING) + 1:].split("-", 1)[0]
        if not tmp.is_dir() or not pid.isdigit() or is_locked(tmp):
            continue
        if (tmp / LOCK).exists() or not _alive(int(pid)) or time.time() - tmp.stat().st_mtime > 3600:
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
