"""Reward judge: a reward model (or any reward backend) scores both answers; a small gap is a tie.

Why: an LLM judge needs an API or a large local model; a reward backend with
`score(prompts, responses) -> list[float]` (the HF reward model, the verifiable reward, a callable)
is free and deterministic. Scores do not depend on the order the answers are shown in, so both
orders give the same outcome and the two-order rule reduces to that outcome.
"""

from __future__ import annotations

import math

from optune.clock import Progress
from optune.errors import UserError
from optune.eval.pairwise import outcome_from_scores
from optune.prompt import Prompt
from optune.reward.backends import RewardBackend
from optune.reward.scores import check_scores


class RewardJudge:
    """Pairwise judge from a reward backend; |r_A - r_B| <= margin counts as a tie."""

    def __init__(self, backend: RewardBackend, margin: float = 0.0):
        if margin < 0 or not math.isfinite(margin):
            raise UserError(f"reward judge tie margin must be a finite number >= 0, got {margin}")
        self.backend = backend
        self.margin = margin

    def _scores(self, prompts: list[Prompt], answers: list[str]) -> list[float]:
        """One finite number per answer (the run's own check: no dict keys, bools or NaN as scores)."""
        return check_scores(self.backend.score(prompts, answers), len(answers), who="the judge's reward backend")

    def compare(self, prompts: list[Prompt], answers_a: list[str], answers_b: list[str],
                progress: Progress | None = None) -> list[dict]:
        scores_a = self._scores(prompts, answers_a)
        scores_b = self._scores(prompts, answers_b)
        out = []
        for p, sa, sb in zip(prompts, scores_a, scores_b):
            outcome = outcome_from_scores(sa, sb, self.margin)
            out.append({"id": p.id, "first": outcome, "second": outcome, "reward_a": sa, "reward_b": sb})
        return out
