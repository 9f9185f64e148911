"""LLM judge over any OpenAI-compatible chat-completions endpoint (GPT-4 in the paper; vLLM locally).

Each pair is asked in both orders with the Table 6 prompt. Requests run in a bounded thread pool,
transient failures (connection refused, timeouts, 429, 5xx) are retried with exponential backoff
(honouring Retry-After), permanent ones (401, 403, 404, 400) stop at once with a one-line reason.
Every reply is cached before the next is counted, so a failed run keeps its partial results and a
rerun resumes. The API key is read from an environment variable at request time and is never
stored in the config, the cache, the outputs or an error message.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass

from optune.errors import UserError
from optune.eval import rating
from optune.eval.judge_cache import JudgmentCache, cache_key
from optune.eval.pairwise import outcome_from_scores

CONSTRAINED_MODES = ("none", "structured_outputs", "guided_regex")


class JudgeError(UserError):
    """The judge endpoint failed in a way retrying will not fix (or retries ran out)."""


@dataclass
class LLMJudgeConfig:
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    max_tokens: int = 256
    temperature: float = 0.0
    concurrency: int = 4
    max_retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    timeout_s: float = 120.0
    # "structured_outputs" (vLLM >= 0.10) or "guided_regex" (older vLLM) force the score line.
    constrained: str = "none"

    def validate(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise UserError(f"judge base URL must start with http:// or https://, got {self.base_url!r}")
        if not self.model:
            raise UserError("judge model name is empty")
        if self.constrained not in CONSTRAINED_MODES:
            raise UserError(f"judge constrained mode must be one of {CONSTRAINED_MODES}, got {self.constrained!r}")
        if self.concurrency < 1 or self.max_retries < 0 or self.max_tokens < 4:
            raise UserError("judge concurrency must be >= 1, retries >= 0 and max tokens >= 4")

    def public(self) -> dict:
        """The settings as recorded in outputs: the env var's name only, never its value."""
        return asdict(self)


class _Stopped(Exception):
    """A request not started because another one already failed for good."""


class _Retryable(Exception):
    def __init__(self, message: str, wait_s: float | None = None):
        super().__init__(message)
        self.wait_s = wait_s


class LLMJudge:
    """Pairwise judge: `compare(records, answers_a, answers_b)` returns one judgment dict per prompt."""

    def __init__(self, config: LLMJudgeConfig, cache: JudgmentCache, sleep: Callable[[float], None] = time.sleep):
        config.validate()
        self.config = config
        self.cache = cache
        self._sleep = sleep
        self.judge_id = "|".join(
            [rating.PROMPT_VERSION, config.model, f"t={config.temperature}", f"max={config.max_tokens}",
             f"c={config.constrained}"])

    def ask(self, question: str, answer_1: str, answer_2: str) -> str:
        """The judge's reply for one order, from the cache or the endpoint (then cached)."""
        key = cache_key(self.judge_id, question, answer_1, answer_2)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        body = {"model": self.config.model, "messages": rating.messages(question, answer_1, answer_2),
                "max_tokens": self.config.max_tokens, "temperature": self.config.temperature}
        if self.config.constrained == "structured_outputs":
            body["structured_outputs"] = {"regex": rating.SCORE_LINE_REGEX}
        elif self.config.constrained == "guided_regex":
            body["guided_regex"] = rating.SCORE_LINE_REGEX
        reply = self._post_with_retries(body)
        self.cache.put(key, reply, self.judge_id)
        return reply

    def _post_with_retries(self, body: dict) -> str:
        for attempt in range(self.config.max_retries + 1):
            try:
                return self._post(body)
            except _Retryable as err:
                if attempt == self.config.max_retries:
                    raise JudgeError(f"{err} (gave up after {attempt + 1} attempts)") from None
                delay = min(self.config.max_backoff_s, self.config.backoff_s * 2**attempt)
                self._sleep(max(delay, err.wait_s or 0.0))
        raise AssertionError("unreachable")

    def _post(self, body: dict) -> str:
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            raise self._http_error(err, url) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise _Retryable(f"cannot reach judge at {url}: {reason}") from None
        try:
            content = json.loads(raw)["choices"][0]["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise JudgeError(f"judge at {url} sent a reply that is not a chat completion: {raw[:200]!r}") from None
        return content or ""

    def _http_error(self, err: urllib.error.HTTPError, url: str) -> Exception:
        detail = err.read()[:200].decode("utf-8", "replace").strip()
        if err.code in (401, 403):
            return JudgeError(f"judge at {url} refused the API key (HTTP {err.code}); set the environment "
                              f"variable {self.config.api_key_env} to a valid key")
        if err.code == 429 or err.code >= 500:
            retry_after = err.headers.get("Retry-After") if err.headers else None
            try:
                wait_s = float(retry_after) if retry_after else None
            except ValueError:
                wait_s = None
            label = "rate limited" if err.code == 429 else "server error"
            return _Retryable(f"judge at {url}: {label} (HTTP {err.code}) {detail}", wait_s)
        return JudgeError(f"judge at {url} rejected the request (HTTP {err.code}): {detail}")

    def compare(self, records: list[dict], answers_a: list[str], answers_b: list[str],
                progress: Callable[[int, int], None] | None = None) -> list[dict]:
        """Judge system A against system B on every record, both orders; A is the evaluated system."""
        tasks = []
        for i, rec in enumerate(records):
            tasks.append((i, 0, rec["prompt"], answers_a[i], answers_b[i]))
            tasks.append((i, 1, rec["prompt"], answers_b[i], answers_a[i]))
        replies = self._run(tasks, progress)
        return [self._judgment(rec, replies[(i, 0)], replies[(i, 1)]) for i, rec in enumerate(records)]

    def _run(self, tasks: list[tuple], progress: Callable[[int, int], None] | None) -> dict:
        """Ask all tasks in a bounded pool; after the first permanent failure no new request starts."""
        replies: dict[tuple[int, int], str] = {}
        stop = threading.Event()

        def guarded(q: str, x: str, y: str) -> str:
            if stop.is_set():
                raise _Stopped()
            try:
                return self.ask(q, x, y)
            except BaseException:
                stop.set()
                raise

        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            futures = {pool.submit(guarded, q, x, y): (i, o) for i, o, q, x, y in tasks}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    if fut.exception() is None:
                        replies[futures[fut]] = fut.result()
                if progress and not stop.is_set():
                    progress(len(replies), len(tasks))
            errors = [f.exception() for f in futures if f.exception() and not isinstance(f.exception(), _Stopped)]
        if errors and not isinstance(errors[0], JudgeError):
            raise errors[0]  # a bug, not an endpoint failure: keep its traceback
        if errors:
            raise JudgeError(f"{errors[0]}; {len(replies)} of {len(tasks)} judge requests are done and cached in "
                             f"{self.cache.path}; rerun to resume") from None
        return replies

    @staticmethod
    def _judgment(record: dict, reply_1: str, reply_2: str) -> dict:
        first_scores = rating.parse_scores(reply_1)   # (A, B)
        second_scores = rating.parse_scores(reply_2)  # (B, A)
        first = outcome_from_scores(*first_scores) if first_scores else None
        second = outcome_from_scores(second_scores[1], second_scores[0]) if second_scores else None
        return {"id": record["id"], "first": first, "second": second,
                "scores_first": list(first_scores) if first_scores else None,
                "scores_second": list(second_scores) if second_scores else None,
                "reply_first": reply_1, "reply_second": reply_2}
