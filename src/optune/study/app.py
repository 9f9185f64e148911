"""The rating web page (Flask).

A rater's personal link `/r/TOKEN` shows the guidelines and their progress; `/r/TOKEN/item`
shows their next unrated pair; choosing A, B or tie posts to `/r/TOKEN/rate`, which stores the
rating in its own transaction and redirects back (so a reload never resubmits). Progress lives
in the database, so a rater can close the tab and come back later.

What reaches the page: the prompt, two response texts and an opaque assignment id. System
names never do. Texts go through Jinja's autoescaping and are shown with `white-space:
pre-wrap`, so model output is always text, never HTML; a strict Content-Security-Policy
(scripts only from our own static file) is a second line of defence.

Form input is parsed strictly (`parse_rating`): anything but exactly one `assignment` of 1-9 ASCII
digits and one `choice` of A, B or tie is a 400 with the same page; a body over `MAX_FORM_BYTES` is a
413. When the study file stays locked longer than the busy timeout, the rater gets a 503 page that
offers to send the same answer again (nothing is stored twice: the first answer stands).
Errors are logged without the token (see `logs`).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from flask import Blueprint, Flask, abort, current_app, g, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from optune.errors import UserError
from optune.study import logs, storage

GUIDELINES_INTRO = (
    "Below are responses to the following questions from two different models. Please evaluate which of the "
    "answers would be more helpful. If you think both answers are equally helpful, please select the tie option."
)
# The four criteria of the paper's Appendix D (after Chen et al. 2024b), shown to every rater.
CRITERIA = [
    ("Alignment with the user's intent",
     "Ensure the response directly addresses the user's question or task, interpreting underlying intentions "
     "when not explicitly stated."),
    ("Clarity and precision",
     "Responses should be easy to understand, avoiding unnecessary jargon and maintaining focus on the user's query."),
    ("Directness and relevance",
     "Keep the response strictly related to the task, avoiding unrelated information or tangents."),
    ("Efficiency and brevity",
     "Provide comprehensive yet concise information, steering clear of repetitive or overly detailed content "
     "that does not enhance understanding."),
]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never send it elsewhere
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


MAX_FORM_BYTES = 4096  # the rating form is under 100 bytes; larger bodies get 413
ASSIGNMENT = re.compile(r"[1-9][0-9]{0,8}")  # ASCII digits only ([0-9], not \d), at most 9 of them
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")  # the alphabet of secrets.token_urlsafe
FORM_FIELDS = frozenset({"assignment", "choice"})
FORM_TYPE = "application/x-www-form-urlencoded"
RETRY_AFTER_S = 5

PAGES = {
    400: ("Bad request", "That request was not understood. Please go back to your pair and choose again."),
    403: ("Not yours", "That pair is not assigned to you."),
    404: ("Link not valid", "This link is not valid. Please use the personal link you were given."),
    405: ("Not allowed", "That request was not understood. Please use the buttons on the page."),
    413: ("Too large", "That request was too large. Please go back to your pair and choose again."),
    500: ("Something went wrong", "The page could not be shown. Please try again in a moment; "
                                  "every answer you gave so far is saved."),
}


class StudyBusy(Exception):
    """This process's ratings queue did not clear within the busy timeout (the file is held elsewhere)."""


class StudyFlask(Flask):
    """Flask whose exception log line carries the redacted path and the exception type only
    (Flask's own names the path as requested, token included)."""

    def log_exception(self, exc_info) -> None:
        logs.log_error(request.environ, exc_info[1])


bp = Blueprint("study", __name__)


def create_app(db_path: str | Path, busy_timeout: float = 5.0) -> Flask:
    """Build the app for one study file (checked now, so a bad path fails before serving).

    `busy_timeout`: seconds a request waits for another connection's write lock before the rater
    gets the 503 "please retry" page.
    """
    try:
        storage.connect(db_path, busy_timeout).close()
    except sqlite3.OperationalError as err:
        if storage.is_busy(err):
            raise UserError(f"{db_path}: the study file is locked by another program; try again") from None
        raise
    app = StudyFlask(__name__)
    app.config.update(STUDY_DB=str(db_path), STUDY_BUSY_TIMEOUT=float(busy_timeout), MAX_CONTENT_LENGTH=MAX_FORM_BYTES)
    app.register_blueprint(bp)
    app.teardown_appcontext(_close_db)
    app.after_request(_add_headers)
    for code in PAGES:
        app.register_error_handler(code, _message_page(code))
    app.register_error_handler(sqlite3.OperationalError, _database_error)
    app.register_error_handler(StudyBusy, lambda _err: _busy_page())
    app.extensions["optune_study_write_lock"] = threading.Lock()
    return app


