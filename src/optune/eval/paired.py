"""Paired bootstrap of the difference between two systems' accuracies on the same prompts.

Both systems answered the same prompts, so the prompts are resampled together (with replacement) and the
difference is recomputed on every resample: the interval says how much the gap would move on another draw of
prompts, without the prompt-to-prompt spread that the two systems share. Instruction-level accuracies are
ratios (instructions followed / instructions), resampled by prompt, as the prompts are what was drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    diff: float
    """Accuracy of A minus accuracy of B, in points (percent), on all the prompts."""
    ci95: tuple[float, float]
    """Percentile bootstrap interval of the difference (the `level` asked for; 95% by default)."""
    mean_resampled: float
    """Mean of the resampled differences (close to `diff`; far from it only with very few prompts)."""
    n: int
    """Prompts."""
    n_resamples: int

    def public(self) -> dict:
        out = asdict(self)
        out["ci95"] = list(self.ci95)
        return out


def paired_bootstrap(a: Sequence[float], b: Sequence[float], weights: Sequence[float] | None = None,
                     n_resamples: int = 2000, seed: int = 0, level: float = 0.95) -> PairedDifference:
    """100 * (sum(a) - sum(b)) / sum(weights) and its paired percentile bootstrap interval over prompts.

    Per prompt: a[i] and b[i] are what each system got right (prompt level: 1 or 0; instruction level: the
    number of instructions followed) and weights[i] what could be got right (prompt level: 1, the default;
    instruction level: the prompt's number of instructions)."""
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    w_arr = np.ones_like(a_arr) if weights is None else np.asarray(weights, dtype=np.float64)
    if not (a_arr.ndim == 1 and a_arr.shape == b_arr.shape == w_arr.shape):
        raise ValueError("paired_bootstrap needs three sequences of the same length")
    if a_arr.size == 0 or (w_arr <= 0).any():
        raise ValueError("paired_bootstrap needs at least one prompt, and positive weights")
    if n_resamples < 1 or not 0 < level < 1:
        raise ValueError("paired_bootstrap needs n_resamples >= 1 and 0 < level < 1")
    delta = a_arr - b_arr
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, delta.size, size=(n_resamples, delta.size))
    resampled = 100.0 * delta[idx].sum(axis=1) / w_arr[idx].sum(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(resampled, [alpha, 1.0 - alpha])
    return PairedDifference(diff=float(100.0 * delta.sum() / w_arr.sum()), ci95=(float(low), float(high)),
                            mean_resampled=float(resampled.mean()), n=int(delta.size), n_resamples=n_resamples)
