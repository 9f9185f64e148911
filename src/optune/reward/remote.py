"""The `remote` reward backend: a reward model served over HTTP, on another GPU or another machine.

What is posted depends on reward.route (the wire formats are in docs/rewards.md):
  classify  vLLM's POST URL/classify  {"model", "messages", "use_activation": false} -> data[0].probs[0]
  pooling   vLLM's POST URL/pooling   {"model", "messages", "task": "classify", "use_activation": false}
            -> data[0].data
  optune    the minimal protocol, POST URL/rewards  {"model", "items": [{"id", "prompt", "response",
            "messages"}, ...]} -> {"scores": [...]}, reward.batch_size items per request

The conversation (earlier turns, prompt, response) travels as chat messages, so the server renders it with
the reward model's own chat template, as the hf backend does in this process; with use_activation off
vLLM returns the raw head output, which is what the hf backend scores. vLLM's chat routes take one
conversation per request, so reward.concurrency requests are kept in flight and vLLM batches them.
Requests go through optune.endpoint (timeouts, retries, one-line errors); a reply without exactly one
finite number per response is an error naming the URL and the prompt, never a score of 0.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from optune.choices import RewardRoute
from optune.endpoint import Endpoint, check_key_env, check_url, run_bounded
from optune.errors import UserError
from optune.prompt import Prompt
from optune.reward.config import RewardConfig

ROUTES = {RewardRoute.CLASSIFY: "/classify", RewardRoute.POOLING: "/pooling", RewardRoute.OPTUNE: "/rewards"}


def conversation(prompt: Prompt, response: str) -> list[dict]:
    """Chat messages of one scored exchange: earlier turns, the prompt, the response."""
    return [*prompt.messages(), {"role": "assistant", "content": response}]


def _short(reply) -> str:
    text = json.dumps(reply) if not isinstance(reply, (bytes, str)) else repr(reply)
    return text[:200]


class RemoteReward:
    """Scores from a reward server: vLLM's /classify or /pooling, or the minimal protocol at /rewards."""

    def __init__(self, cfg: RewardConfig, sleep: Callable[[float], None] = time.sleep):
        self.cfg = cfg
        self.url = check_url(cfg.url, "reward.url") + ROUTES[RewardRoute(cfg.route)]
        check_key_env(cfg.api_key_env, "reward.api_key_env")
        self.endpoint = Endpoint("reward server", cfg.api_key_env, cfg.timeout_s, cfg.max_retries, sleep=sleep)

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        n = len(responses)
        if self.cfg.route == "optune":
            size = self.cfg.batch_size
            calls = [partial(self._score_batch, prompts[s:s + size], responses[s:s + size]) for s in range(0, n, size)]
        else:
            calls = [partial(self._score_one, prompts[i], responses[i]) for i in range(n)]
        results, error = run_bounded(calls, self.cfg.concurrency)
        if error is not None:
            raise error
        return [s for k in range(len(calls)) for s in results[k]]

    def _body(self, extra: dict) -> dict:
        return ({"model": self.cfg.model} if self.cfg.model else {}) | extra

    def _score_one(self, prompt: Prompt, response: str) -> list[float]:
        body = self._body({"messages": conversation(prompt, response), "use_activation": False})
        if self.cfg.route == "pooling":
            body["task"] = "classify"
        reply: Any = self.endpoint.post_json(self.url, body, expected="JSON")  # its shape is checked as it is read
        field = "probs" if self.cfg.route == "classify" else "data"
        try:
            value = reply["data"][0][field]
        except (KeyError, IndexError, TypeError):
            raise UserError(f"reward server at {self.url} sent no data[0].{field} for prompt {prompt.id!r}: "
                            f"{_short(reply)}") from None
        if isinstance(value, list):
            if len(value) != 1:
                raise UserError(f"reward server at {self.url} sent {len(value)} numbers for one response of prompt "
                                f"{prompt.id!r}; a reward model has exactly one output (a sequence classifier "
                                "with num_labels=1)")
            value = value[0]
        return [self._number(value, prompt)]

    def _score_batch(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        items = [{"id": p.id, "prompt": p.text, "response": text, "messages": conversation(p, text)}
                 for p, text in zip(prompts, responses)]
        reply = self.endpoint.post_json(self.url, self._body({"items": items}), expected="JSON")
        scores = reply.get("scores") if isinstance(reply, dict) else None
        if not isinstance(scores, list):
            raise UserError(f"reward server at {self.url} sent no \"scores\" list for the batch starting at prompt "
                            f"{prompts[0].id!r}: {_short(reply)}")
        if len(scores) != len(items):
            raise UserError(f"reward server at {self.url} sent {len(scores)} scores for {len(items)} responses "
                            f"(batch starting at prompt {prompts[0].id!r})")
        return [self._number(value, prompt) for value, prompt in zip(scores, prompts)]

    def _number(self, value, prompt: Prompt) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok:
            raise UserError(f"reward server at {self.url} sent {value!r} as the score of a response to prompt "
                            f"{prompt.id!r}; expected a finite number")
        return float(value)
