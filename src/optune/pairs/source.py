"""What the loop asks a pair source for, and what both sources share.

A source gives each iteration's responses (`PairSource.responses`): `online.OnlineSource` samples and scores
(OPTune's steps 2-3), `offline.OfflineSource` reads a fixed preference set (`optune dpo`). Each is built once
per run (optune.runner.prepare) with the store, generator, reward and settings it uses, so the loop calls it
with the iteration alone. `PromptPool` is the prompts each iteration uses; `score_pairs` scores a batch of
prompts' two responses the one way both sources store it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from optune.clock import Clock
from optune.pairs import State, parts_field
from optune.prompt import Prompt
from optune.reward.backends import RewardBackend, scored_parts
from optune.selection import iteration_pool


class PairSource(Protocol):
    """Where each iteration's responses come from; the loop calls a source without knowing which."""

    labelled: bool
    """True when the first response is the chosen one whatever the rewards say (human labels)."""
    generates: bool
    """True when the source samples responses from the policy (the log then reports what it regenerated)."""

    def responses(self, t: int, state: State, model, clock: Clock) -> tuple[State, int]:
        """Every prompt's two scored responses for iteration t (sampled from pi_t, `model`, where a source
        samples), and how many prompts got fresh ones; each phase timed on `clock`."""
        ...


@dataclass(frozen=True)
class PromptPool:
    """The training prompts (tokenised: `Prompt.ids` set) and which of them each iteration uses."""

    prompts: list[Prompt]
    per_iteration: int | None = None
    """data.prompts_per_iteration: a seeded draw of that many prompts per iteration; None: every prompt."""
    seed: int = 0

    def at(self, t: int) -> list[Prompt]:
        """The prompts iteration t uses."""
        return [self.prompts[i] for i in iteration_pool(len(self.prompts), self.per_iteration, t, self.seed)]


def score_pairs(reward: RewardBackend, prompts: list[Prompt], texts: list[tuple[str, str]],
                eos: list[tuple[bool, bool]] | None = None, missing_eos_penalty: float = 0.0) -> list[dict]:
    """One stored score row per prompt ({"prompt_id", "rewards": [two floats]}, plus "parts" for a reward with
    components), from one scoring call over both responses of every prompt. With `eos` the totals carry the
    missing-EOS penalty (optune.reward.backends.scored_parts)."""
    flat_eos = None if eos is None else [e for pair in eos for e in pair]
    scores, parts = scored_parts(reward, [p for p in prompts for _ in (0, 1)], [x for pair in texts for x in pair],
                                 flat_eos, missing_eos_penalty)
    return [{"prompt_id": p.id, "rewards": scores[2 * k:2 * k + 2], **parts_field(parts, 2 * k, 2 * k + 2)}
            for k, p in enumerate(prompts)]
