"""`optune study serve` as raters and organisers meet it: the real command on 127.0.0.1 (waitress),
its log read back from stderr."""

from __future__ import annotations

import signal
import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from optune.study import storage
from optune.study.create import create_study

from .conftest import ServeProcess, first_assignment, write_outputs

ACCESS = 'INFO 127.0.0.1 "'  # the start of an access line


def _make_study(folder, raters: int, n_prompts: int = 6, per_item: int = 1):
    a, b = write_outputs(folder, n_prompts)
    db = folder / "study.db"
    created = create_study(db, [str(a), f"BETA-13B={b}"], None, n_prompts=n_prompts,
                           raters=[f"r{i}" for i in range(raters)], ratings_per_item=per_item, seed=0)
    return db, dict(created.tokens)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    db, tokens = _make_study(folder, raters=3)
    server = ServeProcess(db, folder / "serve.log", "--busy-timeout", "1")
    yield server, db, tokens
    assert server.stop() == 0


def _wait_for_lines(server: ServeProcess, needle: str, count: int, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = server.log()
        if text.count(needle) >= count or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def test_no_token_in_the_log_for_odd_paths_errors_and_a_locked_database(served):
    server, db, tokens = served
    token = tokens["r0"]
    before = server.log().count(ACCESS)
    odd = [f"/r/{token}", f"/r//{token}", f"/R/{token}", f"/r/./{token}", f"/r/../r/{token}", f"/r/{token}/",
           f"//r/{token}", f"/r/{token}/item?x=%25&t={token}", "/r/" + "".join(f"%{ord(c):02X}" for c in token),
           f"/r/%{ord(token[0]):02X}{token[1:]}/item", f"/{token}", f"/static/{token}", f"/r/{token}/rate",
           f"/r/{token}%2Fitem", f"/r/{token}/item/{token}", "/r/%25%25%25"]
    statuses = {path: server.request("GET", path)[0] for path in odd}
    assert statuses[f"/r/{token}"] == 200 and statuses[f"/r//{token}"] == 308 and statuses[f"/R/{token}"] == 404
    assert statuses[f"/r/{token}/rate"] == 405
    mine = first_assignment(server.request("GET", f"/r/{token}/item")[2])
    for value in ["%C2%B2", "2**70", str(2**70), "%D9%A1"]:
        assert server.post_form(f"/r/{token}/rate", f"assignment={value}&choice=A")[0] == 400
    assert server.post_form(f"/r/{token}/rate", f"assignment={mine}&choice=A&pad={'x' * 8000}")[0] == 413

    # a request that raises: the ratings table is gone for a moment
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("ALTER TABLE ratings RENAME TO ratings_away")
    try:
        status, _, html = server.post_form(f"/r/{token}/rate", f"assignment={mine}&choice=A")
    finally:
        conn.execute("ALTER TABLE ratings_away RENAME TO ratings")
    assert status == 500 and "Something went wrong" in html

    # a study file locked past --busy-timeout: 503, the answer offered again, nothing stored
    conn.execute("BEGIN IMMEDIATE")
    try:
        status, headers, html = server.post_form(f"/r/{token}/rate", f"assignment={mine}&choice=tie")
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    assert status == 503 and headers["Retry-After"] == "5" and 'id="retry-form"' in html
    assert server.post_form(f"/r/{token}/rate", f"assignment={mine}&choice=tie")[0] == 303

    sent = len(odd) + 1 + 4 + 1 + 1 + 2
    text = _wait_for_lines(server, ACCESS, before + sent)
    assert text.count(ACCESS) - before == sent  # one access line per request: none lost
    assert token not in text and token[1:] not in text and token[:12] not in text
    assert "%%" not in text and "Traceback" not in text
    assert "ERROR error on POST /r/<token>/rate (OperationalError)" in text
    assert 'INFO 127.0.0.1 "GET /r/<token>/item?<redacted>" 200' in text
    assert "WARNING study file locked for over 1.0 s: asked the rater to retry POST /r/<token>/rate" in text
    assert storage.connect(db).execute("SELECT choice FROM ratings").fetchall()[0][0] == "tie"


def test_headers_and_body_limits(served):
    server, _, tokens = served
    status, headers, _ = server.request("GET", f"/r/{tokens['r1']}")
    assert status == 200 and "Server" not in headers and "default-src 'none'" in headers["Content-Security-Policy"]
    # 20 MB announced: refused from the headers alone, nothing read or stored
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"POST /r/{tokens['r1']}/rate HTTP/1.1\r\nHost: t\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 20000000\r\n\r\n".encode())
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413 ") and "\r\nServer:" not in reply and "waitress" not in reply


@pytest.mark.slow
def test_parallel_raters_at_start_up_then_ctrl_c(tmp_path):
    """25 raters at once right after start: no 5xx, every rating stored once, one log line per request."""
    db, tokens = _make_study(tmp_path, raters=25, n_prompts=50, per_item=1)  # 2 pairs each
    server = ServeProcess(db, tmp_path / "serve.log", "--threads", "4")

    def rater(token: str) -> list[int]:
        seen = [server.request("GET", f"/r/{token}")[0]]
        for _ in range(2):
            status, _, html = server.request("GET", f"/r/{token}/item")
            seen.append(status)
            seen.append(server.post_form(f"/r/{token}/rate", f"assignment={first_assignment(html)}&choice=B")[0])
        seen.append(server.request("GET", f"/r/{token}/item")[0])
        return seen

    try:
        with ThreadPoolExecutor(25) as pool:
            statuses = [s for seen in pool.map(rater, tokens.values()) for s in seen]
    finally:
        rc = server.stop(signal.SIGINT)
    assert rc == 0 and statuses.count(200) == 25 * 4 and statuses.count(303) == 25 * 2
    text = server.log()
    assert text.count(ACCESS) == len(statuses) == 150
    assert text.rstrip().endswith("stopped; every rating given so far is saved")
    assert not any(t in text for t in tokens.values())
    conn = storage.connect(db)
    assert tuple(conn.execute("SELECT COUNT(*), COUNT(DISTINCT assignment) FROM ratings").fetchone()) == (50, 50)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.slow
def test_sigterm_lets_a_running_rating_finish_and_debug_shows_tracebacks_without_tokens(tmp_path):
    db, tokens = _make_study(tmp_path, raters=1)
    token = tokens["r0"]
    server = ServeProcess(db, tmp_path / "serve.log", "--debug", "--busy-timeout", "20")
    try:
        mine = first_assignment(server.request("GET", f"/r/{token}/item")[2])
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("ALTER TABLE ratings RENAME TO ratings_away")
        assert server.post_form(f"/r/{token}/rate", f"assignment={mine}&choice=A")[0] == 500
        conn.execute("ALTER TABLE ratings_away RENAME TO ratings")
        conn.execute("BEGIN IMMEDIATE")  # the next rating waits for this lock inside the server
        result = {}
        poster = threading.Thread(target=lambda: result.update(
            status=server.post_form(f"/r/{token}/rate", f"assignment={mine}&choice=B")[0]))
        poster.start()
        time.sleep(1.5)  # the POST is in the server, waiting for the lock
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        conn.execute("ROLLBACK")
        conn.close()
        poster.join(timeout=30)
        rc = server.proc.wait(timeout=20)
    finally:
        server.stop()
    assert rc == 0 and result == {"status": 303}
    assert [tuple(r) for r in storage.connect(db).execute("SELECT assignment, choice FROM ratings")] == [(mine, "B")]
    text = server.log()
    assert "Traceback (most recent call last)" in text and "OperationalError: no such table: ratings" in text
    assert token not in text and "stopped; every rating given so far is saved" in text
