"""JSON over HTTP to the servers optune talks to: the LLM judge, a remote reward model, an LLM rating rewards.

One client for all of them, so they fail the same way. Every request has a timeout. Transient failures
(connection refused, a timeout, a dropped connection, 429, 5xx) are retried with exponential backoff,
honouring Retry-After; permanent ones (401/403: the key; other 4xx: the request) stop at once. Every
failure reaches the user as one line naming the URL (an `EndpointError`, a UserError), never a
traceback and never a hang. Each retry is logged as it happens, one line on stderr: the attempt, the wait
and the cause. The API key is read from the named environment variable at request time,
so it is never part of a config, a cache, an output or a message.

`run_bounded` runs many requests with at most `concurrency` in flight and starts no new one after the
first failure.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

from optune.errors import UserError

T = TypeVar("T")


class EndpointError(UserError):
    """A server failed in a way retrying will not fix (or retries ran out)."""


class _Retryable(Exception):
    def __init__(self, message: str, wait_s: float | None = None):
        super().__init__(message)
        self.wait_s = wait_s


class _Stopped(Exception):
    """A request not started because another one already failed."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def check_url(url: str | None, setting: str) -> str:
    """An http(s) URL with a host, or one clear error naming the setting that holds it."""
    parsed = urllib.parse.urlparse(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UserError(f"{setting} must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8000; "
                        f"got {url!r}")
    try:
        parsed.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise UserError(f"{setting} has a malformed port: {url!r}") from None
    return (url or "").rstrip("/")


def check_key_env(api_key_env: str | None, setting: str) -> None:
    """A named key variable must be set: a missing key is found before any request, not as a 401 later."""
    if api_key_env and not os.environ.get(api_key_env):
        raise UserError(f"{setting} names the environment variable {api_key_env}, which is not set; "
                        f"export it (the key is read from there only) or set {setting} to null")


class Endpoint:
    """POST JSON, get bytes: timeouts, retries with backoff and one-line errors.

    `label` says who the server is in every message ("judge", "reward server"); `error` is the
    UserError subclass raised, for callers that catch their own.
    """

    def __init__(self, label: str, api_key_env: str | None = None, timeout_s: float = 120.0,
                 max_retries: int = 5, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 error: type[UserError] = EndpointError, sleep: Callable[[float], None] = time.sleep,
                 log: Callable[[str], None] | None = None):
        self.label = label
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.error = error
        self._sleep = sleep
        self._log = log or _stderr

    def post(self, url: str, body: dict) -> bytes:
        """The reply body of a 2xx answer, after retrying transient failures."""
        for attempt in range(self.max_retries + 1):
            try:
                return self._post_once(url, body)
            except _Retryable as err:
                if attempt == self.max_retries:
                    raise self.error(f"{err} (gave up after {attempt + 1} attempts)") from None
                delay = max(min(self.max_backoff_s, self.backoff_s * 2**attempt), err.wait_s or 0.0)
                self._log(f"optune: {self.label}: attempt {attempt + 1} of {self.max_retries + 1} failed: {err}; "
                          f"retrying in {delay:g} s")
                self._sleep(delay)
        raise AssertionError("unreachable")

    def post_json(self, url: str, body: dict, expected: str) -> object:
        """`post`, then the reply parsed as JSON; anything else is an error saying what was `expected`."""
        raw = self.post(url, body)
        try:
            return json.loads(raw)
        except ValueError:
            raise self.error(f"{self.label} at {url} sent a reply that is not {expected}: {raw[:200]!r}") from None

    def _post_once(self, url: str, body: dict) -> bytes:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as err:
            raise self._http_error(err, url) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", None) or err
            if isinstance(reason, TimeoutError):
                reason = f"no reply within {self.timeout_s:g} s"
            elif isinstance(reason, http.client.HTTPException):
                reason = f"broken HTTP reply ({type(reason).__name__} {reason})".replace(" )", ")")
            raise _Retryable(f"cannot reach {self.label} at {url}: {reason}") from None
        except ValueError as err:  # http.client.InvalidURL and friends: the URL itself is wrong
            raise self.error(f"{self.label} URL {url} is malformed: {err}") from None

    def _http_error(self, err: urllib.error.HTTPError, url: str) -> Exception:
        try:
            detail = err.read()[:200].decode("utf-8", "replace").strip()
        except (OSError, http.client.HTTPException):
            detail = ""
        if err.code in (401, 403):
            if not self.api_key_env:
                return self.error(f"{self.label} at {url} refused the request (HTTP {err.code}): it wants an API "
                                  "key; name the environment variable that holds it in the api_key_env setting")
            return self.error(f"{self.label} at {url} refused the API key (HTTP {err.code}); set the environment "
                              f"variable {self.api_key_env} to a valid key")
        if err.code == 429 or err.code >= 500:
            retry_after = err.headers.get("Retry-After") if err.headers else None
            try:
                wait_s = float(retry_after) if retry_after else None
            except ValueError:
                wait_s = None
            label = "rate limited" if err.code == 429 else "server error"
            return _Retryable(f"{self.label} at {url}: {label} (HTTP {err.code}) {detail}", wait_s)
        return self.error(f"{self.label} at {url} rejected the request (HTTP {err.code}): {detail}")


def chat_content(endpoint: Endpoint, base_url: str, body: dict) -> str:
    """The assistant text of an OpenAI-compatible chat completion (POST base_url/chat/completions)."""
    url = base_url.rstrip("/") + "/chat/completions"
    raw = endpoint.post(url, body)
    try:
        content = json.loads(raw)["choices"][0]["message"].get("content")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise endpoint.error(f"{endpoint.label} at {url} sent a reply that is not a chat completion: "
                             f"{raw[:200]!r}") from None
    return content or ""


def run_bounded(calls: Sequence[Callable[[], T]], concurrency: int,
                progress: Callable[[int, int], None] | None = None) -> tuple[dict[int, T], BaseException | None]:
    """Run `calls` with at most `concurrency` in flight -> ({index: result}, first error or None).

    After the first failure no new call starts; those in flight finish (each has its own timeout),
    so the results hold everything that succeeded.
    """
    results: dict[int, T] = {}
    stop = threading.Event()

    def guarded(call: Callable[[], T]) -> T:
        if stop.is_set():
            raise _Stopped()
        try:
            return call()
        except BaseException:
            stop.set()
            raise

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = {pool.submit(guarded, call): i for i, call in enumerate(calls)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    if fut.exception() is None:
                        results[futures[fut]] = fut.result()
                if progress and not stop.is_set():
                    progress(len(results), len(calls))
        except BaseException:  # Ctrl-C or SIGTERM in this thread: start nothing more, drop what is queued
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    errors = [f.exception() for f in futures if f.exception() and not isinstance(f.exception(), _Stopped)]
    return results, (errors[0] if errors else None)
