"""The study server's log: one access line per request and one line per error, never a rater token.

A token is the rater's password and sits in the URL (`/r/TOKEN/...`), so nothing dynamic from a
request is logged as it came. Paths are rebuilt from a short list of the page's own segments
(`/r/<token>/rate`); anything else, whatever its case, encoding or position (`/R/TOKEN`, `/r//TOKEN`,
`/r/./TOKEN`), becomes a placeholder, and query strings are dropped. Errors are logged as the
redacted path and the exception type; the traceback (code locations, and the message with anything
path- or token-like removed) only with `--debug`. The same redaction is applied to every record
that reaches the handler, including waitress's own (it names request paths in a few messages).
"""

from __future__ import annotations

import logging
import re
import sys
import time
import traceback
from typing import TextIO

LOGGER_NAME = "optune.study"
log = logging.getLogger(LOGGER_NAME)

# Every path segment the page itself uses; all others are replaced.
SAFE_SEGMENTS = frozenset({"", ".", "..", "r", "item", "rate", "static", "study.css", "keys.js", "favicon.ico",
                           "robots.txt"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"})
MAX_SEGMENTS = 8
_PATHLIKE = re.compile(r"/[^\s\"'<>]*")
_TOKENLIKE = re.compile(r"(?:[A-Za-z0-9_-]|%[0-9A-Fa-f]{2}){20,}")


def redact_path(path: str) -> str:
    """The path with every segment that is not one of the page's own replaced (`/r/<token>/item`),
    and a query string, if any, shown only as `?<redacted>`."""
    path, question, query = path.partition("?")
    parts = path.split("/")
    out = []
    for i, part in enumerate(parts[:MAX_SEGMENTS]):
        if part in SAFE_SEGMENTS:
            out.append(part)
        else:
            out.append("<token>" if i > 0 and parts[i - 1] == "r" else "<redacted>")
    if len(parts) > MAX_SEGMENTS:
        out.append("...")
    return "/".join(out) + ("?<redacted>" if query else question)


def scrub(text: str) -> str:
    """Free text (an exception message, a library's log line) with path- and token-like parts replaced."""
    text = _PATHLIKE.sub(lambda m: redact_path(m.group(0)), text)
    return _TOKENLIKE.sub("<redacted>", text)


def request_line(environ: dict) -> str:
    """`METHOD /redacted/path` for a WSGI request (a query string shows only as `?<redacted>`)."""
    method = environ.get("REQUEST_METHOD", "")
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    query = "?<redacted>" if environ.get("QUERY_STRING") else ""
    return f"{method if method in METHODS else 'OTHER'} {redact_path(path.replace('?', '%3F'))}{query}"


def safe_traceback(exc: BaseException) -> str:
    """The traceback of `exc` (and what caused it): code locations as they are, messages scrubbed."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts = []
    for e in reversed(chain):
        frames = "".join(traceback.format_tb(e.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{frames}{type(e).__name__}: {scrub(str(e))}")
    return "\nDuring handling of the above exception, another one followed:\n".join(parts)


class RedactFilter(logging.Filter):
    """Rewrites each record before it is written: message scrubbed, exception reduced to its type
    (or, with `debug`, to `safe_traceback`), so no formatter ever sees the raw text."""

    def __init__(self, debug: bool = False):
        super().__init__()
        self.debug = debug

    def filter(self, record: logging.LogRecord) -> bool:
        message = scrub(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message += f"\n{safe_traceback(exc)}" if self.debug else f" ({type(exc).__name__})"
        record.msg, record.args = message, None
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def configure(stream: TextIO | None = None, debug: bool = False) -> logging.Handler:
    """Send our log and waitress's to `stream` (default stderr) through the redacting filter.

    Waitress's INFO lines ("Client disconnected while serving PATH") and its queue-depth warnings
    (routine under a burst of raters) are left out.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(RedactFilter(debug))
    for name, level in ((LOGGER_NAME, logging.INFO), ("waitress", logging.WARNING), ("waitress.queue", logging.ERROR)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler] if name != "waitress.queue" else []
        logger.setLevel(level)
        logger.propagate = name == "waitress.queue"
    return handler


def log_error(environ: dict, exc: BaseException) -> None:
    """One line for a request that failed: redacted request and exception type (traceback with --debug)."""
    log.error("error on %s", request_line(environ), exc_info=(type(exc), exc, exc.__traceback__))


class AccessLog:
    """WSGI middleware: one line per request, and a last guard so no exception reaches waitress
    (whose own error line names the raw path)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        status = ["-"]

        def recording_start_response(code, headers, exc_info=None):
            status[0] = code.split(" ", 1)[0]
            return start_response(code, headers, exc_info)

        try:
            body = self.app(environ, recording_start_response)
        except Exception as exc:  # Flask answers its own errors; this is the backstop
            log_error(environ, exc)
            status[0] = "500"
            start_response("500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")],
                           sys.exc_info())
            body = [b"Internal error. Please try again in a moment.\n"]
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info('%s "%s" %s %.0fms', environ.get("REMOTE_ADDR", "-"), request_line(environ), status[0], elapsed_ms)
        return body
