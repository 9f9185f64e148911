"""The study file: one SQLite database holding the design and every rating.

Why SQLite: each rating is committed in its own transaction the moment it is given, so killing
the server loses nothing; WAL mode lets `optune study results` read while raters write. A rating
is keyed by its assignment, so a double submit (double click, resent form) counts once: the
first answer stands. Rater tokens are stored only as SHA-256 hashes, so the file alone does not
grant access to anyone's items.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from optune.errors import UserError

FORMAT = "optune-study-1"
CHOICES = ("A", "B", "tie")

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE systems (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, source TEXT NOT NULL);
CREATE TABLE comparisons (
    id INTEGER PRIMARY KEY,
    first INTEGER NOT NULL REFERENCES systems(id),
    second INTEGER NOT NULL REFERENCES systems(id));
CREATE TABLE prompts (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE responses (
    system INTEGER NOT NULL REFERENCES systems(id),
    prompt INTEGER NOT NULL REFERENCES prompts(id),
    text TEXT NOT NULL,
    PRIMARY KEY (system, prompt));
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    comparison INTEGER NOT NULL REFERENCES comparisons(id),
    prompt INTEGER NOT NULL REFERENCES prompts(id),
    UNIQUE (comparison, prompt));
CREATE TABLE raters (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_sha256 TEXT NOT NULL UNIQUE);
CREATE TABLE assignments (
    id INTEGER PRIMARY KEY,
    item INTEGER NOT NULL REFERENCES items(id),
    rater INTEGER NOT NULL REFERENCES raters(id),
    position INTEGER NOT NULL,
    first_is_a INTEGER NOT NULL CHECK (first_is_a IN (0, 1)),
    UNIQUE (item, rater), UNIQUE (rater, position));
CREATE TABLE ratings (
    assignment INTEGER PRIMARY KEY REFERENCES assignments(id),
    choice TEXT NOT NULL CHECK (choice IN ('A', 'B', 'tie')),
    rated_at TEXT NOT NULL);
"""


@dataclass
class StudyPlan:
    """Everything `create` decided, in the shape the database stores (indices are 0-based)."""

    systems: list[tuple[str, str]]  # (name, source file)
    comparisons: list[tuple[int, int]]  # (first system, second system)
    prompts: list[str]
    responses: dict[tuple[int, int], str]  # (system, prompt) -> text
    items: list[tuple[int, int]]  # (comparison, prompt)
    raters: list[tuple[str, str]]  # (name, token sha256)
    assignments: list  # design.Assignment
    meta: dict[str, str]


@dataclass(frozen=True)
class Rater:
    id: int
    name: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_study(path: str | Path, plan: StudyPlan) -> None:
    """Write a new study file atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.executescript(SCHEMA)
            conn.execute("BEGIN")
            _insert_plan(conn, plan)
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _insert_plan(conn: sqlite3.Connection, plan: StudyPlan) -> None:
    meta = {"format": FORMAT, "created_at": _now(), **plan.meta}
    conn.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
    conn.executemany("INSERT INTO systems VALUES (?, ?, ?)", [(i + 1, n, s) for i, (n, s) in enumerate(plan.systems)])
    conn.executemany(
        "INSERT INTO comparisons VALUES (?, ?, ?)", [(i + 1, a + 1, b + 1) for i, (a, b) in enumerate(plan.comparisons)]
    )
    conn.executemany("INSERT INTO prompts VALUES (?, ?)", [(i + 1, t) for i, t in enumerate(plan.prompts)])
    conn.executemany(
        "INSERT INTO responses VALUES (?, ?, ?)", [(s + 1, p + 1, t) for (s, p), t in sorted(plan.responses.items())]
    )
    conn.executemany(
        "INSERT INTO items VALUES (?, ?, ?)", [(i + 1, c + 1, p + 1) for i, (c, p) in enumerate(plan.items)]
    )
    conn.executemany("INSERT INTO raters VALUES (?, ?, ?)", [(i + 1, n, h) for i, (n, h) in enumerate(plan.raters)])
    conn.executemany(
        "INSERT INTO assignments (item, rater, position, first_is_a) VALUES (?, ?, ?, ?)",
        [(a.item + 1, a.rater + 1, a.position, int(a.first_is_a)) for a in plan.assignments],
    )


def is_busy(err: BaseException) -> bool:
    """True for SQLite's "database is locked" / "database table is locked" (SQLITE_BUSY, SQLITE_LOCKED):
    another connection held the lock for longer than the busy timeout; retrying later can succeed."""
    if not isinstance(err, sqlite3.OperationalError):
        return False
    code = getattr(err, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(err)


@functools.cache
def _expected_columns() -> dict[str, frozenset[str]]:
    """Each table of SCHEMA and its columns, as SQLite reports them."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.executescript(SCHEMA)
        return _columns(mem, [r[0] for r in mem.execute("SELECT name FROM sqlite_master WHERE type = 'table'")])
    finally:
        mem.close()


