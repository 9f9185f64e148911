"""Reward judge: a reward model (or any reward backend) scores both answers; a small gap is a tie.

Why: an LLM judge needs an API or a large local model; a reward backend with
`score(records, responses) -> list[float]` (the HF reward model, the verifiable reward, a callable)
is free and deterministic. Scores do not depend on the order the answers are shown in, so both
orders give the same outcome and the two-order rule reduces to that outcome.
"""

from __future__ import annotations

import math
from typing import Protocol

from optune.errors import UserError
from optune.eval.pairwise import outcome_from_scores


class RewardBackend(Protocol):
    def score(self, records: list[dict], responses: list[str]) -> list[float]: ...


class RewardJudge:
    """Pairwise judge from a reward backend; |r_A - r_B| <= margin counts as a tie."""

    def __init__(self, backend: RewardBackend, margin: float = 0.0):
        if margin < 0 or not math.isfinite(margin):
            raise UserError(f"reward judge tie margin must be a finite number >= 0, got {margin}")
        self.backend = backend
        self.margin = margin

    def _scores(self, records: list[dict], answers: list[str]) -> list[float]:
        scores = [float(s) for s in self.backend.score(records, answers)]
        if len(scores) != len(records):
            raise UserError(f"reward backend returned {len(scores)} scores for {len(records)} answers")
        if not all(math.isfinite(s) for s in scores):
            raise UserError("reward backend returned a non-finite score")
        return scores

    def compare(self, records: list[dict], answers_a: list[str], answers_b: list[str], progress=None) -> list[dict]:
        scores_a = self._scores(records, answers_a)
        scores_b = self._scores(records, answers_b)
        out = []
        for rec, sa, sb in zip(records, scores_a, scores_b):
            outcome = outcome_from_scores(sa, sb, self.margin)
            out.append({"id": rec["id"], "first": outcome, "second": outcome, "reward_a": sa, "reward_b": sb})
        return out
