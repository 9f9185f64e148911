"""The paired bootstrap of an accuracy difference between two systems on the same prompts."""

import numpy as np
import pytest

from optune.eval.paired import paired_bootstrap


def test_identical_systems_differ_by_nothing():
    a = [1, 0, 1, 1, 0]
    d = paired_bootstrap(a, a)
    assert d.diff == 0.0 and d.ci95 == (0.0, 0.0) and d.n == 5


def test_one_system_right_everywhere():
    d = paired_bootstrap([1] * 8, [0] * 8)
    assert d.diff == 100.0 and d.ci95 == (100.0, 100.0)


def test_weighted_instruction_level_difference():
    # instructions followed out of each prompt's count: (3 + 1) / 6 against (1 + 1) / 6
    d = paired_bootstrap([3, 1], [1, 1], [4, 2], n_resamples=500)
    assert d.diff == pytest.approx(100 * 2 / 6)
    assert 0.0 <= d.ci95[0] <= d.diff <= d.ci95[1] <= 100 * 2 / 4


def test_interval_is_paired_and_seeded():
    rng = np.random.default_rng(0)
    b = rng.integers(0, 2, size=400)
    a = b.copy()
    a[:20] = 1  # A gets up to 20 more prompts right, on the prompts B answered
    d = paired_bootstrap(a, b, seed=3)
    assert d == paired_bootstrap(a, b, seed=3)
    assert d.diff == pytest.approx(100 * (a.sum() - b.sum()) / 400)
    low, high = d.ci95
    assert 0 < low < d.diff < high  # every resample keeps the gain: never below zero when paired
    unpaired_width = 2 * 1.96 * 100 * np.sqrt(2 * 0.25 / 400)
    assert high - low < unpaired_width / 2
    assert abs(d.mean_resampled - d.diff) < 0.5
    assert d.public()["ci95"] == [low, high]


@pytest.mark.parametrize("args", [([1], [1, 0]), ([], []), ([1], [1], [0])])
def test_bad_arguments(args):
    with pytest.raises(ValueError):
        paired_bootstrap(*args)
