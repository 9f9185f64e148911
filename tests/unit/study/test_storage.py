import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from optune.errors import UserError
from optune.study import storage
from optune.study.design import Assignment

SRC = str(Path(__file__).resolve().parents[3] / "src")


def test_study_file_is_wal_and_stores_only_token_hashes(study):
    db, tokens = study
    conn = storage.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw = db.read_bytes()
    for token in tokens.values():
        assert token.encode() not in raw
        assert storage.token_hash(token).encode() in raw
    assert storage.rater_by_token(conn, tokens["r2"]).name == "r2"
    assert storage.rater_by_token(conn, "not-a-token") is None
    assert storage.meta(conn)["seed"] == "0"


def test_next_item_walks_the_raters_own_order(study):
    db, tokens = study
    conn = storage.connect(db)
    rater = storage.rater_by_token(conn, tokens["r1"])
    done, total = storage.progress(conn, rater.id)
    assert (done, total) == (0, 4)  # 6 pairs x 2 ratings / 3 raters
    seen = []
    while (item := storage.next_item(conn, rater.id)) is not None:
        assert item["position"] == len(seen)
        assert {item["a"].split()[0], item["b"].split()[0]} == {"Alpha", "Beta"}
        assert "ALPHA-7B" not in str(item) and "BETA-13B" not in str(item)
        assert storage.record_rating(conn, rater.id, item["assignment"], "tie")
        seen.append(item["assignment"])
    assert storage.progress(conn, rater.id) == (4, 4)
    owned = {r[0] for r in conn.execute("SELECT id FROM assignments WHERE rater = ?", (rater.id,))}
    assert set(seen) == owned


def test_order_shown_follows_first_is_a(study):
    db, _ = study
    conn = storage.connect(db)
    flips = {r["id"]: r["first_is_a"] for r in conn.execute("SELECT id, first_is_a FROM assignments")}
    assert set(flips.values()) == {0, 1}
    for rater in (1, 2, 3):
        while (item := storage.next_item(conn, rater)) is not None:
            first = item["a"] if flips[item["assignment"]] else item["b"]
            assert first.startswith("Alpha")  # the comparison's first system is the alpha file
            storage.record_rating(conn, rater, item["assignment"], "A")


def test_double_submit_counts_once_and_first_answer_stands(study):
    db, tokens = study
    conn = storage.connect(db)
    rater = storage.rater_by_token(conn, tokens["r3"])
    item = storage.next_item(conn, rater.id)
    assert storage.record_rating(conn, rater.id, item["assignment"], "A") is True
    assert storage.record_rating(conn, rater.id, item["assignment"], "B") is False
    rows = conn.execute("SELECT choice FROM ratings").fetchall()
    assert [r[0] for r in rows] == ["A"]


def test_a_token_reaches_only_its_own_items(study):
    db, tokens = study
    conn = storage.connect(db)
    r1 = storage.rater_by_token(conn, tokens["r1"])
    r2 = storage.rater_by_token(conn, tokens["r2"])
    foreign = storage.next_item(conn, r2.id)["assignment"]
    with pytest.raises(LookupError):
        storage.record_rating(conn, r1.id, foreign, "A")
    with pytest.raises(LookupError):
        storage.record_rating(conn, r1.id, 10_000, "A")
    with pytest.raises(ValueError):
        storage.record_rating(conn, r2.id, foreign, "C")
    assert conn.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 0
    assert not conn.in_transaction


def test_rating_survives_a_killed_process(study):
    """Each rating is committed at once: SIGKILL right after recording loses nothing."""
    db, tokens = study
    code = (
        "import os, signal, sys\n"
        "from optune.study import storage\n"
        f"conn = storage.connect({str(db)!r})\n"
        f"r = storage.rater_by_token(conn, {tokens['r1']!r})\n"
        "storage.record_rating(conn, r.id, storage.next_item(conn, r.id)['assignment'], 'B')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": SRC}, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    conn = storage.connect(db)
    assert [r[0] for r in conn.execute("SELECT choice FROM ratings")] == ["B"]


def test_connect_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="no such study file"):
        storage.connect(tmp_path / "none.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(UserError, match="not an optune study file"):
        storage.connect(other)
    junk = tmp_path / "junk.db"
    junk.write_text("hello, not sqlite" * 100)
    with pytest.raises(UserError, match="not an optune study file"):
        storage.connect(junk)


def test_failed_write_leaves_existing_file_and_no_temp(tmp_path):
    target = tmp_path / "study.db"
    target.write_text("old")
    bad = storage.StudyPlan(
        systems=[("a", "a.json"), ("b", "b.json")], comparisons=[(0, 1)], prompts=["same", "same"],
        responses={}, items=[], raters=[], assignments=[], meta={},
    )
    with pytest.raises(sqlite3.IntegrityError):
        storage.write_study(target, bad)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]


def test_plan_round_trip_counts(tmp_path):
    plan = storage.StudyPlan(
        systems=[("a", "a.json"), ("b", "b.json")], comparisons=[(0, 1)], prompts=["p"],
        responses={(0, 0): "ra", (1, 0): "rb"}, items=[(0, 0)], raters=[("x", storage.token_hash("t"))],
        assignments=[Assignment(item=0, rater=0, position=0, first_is_a=False)], meta={"seed": "1"},
    )
    storage.write_study(tmp_path / "s.db", plan)
    conn = storage.connect(tmp_path / "s.db")
    item = storage.next_item(conn, 1)
    assert (item["prompt"], item["a"], item["b"]) == ("p", "rb", "ra")
    assert [tuple(r) for r in storage.comparison_rows(conn)] == [(1, "a", "b", 1, 1)]


def test_a_page_damaged_after_the_check_is_one_line_while_reading(study):
    """connect checks every page; `reading` names a page damaged afterwards (the server checks only at start)."""
    db, _ = study
    conn = storage.connect(db)
    conn.close()
    data = db.read_bytes()
    db.write_bytes(data[:-4096] + b"\x11" * 4096)
    conn = storage.connect(db, check=False)
    try:
        with pytest.raises(UserError) as err, storage.reading(db):
            storage.rating_rows(conn)
            storage.rater_progress(conn)
            storage.comparison_rows(conn)
    finally:
        conn.close()
    assert str(err.value) == (f"{db}: a damaged optune study file (database disk image is malformed); restore it "
                              "from a copy, or make a new study with `optune study create`")
