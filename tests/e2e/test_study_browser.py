"""The rating page driven end to end in a real headless Chromium.

Needs Debian's chromium (/usr/bin/chromium) and Playwright's Python package, pointed at that
binary (no browser download): `.ci/install-browser.sh` installs both. The study server is the
real `optune study serve`, run as a child process on 127.0.0.1 with a free port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from optune.study import storage
from optune.study.create import create_study

CHROMIUM = os.environ.get("OPTUNE_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found: run .ci/install-browser.sh", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: run .ci/install-browser.sh")

SRC = str(Path(__file__).resolve().parents[2] / "src")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PAYLOAD = "<script>window.__pwned = 1</script>"
pytestmark = pytest.mark.slow


def _write_systems(tmp_path: Path) -> list[str]:
    prompts = ["How do I boil an egg?", "Name three primes.", "What is WAL mode in SQLite?"]
    a = tmp_path / "rho07.jsonl"
    b = tmp_path / "rho10.jsonl"
    a.write_text("".join(json.dumps({"prompt": p, "response": f"Step 1: read\nStep 2: answer ({i})"}) + "\n"
                         for i, p in enumerate(prompts)))
    b.write_text("".join(json.dumps({"prompt": p, "response": f"{PAYLOAD}\nSecond line <b>bold?</b> ({i})"}) + "\n"
                         for i, p in enumerate(prompts)))
    return [f"SYSTEM-SEVEN={a}", f"SYSTEM-TEN={b}"]


class Server:
    """`optune study serve DB --port 0` as a child process; `.url` is where it listens."""

    def __init__(self, db: Path, *args: str):
        env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "optune.cli", "study", "serve", str(db), "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        line = self.proc.stdout.readline()  # "serving study DB at http://127.0.0.1:PORT/ (...)"
        if " at http://127.0.0.1:" not in line:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r}")
        self.url = line.split(" at ")[1].split()[0].rstrip("/")

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)


def _check_escaped_and_blind(page) -> None:
    """Model output is text: the <script> is shown, never run; line breaks are kept; no names leak."""
    shown = page.inner_text("#response-a") + page.inner_text("#response-b")
    assert PAYLOAD in shown and "<b>bold?</b>" in shown and "\nSecond line" in shown
    assert page.evaluate("window.__pwned") is None
    assert page.eval_on_selector("#response-a", "e => getComputedStyle(e).whiteSpace") == "pre-wrap"
    html = page.content()
    assert "SYSTEM-SEVEN" not in html and "SYSTEM-TEN" not in html and "rho07" not in html
    if os.environ.get("OPTUNE_STUDY_SCREENSHOT"):
        page.screenshot(path=os.environ["OPTUNE_STUDY_SCREENSHOT"], full_page=True)


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def test_rating_page_end_to_end(tmp_path, browser):
    db = tmp_path / "study.db"
    created = create_study(db, _write_systems(tmp_path), None, n_prompts=3, raters=["ann", "bob"],
                           ratings_per_item=2, seed=0)
    token = dict(created.tokens)["ann"]
    server = Server(db)
    servers = [server]
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        # guidelines, then the first pair
        page.goto(f"{server.url}/r/{token}")
        assert "Clarity and precision" in page.inner_text("body")
        page.click("#start")
        assert page.inner_text("#progress-text") == "Pair 1 of 3"

        _check_escaped_and_blind(page)

        # a rating by keyboard shortcut, a second by click
        first_assignment = page.get_attribute("input[name=assignment]", "value")
        page.keyboard.press("a")
        page.wait_for_selector("text=Pair 2 of 3")
        page.click("#choose-tie")
        page.wait_for_selector("text=Pair 3 of 3")
        conn = storage.connect(db)
        rows = [tuple(r) for r in conn.execute("SELECT assignment, choice FROM ratings ORDER BY rowid")]
        assert rows[0] == (int(first_assignment), "A") and [r[1] for r in rows] == ["A", "tie"]

        # a reload keeps progress and does not resubmit
        page.reload()
        assert page.inner_text("#progress-text") == "Pair 3 of 3"
        assert conn.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 2

        # a killed server loses nothing: restart it and continue where the rater stopped
        server.stop(signal.SIGKILL)
        server = Server(db, "--busy-timeout", "1")
        servers.append(server)
        page.goto(f"{server.url}/r/{token}")
        assert "Rated so far: 2 of 3" in page.inner_text("body")
        page.click("#start")
        assert page.inner_text("#progress-text") == "Pair 3 of 3"

        # the study file stays locked past --busy-timeout: a 503 page that resends the same answer
        third = page.get_attribute("input[name=assignment]", "value")
        page.wait_for_load_state("load")  # keys.js (deferred) is listening
        conn.execute("BEGIN IMMEDIATE")
        try:
            page.keyboard.press("3")
            page.wait_for_selector("#retry")
            assert "your answer was not saved yet" in page.inner_text("#message")
        finally:
            conn.execute("ROLLBACK")
        assert conn.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 2
        page.click("#retry")
        page.wait_for_selector("#done")
        assert conn.execute("SELECT choice FROM ratings WHERE assignment = ?", (int(third),)).fetchone()[0] == "tie"
        assert "rated all 3 pairs" in page.inner_text("#done")

        # an invalid token is refused
        response = page.goto(f"{server.url}/r/not-a-real-token")
        assert response.status == 404 and "This link is not valid" in page.inner_text("body")
        response = page.goto(f"{server.url}/r/{dict(created.tokens)['bob']}x/item")
        assert response.status == 404
        assert [e for e in errors if "404" not in e and "503" not in e] == []
    finally:
        for s in servers:
            s.stop()