def _db() -> sqlite3.Connection:
    """One connection per request (the server is threaded; SQLite connections are not shared)."""
    if "study_db" not in g:
        g.study_db = storage.connect(current_app.config["STUDY_DB"], current_app.config["STUDY_BUSY_TIMEOUT"],
                                     check=False)  # checked once, by create_app
    return g.study_db


def _close_db(_exc) -> None:
    conn = g.pop("study_db", None)
    if conn is not None:
        conn.close()


def _add_headers(response):
    response.headers.update(SECURITY_HEADERS)
    return response


def _back_link() -> str | None:
    """The rater's current pair, for error pages reached from one of their own links."""
    return url_for("study.item", token=g.token) if "token" in g else None


def _message_page(code: int):
    title, message = PAGES[code]

    def handler(_err):
        return render_template("message.html", title=title, message=message, back=_back_link()), code
    return handler


def _database_error(err: sqlite3.OperationalError):
    """Locked past the busy timeout: 503 with a way to retry. Any other database error: a logged 500."""
    if not storage.is_busy(err):
        tb = err.__traceback__
        current_app.log_exception((type(err), err, tb) if tb is not None else (None, None, None))
        return _message_page(500)(err)
    return _busy_page()


def _busy_page():
    logs.log.warning("study file locked for over %.1f s: asked the rater to retry %s",
                     current_app.config["STUDY_BUSY_TIMEOUT"], logs.request_line(request.environ))
    html = render_template("busy.html", retry=g.get("rating"), token=g.get("token"), back=_back_link())
    return html, 503, {"Retry-After": str(RETRY_AFTER_S)}


@contextmanager
def _write_turn():
    """Ratings are written one at a time per process, in the order they arrive (a lock that blocks).

    Without it, the server's threads would all wait on SQLite's own lock, which polls with growing
    sleeps and lets some requests wait for seconds under a burst; so SQLite's busy timeout is left for
    other processes (`optune study results`, an organiser's sqlite3 shell).
    """
    lock = current_app.extensions["optune_study_write_lock"]
    if not lock.acquire(timeout=current_app.config["STUDY_BUSY_TIMEOUT"]):
        raise StudyBusy
    try:
        yield
    finally:
        lock.release()


def parse_rating(form: MultiDict) -> tuple[int, str] | None:
    """(assignment id, choice) from the rating form, or None unless it holds exactly one `assignment`
    (1-9 ASCII digits, no sign, space or leading zero) and one `choice` (A, B or tie) and nothing else."""
    if set(form.keys()) != FORM_FIELDS or any(len(form.getlist(k)) != 1 for k in FORM_FIELDS):
        return None
    assignment, choice = form["assignment"], form["choice"]
    if not ASSIGNMENT.fullmatch(assignment) or choice not in storage.CHOICES:
        return None
    return int(assignment), choice


def _checked_token(token: str) -> str:
    """404 unless the token could be one of ours; remembered for the error pages' way back."""
    if not TOKEN.fullmatch(token):
        abort(404)
    g.token = token
    return token


def _rater_or_404(token: str) -> storage.Rater:
    rater = storage.rater_by_token(_db(), _checked_token(token))
    if rater is None:
        g.pop("token", None)
        abort(404)
    return rater


@bp.get("/")
def index():
    return render_template("message.html", title="Human study", message="Please open the personal link you were given.")


@bp.get("/r/<token>")
def guidelines(token: str):
    rater = _rater_or_404(token)
    done, total = storage.progress(_db(), rater.id)
    return render_template("guidelines.html", token=token, done=done, total=total,
                           intro=GUIDELINES_INTRO, criteria=CRITERIA)


@bp.get("/r/<token>/item")
def item(token: str):
    rater = _rater_or_404(token)
    done, total = storage.progress(_db(), rater.id)
    current = storage.next_item(_db(), rater.id)
    if current is None:
        return render_template("done.html", total=total)
    return render_template("item.html", token=token, item=current, done=done, total=total, criteria=CRITERIA)


@bp.post("/r/<token>/rate")
def rate(token: str):
    """Store one answer, then redirect (303) to the next pair, so a reload never posts again.

    The form is checked before the database is touched, so a busy database can offer to resend it.
    """
    _checked_token(token)
    parsed = parse_rating(request.form) if request.mimetype == FORM_TYPE else None  # form: 413 if too large
    if parsed is None:
        abort(400)
    g.rating = {"assignment": parsed[0], "choice": parsed[1]}
    rater = _rater_or_404(token)
    try:
        with _write_turn():
            storage.record_rating(_db(), rater.id, *parsed)
    except LookupError:
        abort(403)
    return redirect(url_for("study.item", token=token), code=303)
