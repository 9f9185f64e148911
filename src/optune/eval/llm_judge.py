"""LLM judge over any OpenAI-compatible chat-completions endpoint (GPT-4 in the paper; vLLM locally).

Each pair is asked in both orders with the Table 6 prompt. Requests run in a bounded thread pool,
transient failures (connection refused, timeouts, 429, 5xx) are retried with exponential backoff
(honouring Retry-After), permanent ones (401, 403, 404, 400) stop at once with a one-line reason
(optune.endpoint, the client the reward backends `remote` and `llm` share).
Every reply is cached before the next is counted, so a failed run keeps its partial results and a
rerun resumes. The API key is read from an environment variable at request time and is never
stored in the config, the cache, the outputs or an error message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from optune.choices import Constrained
from optune.config.schema import Range, check_ranges, choice
from optune.endpoint import Endpoint, chat_content, run_bounded
from optune.errors import UserError
from optune.eval import rating
from optune.eval.pairwise import outcome_from_scores
from optune.prompt import Prompt
from optune.store.judge_cache import JudgmentCache, cache_key


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
    constrained: Constrained = Constrained.NONE

    def public(self) -> dict:
        """The settings as recorded in outputs: the env var's name only, never its value."""
        return asdict(self)


JUDGE_RANGES = {"concurrency": Range(1), "max_retries": Range(0), "max_tokens": Range(4),
                "temperature": Range(0), "timeout_s": Range(0, low_open=True), "backoff_s": Range(0),
                "max_backoff_s": Range(0)}
"""The judge's numeric settings and the values each may take."""


def validate(config: LLMJudgeConfig) -> None:
    if not config.base_url.startswith(("http://", "https://")):
        raise UserError(f"judge base URL must start with http:// or https://, got {config.base_url!r}")
    if not config.model:
        raise UserError("judge model name is empty")
    check_ranges(config, JUDGE_RANGES, prefix="judge ")
    choice(config.constrained, Constrained, "judge constrained")


class LLMJudge:
    """Pairwise judge: `compare(prompts, answers_a, answers_b)` returns one judgment dict per prompt."""

    def __init__(self, config: LLMJudgeConfig, cache: JudgmentCache, sleep: Callable[[float], None] = time.sleep):
        validate(config)
        self.config = config
        self.cache = cache
        self.endpoint = Endpoint("judge", config.api_key_env, config.timeout_s, config.max_retries, config.backoff_s,
                                 config.max_backoff_s, error=JudgeError, sleep=sleep)
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
        reply = chat_content(self.endpoint, self.config.base_url, body)
        self.cache.put(key, reply, self.judge_id)
        return reply

    def compare(self, prompts: list[Prompt], answers_a: list[str], answers_b: list[str],
                progress: Callable[[int, int], None] | None = None) -> list[dict]:
        """Judge system A against system B on every prompt, both orders; A is the evaluated system."""
        tasks = []
        for i, p in enumerate(prompts):
            tasks.append((i, 0, p.text, answers_a[i], answers_b[i]))
            tasks.append((i, 1, p.text, answers_b[i], answers_a[i]))
        replies = self._run(tasks, progress)
        return [self._judgment(p, replies[(i, 0)], replies[(i, 1)]) for i, p in enumerate(prompts)]

    def _run(self, tasks: list[tuple], progress: Callable[[int, int], None] | None) -> dict:
        """Ask all tasks in a bounded pool; after the first permanent failure no new request starts."""
        calls = [lambda q=q, x=x, y=y: self.ask(q, x, y) for _, _, q, x, y in tasks]
        results, error = run_bounded(calls, self.config.concurrency, progress)
        if error is not None and not isinstance(error, JudgeError):
            raise error  # a bug, not an endpoint failure: keep its traceback
        if error is not None:
            raise JudgeError(f"{error}; {len(results)} of {len(tasks)} judge requests are done and cached in "
                             f"{self.cache.path}; rerun to resume") from None
        return {(tasks[k][0], tasks[k][1]): reply for k, reply in results.items()}

    @staticmethod
    def _judgment(prompt: Prompt, reply_1: str, reply_2: str) -> dict:
        first_scores = rating.parse_scores(reply_1)   # (A, B)
        second_scores = rating.parse_scores(reply_2)  # (B, A)
        first = outcome_from_scores(*first_scores) if first_scores else None
        second = outcome_from_scores(second_scores[1], second_scores[0]) if second_scores else None
        return {"id": prompt.id, "first": first, "second": second,
                "scores_first": list(first_scores) if first_scores else None,
                "scores_second": list(second_scores) if second_scores else None,
                "reply_first": reply_1, "reply_second": reply_2}
