"""The folder a user names with --out (optune export, optune report): written only where that is safe.

A command writes into --out DIR only if DIR is new, empty, or written before by the same command (it leaves
`OUT_MARKER` naming itself); a DIR that is a file, or that holds files of the user's, is refused with one line
before anything is written, unless --overwrite. A user's own preferences.jsonl or report.md is never replaced
without being asked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from optune.errors import UserError
from optune.store.atomic import WriteError, _existing_ancestor, atomic_write_text

OUT_MARKER = ".optune-out"


def check_out_dir(out: Path, command: str, overwrite: bool = False) -> None:
    """Raise one line unless `command` may write into `out` (see the module docstring)."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise UserError(f"--out {out} is a file, not a folder; choose another --out")
        names = sorted(p.name for p in out.iterdir() if p.name != OUT_MARKER)
        if names and not overwrite and written_by(out) != command:
            more = f" and {len(names) - 1} more" if len(names) > 1 else ""
            raise UserError(f"--out {out} already holds files {command} did not write ({names[0]}{more}); choose a "
                            "new or empty folder, or pass --overwrite to write into it anyway")
    else:
        _existing_ancestor(out, "--out")


def check_out_file(out: Path, what: str = "--out") -> None:
    """A result file can be written at `out` (not onto a folder, not under a file): checked before the work."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{what} {out} is a folder; name the result file to write (e.g. {out / 'result.json'})")
    _existing_ancestor(out, what)


def written_by(out: Path) -> str | None:
    """The command that marked `out` as its own, if any."""
    try:
        return (Path(out) / OUT_MARKER).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


@contextmanager
def out_dir(out: Path, command: str, overwrite: bool = False) -> Iterator[Path]:
    """`check_out_dir`, then the body writes into `out`; whatever it wrote marks `out` as the command's, even if
    it failed midway (so that running it again needs no --overwrite)."""
    out = Path(out)
    check_out_dir(out, command, overwrite)
    try:
        yield out
    except BaseException:
        try:
            _mark(out, command)
        except WriteError:  # a full disk is most likely the error being raised already
            pass
        raise
    _mark(out, command)


def _mark(out: Path, command: str) -> None:
    if out.is_dir() and any(p.name != OUT_MARKER for p in out.iterdir()) and written_by(out) != command:
        atomic_write_text(out / OUT_MARKER, f"{command}\n")
