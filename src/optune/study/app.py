"""The rating web page (Flask).

A rater's personal link `/r/TOKEN` shows the guidelines and their progress; `/r/TOKEN/item`
shows their next unrated pair; choosing A, B or tie posts to `/r/TOKEN/rate`, which stores the
rating in its own transaction and redirects back (so a reload never resubmits). Progress lives
in the database, so a rater can close the tab and come back later.

What reaches the page: the prompt, two response texts and an opaque assignment id. System
names never do. Texts go through Jinja's autoescaping and are shown with `white-space:
pre-wrap`, so model output is always text, never HTML; a strict Content-Security-Policy
(scripts only from our own static file) is a second line of defence.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from flask import Blueprint, Flask, abort, current_app, g, redirect, render_template, request, url_for
from werkzeug.serving import WSGIRequestHandler, make_server

from optune.study import storage

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

_TOKEN_IN_PATH = re.compile(r"/r/[^/\s?]+")


bp = Blueprint("study", __name__)


def create_app(db_path: str | Path) -> Flask:
    """Build the app for one study file (checked now, so a bad path fails before serving)."""
    storage.connect(db_path).close()
    app = Flask(__name__)
    app.config["STUDY_DB"] = str(db_path)
    app.register_blueprint(bp)
    app.teardown_appcontext(_close_db)
    app.after_request(_add_headers)
    for code, title, message in [
        (404, "Link not valid", "This link is not valid. Please use the personal link you were given."),
        (400, "Bad request", "That request was not understood."),
        (403, "Not yours", "That pair is not assigned to you."),
    ]:
        app.register_error_handler(code, _message_page(code, title, message))
    return app


def _db() -> sqlite3.Connection:
    """One connection per request (the server is threaded; SQLite connections are not shared)."""
    if "study_db" not in g:
        g.study_db = storage.connect(current_app.config["STUDY_DB"])
    return g.study_db


def _close_db(_exc) -> None:
    conn = g.pop("study_db", None)
    if conn is not None:
        conn.close()


def _add_headers(response):
    response.headers.update(SECURITY_HEADERS)
    return response


def _message_page(code: int, title: str, message: str):
    def handler(_err):
        return render_template("message.html", title=title, message=message), code
    return handler


def _rater_or_404(token: str) -> storage.Rater:
    rater = storage.rater_by_token(_db(), token) if len(token) <= 128 else None
    if rater is None:
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
    """Store one answer, then redirect (303) to the next pair, so a reload never posts again."""
    rater = _rater_or_404(token)
    choice = request.form.get("choice", "")
    assignment = request.form.get("assignment", "")
    if choice not in storage.CHOICES or not assignment.isdigit():
        abort(400)
    try:
        storage.record_rating(_db(), rater.id, int(assignment), choice)
    except LookupError:
        abort(403)
    return redirect(url_for("study.item", token=token), code=303)


class _RedactingHandler(WSGIRequestHandler):
    """Request log lines without rater tokens (the log may be shared; tokens grant access)."""

    def log(self, type: str, message: str, *args) -> None:
        text = message % args if args else message
        super().log(type, _TOKEN_IN_PATH.sub("/r/<token>", text).replace("%", "%%"))


def make_study_server(db_path: str | Path, host: str = "127.0.0.1", port: int = 8000):
    """A threaded WSGI server for the study; port 0 picks a free port (see `.server_port`)."""
    return make_server(host, port, create_app(db_path), threaded=True, request_handler=_RedactingHandler)
