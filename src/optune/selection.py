"""Reward-based prompt selection (Algorithm 1): which prompts get fresh responses at iteration t >= 1.

Pure functions of arrays: no model, no I/O.
"""

from __future__ import annotations

import math
import random

import numpy as np

from optune.choices import SelectionStrategy
from optune.errors import UserError


def num_selected(n_prompts: int, rho: float) -> int:
    """ceil(rho * n), computed so that float noise never adds a prompt (0.7 * 10 = 7.000000000000001)."""
    return min(n_prompts, math.ceil(round(rho * n_prompts, 9)))


def select_prompts(rewards, rho: float, strategy: SelectionStrategy, seed: int) -> np.ndarray:
    """Indices of the prompts to regenerate, in ascending index order.

    rewards: [n] the reward of each prompt's current chosen (higher-reward) response.
    "optune": the ceil(rho * n) lowest rewards; ties broken by prompt index (stable sort), so the choice is
    deterministic. "middle": the same count as one window in the middle of that ranking (positions
    (n - k) // 2 .. (n - k) // 2 + k - 1, lowest first). "random": the same count uniformly at random,
    reproducible by seed. "full": every prompt.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise UserError(f"rewards must be one number per prompt; got shape {rewards.shape}")
    if not 0 < rho <= 1:
        raise UserError(f"rho must be in (0, 1]; got {rho}")
    strategy = SelectionStrategy(strategy)  # ValueError for a name that is not one
    n = len(rewards)
    if strategy is SelectionStrategy.FULL:
        return np.arange(n)
    k = num_selected(n, rho)
    if strategy in (SelectionStrategy.OPTUNE, SelectionStrategy.MIDDLE):
        if np.isnan(rewards).any():
            raise UserError("a prompt's chosen reward is NaN; cannot rank prompts")
        low = 0 if strategy is SelectionStrategy.OPTUNE else (n - k) // 2
        chosen = np.argsort(rewards, kind="stable")[low:low + k]
    else:
        chosen = np.random.default_rng(seed).choice(n, size=k, replace=False)
    return np.sort(chosen)


def iteration_pool(n_prompts: int, per_iteration: int | None, t: int, seed: int) -> list[int]:
    """Indices of the prompts iteration t uses: all of them (per_iteration None), else the next per_iteration
    of one seeded shuffle, read in order and wrapping around, so consecutive iterations share no prompt until
    every prompt has been used once."""
    if per_iteration is None:
        return list(range(n_prompts))
    if not 0 < per_iteration <= n_prompts:
        raise UserError(f"data.prompts_per_iteration must be in [1, {n_prompts}] (the prompts loaded); "
                        f"got {per_iteration}")
    order = list(range(n_prompts))
    random.Random(seed).shuffle(order)
    start = t * per_iteration
    return sorted(order[(start + j) % n_prompts] for j in range(per_iteration))
