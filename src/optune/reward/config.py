"""The run's `reward:` section: one backend's settings, or a mix of named, weighted components.

`RewardSettings` holds every backend's keys (each read only by the backends its docstring names);
`RewardConfig` (a run's reward section) adds `components`, and `RewardComponent` (one term of a mix) adds
its name, weight and standardize, so a component reads like a `reward:` section with three more keys.
`validate_reward` checks a section (and each component as its own backend's settings). optune.config.run
re-exports all of it; the backends are in optune.reward.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from optune.choices import Constrained, LengthPenalty, RewardBackendName, RewardRoute
from optune.config.schema import Range, check_ranges
from optune.errors import UserError


@dataclass
class RewardSettings:
    """One reward backend's settings: a run's `reward:` section (RewardConfig adds `components`) and each
    component of a mix (RewardComponent adds its name, weight and standardize)."""

    backend: RewardBackendName = RewardBackendName.VERIFIABLE
    """Reward backend: "verifiable" (built-in task), "hf" (sequence-classification reward model in this process),
    "callable" (a Python function), "remote" (a reward model served over HTTP), "llm" (an LLM rates each
    response 1-10), "length" (a word-count penalty, no model) or "mix" (a weighted sum of reward.components);
    see docs/rewards.md."""
    model: str | None = None
    """For "hf": path of the reward model checkpoint (its own tokenizer and chat template). For "remote" and
    "llm": the model's name on the server (vLLM's --served-model-name); "remote" may leave it null (the
    server's only model)."""
    function: str | Callable[..., Any] | None = None
    """For "callable": "module:function" or "path/to/file.py:function", called as f(prompts, responses) -> one
    number per response; a function with a required third parameter, or one named histories, also gets the
    histories (per prompt, the list of {"role", "content"} messages before the request). From Python (optune.run)
    the function itself; config.yaml then records "<python callable module.name>"."""
    batch_size: int = 16
    """Responses scored per forward batch (hf) or per HTTP request (remote with route optune)."""
    url: str | None = None
    """For "remote": the server's base URL, e.g. http://127.0.0.1:8000 (the route's path is appended). For
    "llm": an OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 (/chat/completions is appended)."""
    route: RewardRoute = RewardRoute.CLASSIFY
    """For "remote": "classify" (vLLM's POST /classify), "pooling" (vLLM's POST /pooling), both one
    conversation per request, or "optune" (the minimal JSON protocol of docs/rewards.md, POST /rewards,
    batch_size responses per request)."""
    api_key_env: str | None = None
    """For "remote" and "llm": name of the environment variable holding the server's API key, sent as a Bearer
    token and never stored; null: no key. Naming a variable that is not set is an error."""
    timeout_s: float = 120.0
    """For "remote" and "llm": seconds one request may take before it counts as failed (and is retried). For
    "callable": seconds one call of the function may take before the run stops (the call runs in a thread,
    which Python cannot kill: a hung function's thread runs on until the process ends)."""
    max_retries: int = 5
    """For "remote" and "llm": retries of a failed request (connection refused, timeout, HTTP 429 or 5xx) with
    exponential backoff from 1 s (at most 60 s, or what Retry-After asks); other failures stop at once."""
    concurrency: int = 4
    """For "remote" and "llm": requests in flight at once."""
    max_tokens: int = 256
    """For "llm": reply length limit in tokens (the rating comes first, an explanation may follow)."""
    temperature: float = 0.0
    """For "llm": sampling temperature of the rating; an unparseable reply is asked again at least at 0.7."""
    constrained: Constrained = Constrained.NONE
    """For "llm": "structured_outputs" (vLLM >= 0.10) or "guided_regex" (older vLLM) force a well-formed rating
    line by constrained decoding; "none" for other servers."""
    parse_retries: int = 2
    """For "llm": times an unparseable reply is asked again before the run stops and shows it."""
    cache: str | None = None
    """For "llm": JSONL file of the LLM's replies (the eval judge's cache format), reused by later runs and
    reruns so nothing is asked twice; null: kept in memory for this run only."""
    target_words: int = 50
    """For "length": the response length in words (whitespace-separated) that scores 0; see length_penalty."""
    answer_full_at: float = 1.0
    """For "verifiable": the answer factor (substance x freshness x topic, docs/verifiable-task.md) at which an
    answer counts as complete; the task reward uses min(1, answer / answer_full_at). Below 1, substance beyond
    that level earns nothing, so the constraints decide between two substantive answers; 1: the raw factor."""
    length_penalty: LengthPenalty = LengthPenalty.BOTH
    """For "length": which lengths lose reward, by their distance from target_words over target_words: "short"
    (a floor: -max(0, target - words) / target, in [-1, 0]), "long" (a ceiling: -max(0, words - target) / target)
    or "both" (-|words - target| / target)."""


@dataclass
class RewardComponent(RewardSettings):
    """One named, weighted term of a mix: the keys of one reward backend (inherited, so a component reads like a
    `reward:` section) plus its name, weight and standardize."""

    name: str = ""
    """The component's name (letters, digits, _ and -; unique in the mix): it names the component's score
    in responses.jsonl ("parts"), the export's score_chosen_<name> columns and the report."""
    weight: float = 1.0
    """Factor of the component's score in the mix's total (any finite number; negative subtracts it)."""
    standardize: bool = False
    """Use (score - mean) / std over each scored batch (std 0: all 0) instead of the raw score, so components
    on different scales weigh as their weights say; a response's total then depends on its batch."""


@dataclass
class RewardConfig(RewardSettings):
    """A run's `reward:` section: one backend, or backend "mix" and its components."""

    components: list[RewardComponent] = field(default_factory=list)
    """For "mix": the terms of the total sum(weight * score), each a mapping of name, weight, standardize and
    one backend's keys, e.g. [{name: task, backend: verifiable}, {name: length, backend: length, target_words:
    40, length_penalty: short, weight: 0.5}]. The raw score of each is stored per response. See docs/rewards.md."""
    missing_eos_penalty: float = 0.0
    """Subtracted from the score of every response that did not end with EOS (cut at generation.max_new_tokens),
    training and held-out alike (TRL's missing_eos_penalty): an unfinished answer is not a full answer; 0: off."""


def validate_reward(reward: RewardConfig, prefix: str = "reward.") -> None:
    """The reward section's own checks (a run's, and `optune eval --reward FILE.yaml`'s); `prefix` names the
    section in messages."""
    _validate_backend(reward, prefix)
    check_ranges(reward, {"missing_eos_penalty": Range(0)}, prefix=prefix)
    if reward.backend == RewardBackendName.MIX:
        _validate_mix(reward, prefix)
    elif reward.components:
        raise UserError(f"{prefix}components is set but {prefix}backend is {reward.backend}; set {prefix}backend=mix "
                        "to score with the components")


REWARD_RANGES = {"batch_size": Range(1), "target_words": Range(1), "timeout_s": Range(0, low_open=True),
                 "answer_full_at": Range(0, 1, low_open=True)}
"""Every reward backend's numeric keys, under reward (and under each of a mix's components)."""


def _validate_backend(reward: RewardSettings, prefix: str) -> None:
    """Checks of one backend's settings: a run's reward section or one component of a mix."""
    check_ranges(reward, REWARD_RANGES, prefix=prefix)
    if reward.backend == RewardBackendName.HF and not reward.model:
        raise UserError(f"{prefix}backend hf needs {prefix}model (path of the reward model)")
    if reward.backend == RewardBackendName.CALLABLE and not reward.function:
        raise UserError(f"{prefix}backend callable needs {prefix}function (module:function)")
    if callable(reward.function) and reward.backend != RewardBackendName.CALLABLE:
        raise UserError(f"{prefix}function is a Python function; it needs {prefix}backend callable, "
                        f"not {str(reward.backend)!r}")
    if reward.backend in (RewardBackendName.REMOTE, RewardBackendName.LLM):
        _validate_served_reward(reward, prefix)


def _validate_mix(reward: RewardConfig, prefix: str) -> None:
    """A mix: at least one component, names that can name columns and are unique, finite weights, no mix
    inside a mix, and each component valid as its backend's own settings."""
    if not reward.components:
        raise UserError(f"{prefix}backend mix needs {prefix}components: a list of at least one "
                        "{name, backend, weight, ...} (docs/rewards.md, Composite rewards)")
    seen: set[str] = set()
    for i, comp in enumerate(reward.components):
        where = f"{prefix}components[{i}]."
        if not re.fullmatch(r"[A-Za-z0-9_-]+", comp.name or ""):
            raise UserError(f"{where}name must be a non-empty name of letters, digits, _ and - (it names the "
                            f"component's score columns); got {comp.name!r}")
        if comp.name in seen:
            raise UserError(f"{prefix}components: the name {comp.name!r} is used twice; names must be unique")
        seen.add(comp.name)
        if comp.backend == RewardBackendName.MIX:
            raise UserError(f"{where}backend cannot be mix: a component is one backend (list a nested mix's "
                            "components in this mix, with their weights multiplied)")
        for f in dataclasses.fields(comp):
            value = getattr(comp, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"{where}{f.name} must be a finite number; got {value}")
        _validate_backend(comp, where)


SERVED_RANGES = {"concurrency": Range(1), "max_retries": Range(0), "parse_retries": Range(0),
                 "max_tokens": Range(4), "temperature": Range(0)}
"""The served reward backends' (remote, llm) numeric keys, under reward."""


def _validate_served_reward(reward: RewardSettings, prefix: str = "reward.") -> None:
    from optune.endpoint import check_url

    check_url(reward.url, f"{prefix}url")
    if reward.backend == RewardBackendName.LLM and not reward.model:
        raise UserError(f"{prefix}backend llm needs {prefix}model (the model's name on the server)")
    check_ranges(reward, SERVED_RANGES, prefix=prefix)
