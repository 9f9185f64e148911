"""Reward backends: `score(prompts, responses) -> list[float]`, one finite number per response.

prompts are `Prompt`s (optune.prompt); a backend may use more of the prompt than its text (the verifiable
task reads the constraints among its fields). Backends are chosen by name from `BACKENDS`; the served ones
(`remote`: a reward model over HTTP, `llm`: an LLM's 1-10 rating) live in reward/remote.py and reward/llm.py,
`mix` (a weighted sum of named components) in reward/mix.py. A backend may also have
`score_parts(prompts, responses) -> (totals, {name: scores})` (the mix does): `scored_parts` returns both.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from pathlib import Path
from typing import Protocol

from optune.choices import LengthPenalty, RewardBackendName
from optune.config import RewardConfig, callable_label, is_callable_label, label_name
from optune.errors import UserError
from optune.prompt import Prompt


class RewardBackend(Protocol):
    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        ...


class VerifiableReward:
    """The built-in instruction-following task: fraction of constraints met, plus a small closeness term."""

    def __init__(self, cfg: RewardConfig):
        from optune.tasks import verifiable

        self._reward = verifiable.reward

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        for p in prompts:
            if "constraints" not in p.fields:
                raise UserError(f"reward verifiable: prompt {p.id!r} has no constraints; use the built-in prompts")
        return [float(self._reward(p.record(), text)) for p, text in zip(prompts, responses)]


def load_function(spec: str):
    """"package.module:function" or "path/to/file.py:function" -> the function object."""
    if ":" not in spec:
        raise UserError(f"reward.function {spec!r} must look like module:function or file.py:function")
    target, name = spec.rsplit(":", 1)
    try:
        if target.endswith(".py"):
            if not Path(target).is_file():
                raise UserError(f"reward.function: file {target} does not exist")
            spec_obj = importlib.util.spec_from_file_location(Path(target).stem, target)
            module = importlib.util.module_from_spec(spec_obj)
            spec_obj.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ImportError as err:
        raise UserError(f"reward.function: cannot import {target}: {err}") from None
    except Exception as err:  # the user's module failed while running its top level
        raise UserError(f"reward.function: importing {target} raised {_describe(err)}") from err
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"reward.function: {target} has no function {name!r}")
    return fn


class CallableReward:
    """A user's Python function f(prompts: list[str], responses: list[str]) -> list[float].

    reward.function names it ("module:function"), or is the function itself when given through optune.run.
    """

    def __init__(self, cfg: RewardConfig):
        if callable(cfg.function):
            self.name, self.fn = label_name(callable_label(cfg.function)), cfg.function
            return
        if is_callable_label(cfg.function):
            raise UserError(f"reward.function: this run's reward was the Python function {label_name(cfg.function)}, "
                            "which config.yaml cannot hold; resume it from Python and pass the function again: "
                            "optune.run(resume=RUN_DIR, reward={'function': f}) (optune.dpo for a dpo run)")
        self.name = cfg.function
        self.fn = load_function(cfg.function)

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        try:
            scores = self.fn([p.text for p in prompts], list(responses))
        except Exception as err:  # a bug in the user's function: one line (the traceback with optune --debug)
            raise UserError(f"reward function {self.name} raised {_describe(err)}") from err
        try:
            return list(scores)
        except TypeError:
            raise UserError(f"reward function {self.name} returned {type(scores).__name__}, not a list of "
                            "numbers") from None


def _describe(err: BaseException) -> str:
    """`ValueError: message`, on one line (see the traceback with optune --debug)."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


class HFReward:
    """A sequence-classification reward model with its own tokenizer and chat template."""

    def __init__(self, cfg: RewardConfig):
        from optune.reward import model as reward_model

        self.cfg = cfg
        self.model, self.tokenizer, self.stats = reward_model.load_reward_model(cfg.model)
        self._score_texts = reward_model.score_texts

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        return self._score_texts(
            self.model, self.tokenizer, [p.text for p in prompts], list(responses),
            histories=[p.history for p in prompts], batch_size=self.cfg.batch_size, stats=self.stats,
        )


class LengthReward:
    """A length penalty by word count, no model: 0 at reward.target_words, minus the shortfall and/or excess
    (reward.length_penalty) as a fraction of the target. Alone it steers lengths; in a mix it is a floor or
    ceiling beside a quality reward (docs/rewards.md, Composite rewards)."""

    def __init__(self, cfg: RewardConfig):
        self.target = cfg.target_words
        self.penalty = LengthPenalty(cfg.length_penalty)

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        return [self._score(len(text.split())) for text in responses]

    def _score(self, words: int) -> float:
        short, long = max(0, self.target - words), max(0, words - self.target)
        miss = {LengthPenalty.SHORT: short, LengthPenalty.LONG: long, LengthPenalty.BOTH: short + long}[self.penalty]
        return -miss / self.target


def mix_reward(cfg: RewardConfig) -> RewardBackend:
    """A weighted sum of named components, each one of the other backends."""
    from optune.reward.mix import MixReward

    return MixReward(cfg, make=make_reward, check=check_scores)


def remote_reward(cfg: RewardConfig) -> RewardBackend:
    """A reward model served over HTTP (vLLM's /classify or /pooling, or the minimal protocol)."""
    from optune.reward.remote import RemoteReward

    return RemoteReward(cfg)


def llm_reward(cfg: RewardConfig) -> RewardBackend:
    """An LLM behind an OpenAI-compatible endpoint rates each response 1-10."""
    from optune.reward.llm import LLMReward

    return LLMReward(cfg)


# reward.backend -> factory(reward config)
BACKENDS = {RewardBackendName.VERIFIABLE: VerifiableReward, RewardBackendName.CALLABLE: CallableReward,
            RewardBackendName.HF: HFReward, RewardBackendName.REMOTE: remote_reward, RewardBackendName.LLM: llm_reward,
            RewardBackendName.LENGTH: LengthReward, RewardBackendName.MIX: mix_reward}


def make_reward(cfg: RewardConfig) -> RewardBackend:
    return BACKENDS[RewardBackendName(cfg.backend)](cfg)


def checked_score(backend: RewardBackend, prompts: list[Prompt], responses: list[str]) -> list[float]:
    """Score and insist on one finite float per response: a broken reward must not poison training."""
    return scored_parts(backend, prompts, responses)[0]


def scored_parts(backend: RewardBackend, prompts: list[Prompt],
                 responses: list[str]) -> tuple[list[float], dict[str, list[float]] | None]:
    """(checked totals, {component name: its scores} or None): one scoring call, so a backend with parts (a
    mix) is not asked twice; None for a backend without `score_parts`."""
    score_parts = getattr(backend, "score_parts", None)
    if score_parts is None:
        return check_scores(backend.score(prompts, responses), len(responses)), None
    totals, parts = score_parts(prompts, responses)
    return check_scores(totals, len(responses)), parts


def check_scores(scores, n: int, who: str = "the reward function") -> list[float]:
    """`scores` as n finite floats, else one line saying what `who` returned instead."""
    try:
        scores = [float(s) for s in scores]
    except (TypeError, ValueError):
        raise UserError(f"{who} returned something that is not a list of numbers") from None
    if len(scores) != n:
        raise UserError(f"{who} returned {len(scores)} scores for {n} responses")
    bad = [s for s in scores if not math.isfinite(s)]
    if bad:
        raise UserError(f"{who} returned a non-finite score ({bad[0]})")
    return scores
