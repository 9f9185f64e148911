"""`optune reward serve`: the remote backend's minimal protocol (docs/rewards.md) in front of any reward backend.

    POST /rewards  {"model"?: str, "items": [{"id", "prompt", "response", "messages"?}, ...]}
                   -> 200 {"scores": [float, ...]}   (one per item, in order)
    GET  /health   -> 200 {"status": "ok"}

It is the reference implementation of the protocol and a way to put an optune reward model (or any
`hf` checkpoint) on another GPU or machine. Built on the standard library's ThreadingHTTPServer; one
model serves every connection, so batches are scored one at a time. With an API key variable, a
request without that Bearer token gets 401. A malformed request gets 400, a failure while scoring 500,
each with {"error": one line}. It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import hmac
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from optune.errors import UserError
from optune.prompt import Prompt


def _line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def prompts_from_items(items) -> tuple[list[Prompt], list[str]]:
    """Protocol items -> (prompts, responses); a ValueError names the first bad item."""
    if not isinstance(items, list) or not items:
        raise ValueError('"items" must be a non-empty list')
    prompts, responses = [], []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("prompt"), str) or \
                not isinstance(item.get("response"), str):
            raise ValueError(f'item {i} needs string fields "prompt" and "response"')
        history = item.get("messages", [])[:-2] if isinstance(item.get("messages"), list) else []
        prompts.append(Prompt(id=str(item.get("id", i)), text=item["prompt"], history=history))
        responses.append(item["response"])
    return prompts, responses


class RewardServer:
    """The protocol over `backend` (anything with score(prompts, responses)) on host:port (0: any free port)."""

    def __init__(self, backend, host: str = "127.0.0.1", port: int = 0, api_key_env: str | None = None):
        if api_key_env and not os.environ.get(api_key_env):
            raise UserError(f"--api-key-env names {api_key_env}, which is not set in the environment")
        self.backend = backend
        self.api_key_env = api_key_env
        self.requests = 0
        self._lock = threading.Lock()
        try:
            self.httpd = ThreadingHTTPServer((host, port), self._handler())
        except OSError as err:
            raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RewardServer:
        """Serve in a background thread (tests, notebooks); `close` stops it."""
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def authorized(self, header: str | None) -> bool:
        if not self.api_key_env:
            return True
        expected = f"Bearer {os.environ.get(self.api_key_env, '')}"
        return hmac.compare_digest((header or "").encode(), expected.encode())

    def score(self, body) -> list[float]:
        prompts, responses = prompts_from_items(body.get("items") if isinstance(body, dict) else None)
        with self._lock:
            self.requests += 1
            return [float(s) for s in self.backend.score(prompts, responses)]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/health":
                    self._send(200, {"status": "ok"})
                else:
                    self._send(404, {"error": f"no route {self.path}; POST /rewards, GET /health"})

            def do_POST(self):
                if self.path != "/rewards":
                    return self._send(404, {"error": f"no route {self.path}; POST /rewards"})
                if not server.authorized(self.headers.get("Authorization")):
                    return self._send(401, {"error": "missing or wrong API key"})
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                    scores = server.score(body)
                except (ValueError, UserError) as err:
                    return self._send(400, {"error": _line(err)})
                except Exception as err:  # the client gets one line; the server keeps serving
                    return self._send(500, {"error": f"{type(err).__name__}: {_line(err)}"})
                self._send(200, {"scores": scores})

            def log_message(self, *args):
                pass  # one line per request would drown the caller's own output

        return Handler
