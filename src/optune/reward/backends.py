"""Reward backends: `score(prompts, responses) -> list[float]`, one finite number per response.

prompts are `Prompt`s (optune.prompt); a backend may use more of the prompt than its text (the verifiable
task reads the constraints among its fields). Backends are chosen by name from `BACKENDS`; the served ones
(`remote`: a reward model over HTTP, `llm`: an LLM's 1-10 rating) live in reward/remote.py and reward/llm.py,
`mix` (a weighted sum of named components) in reward/mix.py, `callable` (a Python function) in
reward/function.py; every score is checked by reward/scores.py. A backend may also have
`score_parts(prompts, responses) -> (totals, {name: scores})` (the mix does): `scored_parts` returns both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from optune.choices import LengthPenalty, RewardBackendName
from optune.errors import UserError
from optune.prompt import Prompt
from optune.reward.config import RewardConfig
from optune.reward.function import CallableReward
from optune.reward.function import load_function as load_function  # re-exported: its home before function.py
from optune.reward.scores import check_scores, eos_penalized


class RewardBackend(Protocol):
    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        ...


class VerifiableReward:
    """The built-in instruction-following task: constraints met times whether the request is answered
    (optune.tasks.verifiable)."""

    def __init__(self, cfg: RewardConfig):
        from optune.tasks import verifiable

        self._reward = verifiable.reward
        self.answer_full_at = cfg.answer_full_at

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        for p in prompts:
            if "constraints" not in p.fields:
                raise UserError(f"reward verifiable: prompt {p.id!r} has no constraints; use the built-in prompts")
        return [float(self._reward(p.record(), text, self.answer_full_at)) for p, text in zip(prompts, responses)]


class HFReward:
    """A sequence-classification reward model with its own tokenizer and chat template."""

    def __init__(self, cfg: RewardConfig):
        from optune.reward import hf as reward_model

        self.cfg = cfg
        reward_model.check_reward_dir(str(cfg.model))  # the folder, before torch and the model load
        self.model, self.tokenizer, self.stats = reward_model.load_reward_model(str(cfg.model))
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
BACKENDS: dict[RewardBackendName, Callable[[RewardConfig], RewardBackend]] = {
    RewardBackendName.VERIFIABLE: VerifiableReward, RewardBackendName.CALLABLE: CallableReward,
    RewardBackendName.HF: HFReward, RewardBackendName.REMOTE: remote_reward, RewardBackendName.LLM: llm_reward,
    RewardBackendName.LENGTH: LengthReward, RewardBackendName.MIX: mix_reward}


def make_reward(cfg: RewardConfig) -> RewardBackend:
    return BACKENDS[RewardBackendName(cfg.backend)](cfg)


def checked_score(backend: RewardBackend, prompts: list[Prompt], responses: list[str]) -> list[float]:
    """Score and insist on one finite float per response: a broken reward must not poison training."""
    return scored_parts(backend, prompts, responses)[0]


def scored_parts(backend: RewardBackend, prompts: list[Prompt], responses: list[str], eos: list[bool] | None = None,
                 missing_eos_penalty: float = 0.0) -> tuple[list[float], dict[str, list[float]] | None]:
    """(checked totals, {component name: its scores} or None): one scoring call, so a backend with parts (a
    mix) is not asked twice; None for a backend without `score_parts`. With `eos` (whether each response ended
    with EOS) the totals carry reward.missing_eos_penalty; a mix's parts stay raw."""
    score_parts = getattr(backend, "score_parts", None)
    if score_parts is None:
        totals, parts = backend.score(prompts, responses), None
    else:
        totals, parts = score_parts(prompts, responses)
    totals = check_scores(totals, len(responses))
    return (totals if eos is None else eos_penalized(totals, eos, missing_eos_penalty)), parts
