import io
import re
import sqlite3
import threading

import pytest
from werkzeug.datastructures import MultiDict

from optune.study import logs, storage
from optune.study.app import MAX_FORM_BYTES, create_app, parse_rating
from optune.study.create import create_study

from .conftest import SCRIPT

HIDDEN = ["ALPHA-7B", "BETA-13B", "alpha.json", "beta.jsonl"]


@pytest.fixture
def client(study):
    db, tokens = study
    app = create_app(db, busy_timeout=0.3)
    return app.test_client(), tokens, db


@pytest.fixture
def log_text():
    """The study log as the server writes it (through the redacting handler), read with log_text()."""
    stream = io.StringIO()
    handler = logs.configure(stream)
    yield stream.getvalue
    for name in (logs.LOGGER_NAME, "waitress"):
        logging_logger = logs.logging.getLogger(name)
        logging_logger.removeHandler(handler)
        logging_logger.propagate = True


def _assignment(html: str) -> int:
    return int(re.search(r'name="assignment" value="(\d+)"', html).group(1))


def test_guidelines_show_the_four_criteria_and_progress(client):
    c, tokens, _ = client
    page = c.get(f"/r/{tokens['r1']}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    for name in ["Alignment with the user", "Clarity and precision", "Directness and relevance",
                 "Efficiency and brevity"]:
        assert name in html
    assert "Rated so far: 0 of 4" in html
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/r/nope", "/r/nope/item", "/r/" + "x" * 500])
def test_invalid_token_is_refused(client, path):
    c, _, _ = client
    page = c.get(path)
    assert page.status_code == 404 and "This link is not valid" in page.get_data(as_text=True)
    assert c.post("/r/nope/rate", data={"assignment": "1", "choice": "A"}).status_code == 404


def test_items_are_escaped_and_blind(client):
    c, tokens, _ = client
    seen_script = False
    for token in tokens.values():
        for _ in range(4):
            html = c.get(f"/r/{token}/item").get_data(as_text=True)
            for hidden in HIDDEN:
                assert hidden not in html
            assert "<script>window" not in html
            if "Beta answer 0 " in html or "Beta answer 2 " in html or "Beta answer 4 " in html:
                assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
                seen_script = True
            c.post(f"/r/{token}/rate", data={"assignment": _assignment(html), "choice": "tie"})
    assert seen_script, SCRIPT


def test_rating_redirects_and_double_submit_counts_once(client):
    c, tokens, db = client
    token = tokens["r2"]
    html = c.get(f"/r/{token}/item").get_data(as_text=True)
    assert "Pair 1 of 4" in html
    first = _assignment(html)
    resp = c.post(f"/r/{token}/rate", data={"assignment": first, "choice": "A"})
    assert resp.status_code == 303 and resp.headers["Location"].endswith(f"/r/{token}/item")
    again = c.post(f"/r/{token}/rate", data={"assignment": first, "choice": "B"})
    assert again.status_code == 303
    html = c.get(f"/r/{token}/item").get_data(as_text=True)
    assert "Pair 2 of 4" in html and _assignment(html) != first
    conn = storage.connect(db)
    assert [tuple(r) for r in conn.execute("SELECT assignment, choice FROM ratings")] == [(first, "A")]


def test_foreign_and_malformed_posts_are_rejected(client):
    c, tokens, db = client
    other = _assignment(c.get(f"/r/{tokens['r2']}/item").get_data(as_text=True))
    mine = _assignment(c.get(f"/r/{tokens['r1']}/item").get_data(as_text=True))
    assert c.post(f"/r/{tokens['r1']}/rate", data={"assignment": other, "choice": "A"}).status_code == 403
    assert c.post(f"/r/{tokens['r1']}/rate", data={"assignment": mine, "choice": "C"}).status_code == 400
    assert c.post(f"/r/{tokens['r1']}/rate", data={"assignment": "x", "choice": "A"}).status_code == 400
    assert c.post(f"/r/{tokens['r1']}/rate", data={"choice": "A"}).status_code == 400
    page = c.get(f"/r/{tokens['r1']}/rate")
    assert page.status_code == 405 and "Please use the buttons" in page.get_data(as_text=True)
    assert storage.connect(db).execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 0


