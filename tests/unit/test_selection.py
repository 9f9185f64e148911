import math

import numpy as np
import pytest

from optune.errors import UserError
from optune.selection import iteration_pool, num_selected, select_prompts


@pytest.mark.parametrize("n,rho", [(10, 0.3), (10, 0.5), (10, 0.7), (7, 0.5), (96, 0.3), (1, 0.01), (100, 1.0)])
def test_count_is_ceil(n, rho):
    rewards = np.random.default_rng(0).random(n)
    for strategy in ("optune", "middle", "random"):
        assert len(select_prompts(rewards, rho, strategy, seed=1)) == math.ceil(round(rho * n, 9))


def test_float_noise_does_not_add_a_prompt():
    assert num_selected(10, 0.7) == 7  # 0.7 * 10 = 7.000000000000001
    assert num_selected(100, 0.29) == 29


def test_optune_picks_the_lowest():
    rewards = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2]
    assert select_prompts(rewards, 0.5, "optune", 0).tolist() == [1, 3, 5]


def test_middle_picks_the_band_around_the_median():
    rewards = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4]  # ranking (lowest first): 1 5 3 7 2 4 6 0
    assert select_prompts(rewards, 0.5, "middle", 0).tolist() == [2, 3, 4, 7]  # ranks 2..5
    assert select_prompts(rewards, 0.25, "middle", 0).tolist() == [2, 7]  # ranks 3..4
    assert select_prompts(rewards, 0.375, "middle", 0).tolist() == [2, 3, 7]  # k = 3: ranks 2..4
    with pytest.raises(UserError, match="NaN"):
        select_prompts([0.1, float("nan")], 0.5, "middle", 0)


def test_ties_broken_by_index():
    rewards = [0.5, 0.2, 0.5, 0.5, 0.9]
    assert select_prompts(rewards, 0.6, "optune", 0).tolist() == [0, 1, 2]
    assert select_prompts(rewards, 0.6, "optune", 99).tolist() == [0, 1, 2]


def test_random_reproducible_by_seed():
    rewards = np.arange(50.0)
    a = select_prompts(rewards, 0.3, "random", seed=5)
    assert a.tolist() == select_prompts(rewards, 0.3, "random", seed=5).tolist()
    assert a.tolist() != select_prompts(rewards, 0.3, "random", seed=6).tolist()
    assert len(set(a.tolist())) == len(a)


def test_rho_one_and_full_pick_all():
    rewards = [0.3, 0.1, 0.2]
    for strategy in ("optune", "middle", "random", "full"):
        assert select_prompts(rewards, 1.0, strategy, 0).tolist() == [0, 1, 2]
    assert select_prompts(rewards, 0.2, "full", 0).tolist() == [0, 1, 2]


@pytest.mark.parametrize("rho", [0.0, -0.1, 1.01, float("nan")])
def test_bad_rho(rho):
    with pytest.raises(UserError, match="rho"):
        select_prompts([0.1, 0.2], rho, "optune", 0)


def test_unknown_strategy():
    with pytest.raises(ValueError, match="SelectionStrategy"):
        select_prompts([0.1], 0.5, "greedy", 0)


def test_iteration_pool_walks_one_shuffle():
    assert iteration_pool(6, None, 3, seed=0) == list(range(6))
    first, second, third = (iteration_pool(10, 4, t, seed=1) for t in range(3))
    assert len(set(first)) == 4 and not set(first) & set(second)  # no repeats until every prompt is used
    assert len(set(first) | set(second) | set(third)) == 10  # the third wraps: 2 unused, then 2 from the start
    assert iteration_pool(10, 4, 1, seed=1) == second and iteration_pool(10, 4, 1, seed=2) != second
    assert iteration_pool(5, 5, 7, seed=0) == list(range(5))
    for bad in (0, 11):
        with pytest.raises(UserError, match=r"data.prompts_per_iteration must be in \[1, 10\]"):
            iteration_pool(10, bad, 0, seed=0)