def _columns(conn: sqlite3.Connection, tables) -> dict[str, frozenset[str]]:
    # the names are SCHEMA's own (no quoting needed); a table the file lacks has no columns
    return {t: frozenset(r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')) for t in tables}


def check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Every table and column of SCHEMA is there: a study file missing one (damaged, or edited by hand) is one
    line here rather than a traceback in `results` or a 500 page for every rater in `serve`."""
    expected = _expected_columns()
    found = _columns(conn, expected)
    missing = [t for t in expected if not found[t]]
    missing += [f"{t}.{c}" for t in expected if found[t] for c in sorted(expected[t] - found[t])]
    if missing:
        raise UserError(f"{path}: a damaged optune study file: it lacks {', '.join(missing)}; restore it from a "
                        "copy, or make a new study with `optune study create`")


def damaged(path: Path, problem: str) -> UserError:
    """The one line for a study file whose pages SQLite cannot read (a disk error, a copy cut short)."""
    return UserError(f"{path}: a damaged optune study file ({problem}); restore it from a copy, or make a new study "
                     "with `optune study create`")


def is_corrupt(err: BaseException) -> bool:
    """True for SQLite's "database disk image is malformed" (SQLITE_CORRUPT): the file's pages are damaged."""
    if not isinstance(err, sqlite3.DatabaseError):
        return False
    code = getattr(err, "sqlite_errorcode", None)
    return code & 0xFF == sqlite3.SQLITE_CORRUPT if code is not None else "malformed" in str(err)


def check_pages(conn: sqlite3.Connection, path: Path) -> None:
    """SQLite's quick check of every page (fast on a study's size): damage anywhere in the file is one line now,
    not a traceback in `results` or a 500 page for the raters whose items sit on a damaged page in `serve`."""
    found = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    if found != ["ok"]:
        first = next((line for text in found for line in str(text).splitlines() if not line.startswith("***")), "")
        raise damaged(path, f"SQLite's check finds {'problems' if len(found) > 1 else 'a problem'}: {first[:160]}")


@contextlib.contextmanager
def reading(path: str | Path):
    """Queries on a study file: a damaged page met on the way is one line (`damaged`), not a traceback."""
    try:
        yield
    except sqlite3.DatabaseError as err:
        if is_corrupt(err):
            raise damaged(Path(path), str(err)) from None
        raise


def connect(path: str | Path, busy_timeout: float = 10.0, check: bool = True) -> sqlite3.Connection:
    """Open an existing study file for reading and writing, refusing anything else.

    Autocommit mode (`isolation_level=None`) so every write is its own explicit transaction;
    synchronous=FULL so a committed rating survives even a power cut, not just a killed process.
    `busy_timeout` (seconds): how long a statement waits for another connection's write lock
    before failing with "database is locked" (see `is_busy`). `check`: also check every table is there
    and every page reads (`check_schema`, `check_pages`; the server checks once at start, not on each request).
    A file whose pages SQLite cannot read is one line naming it damaged (`damaged`).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such study file (make one with `optune study create`)")
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=FULL")
        row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        if check and row is not None and row[0] == FORMAT:
            check_schema(conn, path)
            check_pages(conn, path)
    except UserError:
        conn.close()
        raise
    except sqlite3.DatabaseError as err:
        conn.close()
        if is_busy(err):
            raise
        if is_corrupt(err):
            raise damaged(path, str(err)) from None
        raise UserError(f"{path}: not an optune study file ({err})") from None
    if row is None or row[0] != FORMAT:
        conn.close()
        raise UserError(f"{path}: not an optune study file (format {row[0] if row else None!r})")
    return conn


def meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {k: v for k, v in conn.execute("SELECT key, value FROM meta")}


def rater_by_token(conn: sqlite3.Connection, token: str) -> Rater | None:
    row = conn.execute("SELECT id, name FROM raters WHERE token_sha256 = ?", (token_hash(token),)).fetchone()
    return Rater(row["id"], row["name"]) if row else None


def progress(conn: sqlite3.Connection, rater_id: int) -> tuple[int, int]:
    """(rated, assigned) for one rater."""
    row = conn.execute(
        "SELECT COUNT(r.assignment), COUNT(*) FROM assignments a"
        " LEFT JOIN ratings r ON r.assignment = a.id WHERE a.rater = ?",
        (rater_id,),
    ).fetchone()
    return row[0], row[1]


def next_item(conn: sqlite3.Connection, rater_id: int) -> dict | None:
    """The rater's first unrated pair in their order, as shown: prompt, response A, response B.

    Only texts and the assignment id leave this function; which system is which stays here.
    """
    row = conn.execute(
        "SELECT a.id, a.position, a.first_is_a, p.text AS prompt, r1.text AS first, r2.text AS second"
        " FROM assignments a JOIN items i ON i.id = a.item"
        " JOIN comparisons c ON c.id = i.comparison JOIN prompts p ON p.id = i.prompt"
        " JOIN responses r1 ON r1.system = c.first AND r1.prompt = i.prompt"
        " JOIN responses r2 ON r2.system = c.second AND r2.prompt = i.prompt"
        " WHERE a.rater = ? AND NOT EXISTS (SELECT 1 FROM ratings WHERE assignment = a.id)"
        " ORDER BY a.position LIMIT 1",
        (rater_id,),
    ).fetchone()
    if row is None:
        return None
    a, b = (row["first"], row["second"]) if row["first_is_a"] else (row["second"], row["first"])
    return {"assignment": row["id"], "position": row["position"], "prompt": row["prompt"], "a": a, "b": b}


def record_rating(conn: sqlite3.Connection, rater_id: int, assignment_id: int, choice: str) -> bool:
    """Store one rating; True if new, False if this pair was already rated (the first answer stands).

    Raises LookupError when the assignment is not this rater's (a token reaches only its own items).
    The ownership check is a plain read (assignments never change), so the write is a single
    autocommit INSERT: the write lock is held only for that statement and its commit. When another
    connection holds the lock past the busy timeout, sqlite3.OperationalError is raised (`is_busy`)
    and nothing is written.
    """
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {CHOICES}, got {choice!r}")
    owner = conn.execute("SELECT rater FROM assignments WHERE id = ?", (assignment_id,)).fetchone()
    if owner is None or owner[0] != rater_id:
        raise LookupError(f"assignment {assignment_id} is not assigned to rater {rater_id}")
    cur = conn.execute(
        "INSERT INTO ratings (assignment, choice, rated_at) VALUES (?, ?, ?) ON CONFLICT (assignment) DO NOTHING",
        (assignment_id, choice, _now()),
    )
    return cur.rowcount == 1


def rating_rows(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Every rating with what `results` needs: comparison, systems, prompt, rater, order, choice."""
    return conn.execute(
        "SELECT c.id AS comparison, s1.name AS first, s2.name AS second, i.id AS item, p.id AS prompt_id,"
        " p.text AS prompt, ra.name AS rater, a.first_is_a, r.choice, r.rated_at"
        " FROM ratings r JOIN assignments a ON a.id = r.assignment JOIN items i ON i.id = a.item"
        " JOIN comparisons c ON c.id = i.comparison JOIN systems s1 ON s1.id = c.first"
        " JOIN systems s2 ON s2.id = c.second JOIN prompts p ON p.id = i.prompt JOIN raters ra ON ra.id = a.rater"
        " ORDER BY c.id, i.id, ra.id"
    ).fetchall()


def comparison_rows(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Each comparison with its item and assignment counts (rated or not)."""
    return conn.execute(
        "SELECT c.id, s1.name AS first, s2.name AS second,"
        " (SELECT COUNT(*) FROM items WHERE comparison = c.id) AS items,"
        " (SELECT COUNT(*) FROM assignments a JOIN items i ON i.id = a.item WHERE i.comparison = c.id) AS assigned"
        " FROM comparisons c JOIN systems s1 ON s1.id = c.first JOIN systems s2 ON s2.id = c.second ORDER BY c.id"
    ).fetchall()


def rater_progress(conn: sqlite3.Connection) -> list[tuple[str, int, int]]:
    """(name, rated, assigned) per rater, for the organiser's overview."""
    return [(r["name"], *progress(conn, r["id"])) for r in conn.execute("SELECT id, name FROM raters ORDER BY id")]
