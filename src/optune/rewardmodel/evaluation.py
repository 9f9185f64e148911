"""Held-out evaluation of a reward model: pairwise accuracy, mean margin, accuracy by margin bucket.

Margins are taken on normalised scores (z-scores of the training rewards, from reward_stats.json)
when available, so the fixed bucket edges mean the same thing for any model: a well-calibrated
RM is more often right on pairs it separates by a wide margin.
"""

from __future__ import annotations

import math

from optune.data.preferences import read_preferences
from optune.errors import UserError
from optune.reward.hf import check_reward_dir, load_reward_model, model_max_length

DEFAULT_EDGES = (0.0, 0.25, 0.5, 1.0, 2.0)
"""Lower edges of the |margin| buckets; the last bucket is open-ended."""


def _bucket_label(lo: float, hi: float) -> str:
    return f"[{lo:g}, {hi:g})" if math.isfinite(hi) else f"[{lo:g}, inf)"


def pairwise_metrics(chosen: list[float], rejected: list[float], edges=DEFAULT_EDGES) -> dict:
    """Accuracy (chosen scored strictly higher; ties count as wrong), mean margin (chosen - rejected)
    and, per |margin| bucket, the number of pairs and the accuracy within it."""
    if len(chosen) != len(rejected):
        raise ValueError("chosen and rejected score lists differ in length")
    if not chosen:
        raise UserError("no pairs to evaluate")
    margins = [c - r for c, r in zip(chosen, rejected)]
    uppers = list(edges[1:]) + [math.inf]
    buckets = []
    for lo, hi in zip(edges, uppers):
        inside = [m for m in margins if lo <= abs(m) < hi]
        buckets.append({
            "bucket": _bucket_label(lo, hi),
            "pairs": len(inside),
            "accuracy": (sum(m > 0 for m in inside) / len(inside)) if inside else None,
        })
    return {
        "pairs": len(margins),
        "accuracy": sum(m > 0 for m in margins) / len(margins),
        "mean_margin": sum(margins) / len(margins),
        "by_margin": buckets,
    }


def evaluate_reward_model(model_dir: str, sources: list[str], batch_size: int = 16,
                          max_pairs: int | None = None) -> dict:
    """Score every held-out pair with the checkpoint (normalised when it has stats) and summarise."""
    from optune.rewardmodel.train import encode_pairs, pair_scores

    check_reward_dir(model_dir)
    data = read_preferences(sources)  # before the model: bad data fails fast
    model, tokenizer, stats = load_reward_model(model_dir)
    pairs = data.pairs[:max_pairs] if max_pairs else data.pairs
    encoded = encode_pairs(tokenizer, pairs, model_max_length(model, tokenizer))
    chosen, rejected = pair_scores(model, tokenizer, encoded, batch_size)
    if stats:
        chosen, rejected = stats.normalise(chosen), stats.normalise(rejected)
    result = pairwise_metrics(chosen, rejected)
    result.update({
        "model": model_dir,
        "sources": data.sources,
        "dropped_identical": data.dropped_identical,
        "normalised": stats is not None,
    })
    return result


def format_report(result: dict) -> str:
    """Human-readable summary: one headline line, then one line per margin bucket."""
    unit = "z" if result.get("normalised") else "raw"
    lines = [
        f"pairs {result['pairs']}  accuracy {result['accuracy']:.4f}  mean margin {result['mean_margin']:.4f} ({unit})",
        f"{'|margin| bucket':<16} {'pairs':>6} {'accuracy':>9}",
    ]
    for b in result["by_margin"]:
        acc = "-" if b["accuracy"] is None else f"{b['accuracy']:.4f}"
        lines.append(f"{b['bucket']:<16} {b['pairs']:>6} {acc:>9}")
    return "\n".join(lines)