def test_finishing_shows_thanks(client):
    c, tokens, _ = client
    token = tokens["r3"]
    for _ in range(4):
        html = c.get(f"/r/{token}/item").get_data(as_text=True)
        c.post(f"/r/{token}/rate", data={"assignment": _assignment(html), "choice": "B"})
    html = c.get(f"/r/{token}/item").get_data(as_text=True)
    assert "You have rated all 4 pairs" in html
    assert "Rated so far: 4 of 4" in c.get(f"/r/{token}").get_data(as_text=True)


def test_an_empty_answer_is_marked_not_blank(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"prompt": "q", "response": "  "}\n')
    b.write_text('{"prompt": "q", "response": "fine"}\n')
    created = create_study(tmp_path / "s.db", [str(a), str(b)], None, n_prompts=1, raters=["r"],
                           ratings_per_item=1, seed=0)
    c = create_app(tmp_path / "s.db").test_client()
    html = c.get(f"/r/{created.tokens[0][1]}/item").get_data(as_text=True)
    assert "(empty answer)" in html and "fine" in html


# The parser on its own (fake forms, one per edge case); the same cases go through the page below.
BAD_ASSIGNMENTS = ["\u00b2", "2**70", str(2**70), "1" * 10, "\u0661", "\uff11", " 1", "1 ", "1\n", "+1", "-1",
                   "0", "01", "1_0", "0x1", "1e3", "1.0", "", "\u0031\u0301"]


@pytest.mark.parametrize("value", BAD_ASSIGNMENTS)
def test_parse_rating_takes_only_short_ascii_digits(value):
    assert parse_rating(MultiDict([("assignment", value), ("choice", "A")])) is None


@pytest.mark.parametrize("fields", [
    [("assignment", "1"), ("assignment", "1"), ("choice", "A")],
    [("assignment", "1"), ("choice", "A"), ("choice", "B")],
    [("assignment", "1"), ("choice", "A"), ("extra", "x")],
    [("assignment", "1")],
    [("choice", "tie")],
    [("assignment", "1"), ("choice", "a")],
    [("assignment", "1"), ("choice", "TIE")],
    [("assignment", "1"), ("choice", "A ")],
    [],
])
def test_parse_rating_wants_one_value_per_field_and_nothing_else(fields):
    assert parse_rating(MultiDict(fields)) is None


def test_parse_rating_accepts_the_form_as_sent():
    assert parse_rating(MultiDict([("assignment", "7"), ("choice", "tie")])) == (7, "tie")
    assert parse_rating(MultiDict([("choice", "B"), ("assignment", "999999999")])) == (999999999, "B")


def test_bad_form_input_is_one_400_page(client):
    """Every malformed rating is a 400 with the same page (never a 500), and nothing is stored."""
    c, tokens, db = client
    url = f"/r/{tokens['r1']}/rate"
    mine = _assignment(c.get(f"/r/{tokens['r1']}/item").get_data(as_text=True))
    pages = set()
    bodies = [f"assignment={v}&choice=A".encode() for v in ["%C2%B2", "2**70", str(2**70), "%D9%A1", "%EF%BC%91",
                                                            "%201", "-1", "0", "1_0", "", "%FF"]]
    bodies += [f"assignment={mine}&assignment={mine}&choice=A".encode(),
               f"assignment={mine}&choice=A&choice=B".encode(),
               f"assignment={mine}&choice=A&x=1".encode(), b"choice=A", b"", b"\xff\xfe"]
    for body in bodies:
        page = c.post(url, data=body, content_type="application/x-www-form-urlencoded")
        assert page.status_code == 400, body
        pages.add(page.get_data(as_text=True))
    for other in [c.post(url, json={"assignment": mine, "choice": "A"}),
                  c.post(url, data={"assignment": str(mine), "choice": "A", "f": (io.BytesIO(b"x"), "f.txt")})]:
        assert other.status_code == 400
        pages.add(other.get_data(as_text=True))
    assert len(pages) == 1
    page = pages.pop()
    assert "That request was not understood" in page and f'href="/r/{tokens["r1"]}/item"' in page
    assert storage.connect(db).execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 0


