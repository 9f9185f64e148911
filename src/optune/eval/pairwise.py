"""Pairwise outcomes, the two-order combination rule and the Win Score (METHOD.md section 7).

A judge sees every pair twice, with the two answers in both orders, because LLM judges favour one
position. Each order gives "win", "tie" or "lose" for the evaluated system; `combine_orders` merges
the two by the rule of Chen et al. 2024a, and `win_score` is the paper's Eq. 7.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from optune.errors import UserError

OUTCOMES = ("win", "tie", "lose")

# Rule from METHOD.md: WIN = win+win or win+tie; LOSE = lose+lose or lose+tie;
# TIE = tie+tie or win+lose. The rule is symmetric in the two orders.
_COMBINED = {
    frozenset({"win"}): "win",
    frozenset({"win", "tie"}): "win",
    frozenset({"lose"}): "lose",
    frozenset({"lose", "tie"}): "lose",
    frozenset({"tie"}): "tie",
    frozenset({"win", "lose"}): "tie",
}


def combine_orders(first: str, second: str) -> str:
    """Combine the evaluated system's outcomes in the two orders into one outcome."""
    for value in (first, second):
        if value not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {value!r}")
    return _COMBINED[frozenset({first, second})]


def win_score(n_win: int, n_lose: int, n: int) -> float:
    """Eq. 7: 50 + 100 * (n_win - n_lose) / n. 50 means as good as the baseline; range [-50, 150]."""
    if n <= 0:
        raise ValueError("win_score needs n > 0 judged prompts")
    if n_win < 0 or n_lose < 0 or n_win + n_lose > n:
        raise ValueError(f"inconsistent counts: n_win={n_win}, n_lose={n_lose}, n={n}")
    return 50.0 + 100.0 * (n_win - n_lose) / n


def outcome_from_scores(score_evaluated: float, score_other: float, margin: float = 0.0) -> str:
    """One order's outcome: the higher score wins; a gap of at most `margin` is a tie."""
    gap = score_evaluated - score_other
    if gap > margin:
        return "win"
    if gap < -margin:
        return "lose"
    return "tie"


def bootstrap_interval(
    outcomes: Sequence[str], n_resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the Win Score over prompts (resampled with replacement).

    Why: judged prompt sets are small (80-805), so a Win Score of 53 may not differ from 50; the
    interval says how much the number would move on another draw of prompts.
    """
    if not outcomes:
        raise ValueError("bootstrap_interval needs at least one outcome")
    values = np.array([{"win": 1, "tie": 0, "lose": -1}[o] for o in outcomes], dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_resamples, len(values)))
    scores = 50.0 + 100.0 * values[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(scores, [alpha, 1.0 - alpha])
    return float(low), float(high)


def summarize(combined: Sequence[str | None], n_resamples: int = 2000, seed: int = 0) -> dict:
    """Counts, Win Score and 95% interval of per-prompt outcomes; None marks an unjudgeable prompt.

    Unjudgeable prompts (an unparseable judge reply in either order) are left out of n and counted,
    so a judge that rambles lowers the count instead of silently turning into ties.
    """
    valid = [c for c in combined if c is not None]
    n_invalid = len(combined) - len(valid)
    counts = {o: sum(1 for c in valid if c == o) for o in OUTCOMES}
    if not valid:
        raise UserError(f"no prompt could be judged: all {len(combined)} judgments were unparseable")
    low, high = bootstrap_interval(valid, n_resamples=n_resamples, seed=seed)
    return {
        "win_score": win_score(counts["win"], counts["lose"], len(valid)),
        "ci95": [low, high],
        "n": len(valid),
        "n_win": counts["win"],
        "n_tie": counts["tie"],
        "n_lose": counts["lose"],
        "n_unjudged": n_invalid,
    }
