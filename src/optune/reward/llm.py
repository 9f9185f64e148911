"""The `llm` reward backend: an LLM rates each response from 1 to 10 (RLAIF; TRL's `judge=`), pointwise.

The prompt is the paper's judge prompt (Table 6, optune.eval.rating) for a single answer, the way
MT-Bench grades single answers: the same criteria and 1-10 scale, one score on the first line, an
explanation after it. Earlier turns of a multi-turn prompt are shown above the question. The reply's
first line must hold exactly one number in [1, 10] ("8", "Score: 8/10" and "[[8]]" all read as 8);
anything else is asked again (reward.parse_retries times, at temperature >= RETRY_TEMPERATURE so the
answer can change) and then stops the run with the reply shown: a rating is never guessed or zeroed.

Requests go through the judge's client (optune.endpoint: timeouts, retries, the key read from the
environment at request time) and its reply cache (optune.store.judge_cache), keyed by everything that
changes the answer, so a rerun asks nothing twice. The rating is the reward as is (1-10): set
loss.beta2 to that scale (docs/rewards.md).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from optune.endpoint import Endpoint, chat_content, check_key_env, check_url, run_bounded
from optune.errors import UserError
from optune.prompt import Prompt
from optune.reward.config import RewardConfig
from optune.store.judge_cache import JudgmentCache, cache_key

# Bump when the prompt text changes, so cached ratings of the old prompt are not reused.
PROMPT_VERSION = "pointwise-v1"

SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of the answer."

USER_TEMPLATE = (
    "{context}[Question]\n{question}\n\n"
    "[The Start of the Assistant's Answer]\n{answer}\n\n[The End of the Assistant's Answer]\n\n"
    "We would like to request your feedback on the performance of an AI assistant in response to the "
    "user question displayed above.\n"
    "Please rate the helpfulness, relevance, accuracy, and level of details of the response. The "
    "assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better "
    "overall performance.\n"
    "Please first output a single line containing only the score, a number from 1 to 10. In the "
    "subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any "
    "potential bias."
)

# What constrained decoding forces: the rating, then optionally one line of explanation.
RATING_LINE_REGEX = r"(10|[1-9])(\n[^\n]{0,400})?"

# Retries of an unparseable reply sample at least this hot: at temperature 0 they would repeat it.
RETRY_TEMPERATURE = 0.7

_OUT_OF_TEN = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out\s+of)\s*10(?!\d)", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)(?![\w]|\.\d)")


def messages(prompt: Prompt, response: str) -> list[dict]:
    """The rating request for one response (earlier turns of the conversation shown as context)."""
    turns = prompt.history
    context = ""
    if turns:
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in turns]
        context = "[Earlier Conversation]\n" + "\n".join(lines) + "\n\n"
    user = USER_TEMPLATE.format(context=context, question=prompt.text, answer=response)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_rating(reply: str | None) -> float | None:
    """The rating on the first non-empty line of a reply, or None unless it holds exactly one number in [1, 10]."""
    lines = [ln for ln in (reply or "").split("\n") if ln.strip()]
    if not lines:
        return None
    numbers = [float(m) for m in _NUMBER.findall(_OUT_OF_TEN.sub(r"\1", lines[0]))]
    if len(numbers) != 1 or not 1.0 <= numbers[0] <= 10.0:
        return None
    return numbers[0]


class LLMReward:
    """Ratings from an OpenAI-compatible chat endpoint, one request per response, cached."""

    def __init__(self, cfg: RewardConfig, sleep: Callable[[float], None] = time.sleep):
        if not cfg.model:
            raise UserError("reward.backend llm needs reward.model (the model's name on the server)")
        self.cfg = cfg
        self.base_url = check_url(cfg.url, "reward.url")
        check_key_env(cfg.api_key_env, "reward.api_key_env")
        self.endpoint = Endpoint("reward LLM", cfg.api_key_env, cfg.timeout_s, cfg.max_retries, sleep=sleep)
        self.cache = JudgmentCache(cfg.cache)
        self.rater_id = "|".join([PROMPT_VERSION, cfg.model, f"t={cfg.temperature}", f"max={cfg.max_tokens}",
                                  f"c={cfg.constrained}"])

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        calls = [partial(self._rate, p, text) for p, text in zip(prompts, responses)]
        results, error = run_bounded(calls, self.cfg.concurrency)
        if error is not None:
            if isinstance(error, UserError) and self.cache.path is not None:
                raise type(error)(f"{error}; the replies so far are cached in {self.cache.path}") from None
            raise error
        return [results[i] for i in range(len(calls))]

    def _rate(self, prompt: Prompt, response: str) -> float:
        chat = messages(prompt, response)
        for attempt in range(self.cfg.parse_retries + 1):
            reply = self._ask(chat, attempt)
            value = parse_rating(reply)
            if value is not None:
                return value
        raise UserError(
            f"reward LLM at {self.base_url} gave no 1-10 rating for prompt {prompt.id!r} in {attempt + 1} "
            f"tries (last reply: {reply[:120]!r}); a vLLM server can force one with "
            "reward.constrained=structured_outputs, or use a stronger model")

    def _ask(self, chat: list[dict], attempt: int) -> str:
        """The reply to one try, from the cache or the endpoint (then cached)."""
        key = cache_key(f"{self.rater_id}|try={attempt}", chat[1]["content"], "", "")
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        temperature = self.cfg.temperature if attempt == 0 else max(self.cfg.temperature, RETRY_TEMPERATURE)
        body: dict[str, Any] = {"model": self.cfg.model, "messages": chat, "max_tokens": self.cfg.max_tokens,
                "temperature": temperature}
        if self.cfg.constrained == "structured_outputs":
            body["structured_outputs"] = {"regex": RATING_LINE_REGEX}
        elif self.cfg.constrained == "guided_regex":
            body["guided_regex"] = RATING_LINE_REGEX
        reply = chat_content(self.endpoint, self.base_url, body)
        self.cache.put(key, reply, self.rater_id)
        return reply