def test_a_large_body_is_413(client):
    c, tokens, _ = client
    mine = _assignment(c.get(f"/r/{tokens['r1']}/item").get_data(as_text=True))
    body = f"assignment={mine}&choice=A&pad=".encode() + b"x" * MAX_FORM_BYTES
    page = c.post(f"/r/{tokens['r1']}/rate", data=body, content_type="application/x-www-form-urlencoded")
    assert page.status_code == 413 and "too large" in page.get_data(as_text=True)


def _hold_write_lock(db):
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_locked_database_is_503_with_a_retry_that_keeps_the_answer(client, log_text):
    c, tokens, db = client
    token = tokens["r2"]
    mine = _assignment(c.get(f"/r/{token}/item").get_data(as_text=True))
    holder = _hold_write_lock(db)
    try:
        page = c.post(f"/r/{token}/rate", data={"assignment": str(mine), "choice": "B"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    html = page.get_data(as_text=True)
    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert "your answer was not saved yet" in html
    assert f'action="/r/{token}/rate"' in html
    assert f'name="assignment" value="{mine}"' in html and 'name="choice" value="B"' in html
    assert storage.connect(db).execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 0
    # the retry form, sent as it stands, stores the answer once
    retry = c.post(f"/r/{token}/rate", data={"assignment": str(mine), "choice": "B"})
    assert retry.status_code == 303
    conn = storage.connect(db)
    assert [tuple(r) for r in conn.execute("SELECT assignment, choice FROM ratings")] == [(mine, "B")]
    text = log_text()
    assert "study file locked for over 0.3 s: asked the rater to retry POST /r/<token>/rate" in text
    assert token not in text


def test_a_short_lock_is_waited_for(study):
    db, tokens = study
    c = create_app(db, busy_timeout=10).test_client()
    token = tokens["r3"]
    mine = _assignment(c.get(f"/r/{token}/item").get_data(as_text=True))
    holder = _hold_write_lock(db)
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        assert c.post(f"/r/{token}/rate", data={"assignment": str(mine), "choice": "A"}).status_code == 303
    finally:
        release.join()
        holder.close()
    assert storage.connect(db).execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 1


def test_a_failing_request_is_a_500_logged_without_the_token(client, log_text):
    c, tokens, db = client
    token = tokens["r1"]
    mine = _assignment(c.get(f"/r/{token}/item").get_data(as_text=True))
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("ALTER TABLE ratings RENAME TO ratings_away")  # a real fault: the next INSERT fails
    try:
        page = c.post(f"/r/{token}/rate", data={"assignment": str(mine), "choice": "A"})
    finally:
        conn.execute("ALTER TABLE ratings_away RENAME TO ratings")
        conn.close()
    assert page.status_code == 500 and "every answer you gave so far is saved" in page.get_data(as_text=True)
    text = log_text()
    assert "ERROR error on POST /r/<token>/rate (OperationalError)" in text
    assert token not in text and "Traceback" not in text and "no such table" not in text


def test_ratings_queue_in_the_process_and_a_stuck_queue_is_503(study):
    """Writers take turns on an in-process lock; one stuck past the busy timeout gives the retry page."""
    db, tokens = study
    app = create_app(db, busy_timeout=0.3)
    c = app.test_client()
    token = tokens["r1"]
    mine = _assignment(c.get(f"/r/{token}/item").get_data(as_text=True))
    lock = app.extensions["optune_study_write_lock"]
    with lock:
        page = c.post(f"/r/{token}/rate", data={"assignment": str(mine), "choice": "tie"})
    assert page.status_code == 503 and 'name="choice" value="tie"' in page.get_data(as_text=True)
    assert not lock.locked()
    assert c.post(f"/r/{token}/rate", data={"assignment": str(mine), "choice": "tie"}).status_code == 303
    assert not lock.locked()
