"""`optune study serve`: the rating page on waitress, a production WSGI server (pure Python).

Why waitress: it is made for production (Werkzeug's server, used before, says of itself that it is
not), has no compiled parts, runs on every platform, and answers the study's load with room to spare
(docs/human-study.md has the measurements against the Werkzeug server). It reads each request
whole before the app sees it, within `MAX_BODY_BYTES`, so a rater's slow connection never holds a
worker thread and a large body is refused (413) without being stored.

Shutdown: Ctrl-C (SIGINT) and SIGTERM stop accepting requests, give running requests up to 5 s
to finish (waitress's task-dispatcher shutdown), and return. Every rating is committed before its
response is sent, so a stop loses nothing either way.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from optune.study import logs
from optune.study.app import MAX_FORM_BYTES, create_app

MAX_BODY_BYTES = 16 * 1024  # waitress refuses larger bodies itself; the app allows MAX_FORM_BYTES
MAX_HEADER_BYTES = 32 * 1024
DEFAULT_THREADS = 8
assert MAX_FORM_BYTES < MAX_BODY_BYTES


def make_server(db_path: str | Path, host: str = "127.0.0.1", port: int = 8000, *, threads: int = DEFAULT_THREADS,
                busy_timeout: float = 5.0):
    """A waitress server for one study file, listening but not yet serving (call `.run()`).

    Port 0 picks a free port; `urls(server)` says where it listens. Raises OSError when the address
    cannot be bound.
    """
    from waitress import create_server  # type: ignore[import-untyped]  # waitress ships no type information

    app = logs.AccessLog(create_app(db_path, busy_timeout=busy_timeout))
    return create_server(
        app, host=host, port=port, threads=threads,
        ident="",  # no Server header (waitress would name itself; nothing names a version)
        max_request_body_size=MAX_BODY_BYTES, max_request_header_size=MAX_HEADER_BYTES,
        expose_tracebacks=False, asyncore_use_poll=True,  # poll: no select() limit of 1024 sockets
        clear_untrusted_proxy_headers=True,
    )


def urls(server) -> list[str]:
    """`http://HOST:PORT/` for each socket the server listens on."""
    listen = getattr(server, "effective_listen", None) or [(server.effective_host, server.effective_port)]
    return [f"http://{f'[{h}]' if ':' in h else h}:{p}/" for h, p in listen]


def _stop(_signum, _frame):
    raise KeyboardInterrupt  # waitress's loop ends on it and shuts its workers down


def run(server) -> None:
    """Serve until Ctrl-C or SIGTERM, then shut down cleanly and close the listening socket(s)."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop) if main else None
    try:
        server.run()  # returns after KeyboardInterrupt/SystemExit, workers already stopped
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        server.close()
